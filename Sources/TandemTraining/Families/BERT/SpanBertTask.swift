import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// SpanBERT pretraining (Joshi et al. 2020; `train.objective: spanbert` of the BERT family): span masking
/// (`SpanMaskingOptions`) and the span-boundary objective beside masked LM, no next-sentence prediction,
/// and single contiguous segments (`[CLS] chunk [SEP]`, `FullSentenceExamples`) instead of sentence pairs.
/// Checkpoints hold the encoder in model.safetensors (`bert.*` with the pooler: transformers loads it as a
/// `BertModel`, as the published SpanBERT checkpoints) and the two heads in span_heads.safetensors.
public final class SpanBertTask: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: SpanBERT
    public let examples: FullSentenceExamples
    public let evalExamples: FullSentenceExamples?
    private let options: PretrainingOptions
    private var graph: SpanBERT.Graph?
    private var microBatch = 0
    private let unusedLabel = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    /// The file of the heads beside model.safetensors.
    public static let headsFile = "span_heads.safetensors"
    /// config.json's fields for the head's sizes (ignored by transformers).
    static let headFields = ["span_boundary_max_targets", "span_boundary_position_size"]

    public init(config: BertConfig, head: SpanBoundaryHeadConfig, tokenizer: WordPieceTokenizer, train: ShardDataset,
                eval: ShardDataset?, options: PretrainingOptions, seed: UInt64) throws {
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw ConfigError("data.vocab: the vocabulary has \(tokenizer.vocabSize) tokens but model.vocab_size is \(config.vocabSize): the embedding has no row for the extra ids")
        }
        guard options.maxSequence <= config.maxPositionEmbeddings else {
            throw ConfigError("data.seq_len = \(options.maxSequence) exceeds the model's max_position_embeddings = \(config.maxPositionEmbeddings)")
        }
        guard let span = options.spanMasking else { preconditionFailure("SpanBERT needs span masking options") }
        guard span.maxSpan <= options.maxSequence - 2 else {
            throw ConfigError("data.max_span = \(span.maxSpan) words is longer than a sequence can hold: data.seq_len = \(options.maxSequence) leaves \(options.maxSequence - 2) tokens between [CLS] and [SEP]")
        }
        guard span.maxTargets == head.maxTargets else { preconditionFailure("the masking's and the head's position tables differ") }
        try config.validate()
        model = SpanBERT(config, head: head, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        self.options = options
        do { examples = try FullSentenceExamples(dataset: train, tokenizer: tokenizer, options: options, seed: seed) } catch {
            throw ConfigError("data.train: \(error)")
        }
        do { evalExamples = try eval.map { try FullSentenceExamples(dataset: $0, tokenizer: tokenizer, options: options, seed: seed) } } catch {
            throw ConfigError("data.eval: \(error)")
        }
    }

    deinit { unusedLabel.deallocate() }

    public var sampleCount: Int { examples.count }
    public var tokensPerSample: Int { options.maxSequence }

    public var checkpointTensors: [(String, Parameter)] { model.encoderParameters.map { ($0.name, $0) } }
    public var additionalCheckpointFiles: [(file: String, tensors: [(String, Parameter)])] {
        [(Self.headsFile, model.headParameters.map { ($0.name, $0) })]
    }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B, sequence: options.maxSequence, predictions: B * options.maxPredictions)
        graph = g
        microBatch = B
        return g.loss
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        fill(indices, from: examples, epoch: epoch)
    }

    private func fill(_ indices: UnsafeBufferPointer<Int>, from source: FullSentenceExamples, epoch: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        let T = options.maxSequence, P = options.maxPredictions
        for (b, i) in indices.enumerated() {
            let k = b * P
            source.fill(example: i, epoch: epoch, into: PretrainingSlots(
                inputIDs: g.inputIDs + b * T, tokenTypeIDs: g.tokenTypeIDs + b * T, attentionMask: g.attentionMask.data + b * T,
                maskedPositions: g.maskedPositions + k, maskedLabels: g.mlmLabels + k, nextSentenceLabel: unusedLabel,
                spans: SpanSlots(left: g.spanLeft + k, right: g.spanRight + k, offset: g.spanOffset + k, label: g.spanLabels + k)))
            for rows in [g.maskedPositions, g.spanLeft, g.spanRight] { MaskedLM.offsetRows(rows, sample: b, sequence: T, predictions: P) }
        }
    }

    /// `MaskedLM.trainingFLOPsPerSample` for the encoder and the MLM head, plus the span-boundary head at
    /// each prediction: its two layers and its tied decoder.
    public var trainingFLOPsPerSample: Double {
        let c = model.config, C = c.hiddenSize, head = model.head
        let spanHead = model.headParameters.filter { $0.name.hasPrefix("cls.pair_target_predictions.") }.reduce(0) { $0 + $1.count }
        let mlm = MaskedLM.trainingFLOPsPerSample(
            parameters: arena.parameterCount - spanHead, embeddingParameters: (c.vocabSize + c.maxPositionEmbeddings + c.typeVocabSize) * C,
            layers: c.numHiddenLayers, hidden: C, vocabulary: c.vocabSize, sequence: options.maxSequence,
            predictions: options.maxPredictions)
        let perPrediction = 6.0 * Double((2 * C + head.positionSize) * C + C * C + c.vocabSize * C)
        return mlm + perPrediction * Double(options.maxPredictions)
    }

    public var modelDescription: String {
        let c = model.config
        return "SpanBERT layers=\(c.numHiddenLayers) hidden=\(c.hiddenSize) heads=\(c.numAttentionHeads) vocab=\(c.vocabSize) params=\(arena.parameterCount) (encoder \(model.encoderParameters.reduce(0) { $0 + $1.count }))"
    }

    /// The vocabulary saved in every checkpoint (`CheckpointVocabulary`: data.vocab's file), set by the family.
    public var checkpointVocabulary: (name: String, text: String)?
    public var checkpointTextFiles: [(name: String, text: String)] { checkpointVocabulary.map { [$0] } ?? [] }

    public var hfConfigJSON: String {
        ModelFields.configJSON(model.config, adding: ["model_type": BERTFamily.modelTypes[0], "architectures": ["BertModel"],
                                                      Self.headFields[0]: model.head.maxTargets, Self.headFields[1]: model.head.positionSize])
    }

    /// Fills the model from a BERT directory (`--init-from`): the encoder from model.safetensors (BertModel
    /// or BertForPreTraining names, whose `cls.predictions` is taken too) and, from a SpanBERT checkpoint of
    /// Tandem's, the heads from span_heads.safetensors; what keeps its init is logged.
    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        if let note = CheckpointVocabulary.note(initFrom: directory) { log(note) }
        try Self.loadWeights(into: model, directory: directory, log: log)
    }

    @discardableResult
    static func loadWeights(into model: SpanBERT, directory: String, log: (String) -> Void) throws -> CheckpointLoadReport {
        let paths = ["model.safetensors", headsFile].map { (directory as NSString).appendingPathComponent($0) }
        guard FileManager.default.fileExists(atPath: paths[0]) else {
            throw BertError("\(paths[0]): no such file (only safetensors weights are read)")
        }
        let files = try paths.filter { FileManager.default.fileExists(atPath: $0) }.map { try SafeTensorsFile(path: $0) }
        var shapes: [String: [Int]] = [:], owner: [String: SafeTensorsFile] = [:]
        for file in files { for (name, info) in file.tensors { shapes[name] = info.shape; owner[name] = file } }
        let report = try model.load(shapes: shapes, origin: files.map(\.path).joined(separator: " + ")) { name, into in
            try owner[name]!.copyFloats(name, into: into)
        }
        if !report.keptInit.isEmpty { log("\(directory): \(report.keptInit.count) parameters keep their random init: \(report.keptInit.joined(separator: ", "))") }
        if !report.ignored.isEmpty { log("\(directory): ignored \(report.ignored.joined(separator: ", "))") }
        return report
    }

    /// The micro-batch as a batch file: BertForMaskedLM's `input_ids`, `token_type_ids`, `attention_mask`
    /// and `labels` (B, T), and the span-boundary targets at the same positions (B, T): `span_left`,
    /// `span_right` (positions in the sequence), `span_offset` and `span_labels` (-100 where unscored).
    public func writeBatch(to path: String) throws {
        guard let g = graph else { return }
        let B = microBatch, T = options.maxSequence, P = B * options.maxPredictions
        let labels = MaskedLM.labels(rows: g.maskedPositions, targets: g.mlmLabels, count: P, batch: B, sequence: T)
        var left = [Int64](repeating: 0, count: B * T), right = left, offset = left
        var spanLabels = [Int64](repeating: -100, count: B * T)
        for r in 0..<P where g.spanLabels[r] != -100 {
            let row = Int(g.maskedPositions[r]), start = Int32(row / T * T)
            left[row] = Int64(g.spanLeft[r] - start); right[row] = Int64(g.spanRight[r] - start)
            offset[row] = Int64(g.spanOffset[r]); spanLabels[row] = Int64(g.spanLabels[r])
        }
        var w = SafeTensorsWriter()
        w.add("input_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.inputIDs[$0]) })
        w.add("token_type_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.tokenTypeIDs[$0]) })
        w.add("attention_mask", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.attentionMask.data[$0]) })
        w.add("labels", shape: [B, T], int64s: labels)
        for (name, values) in [("span_left", left), ("span_right", right), ("span_offset", offset), ("span_labels", spanLabels)] {
            w.add(name, shape: [B, T], int64s: values)
        }
        try w.write(toPath: path)
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalExamples?.count ?? 0 }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let evalExamples else { return }
        fill(indices, from: evalExamples, epoch: 0)
    }

    /// MLM loss sum, correct, count; SBO loss sum, correct, count.
    public var evalStatisticsCount: Int { 6 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        let P = microBatch * options.maxPredictions, V = model.config.vocabSize
        MaskedLM.accumulate(logits: g.mlmLogits.data, targets: g.mlmLabels, count: P, vocabulary: V, meanLoss: g.mlmLoss.data[0], into: s)
        MaskedLM.accumulate(logits: g.spanLogits.data, targets: g.spanLabels, count: P, vocabulary: V, meanLoss: g.spanLoss.data[0], into: s + 3)
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        MaskedLM.describe(s) + [("eval_sbo_loss", s[3] / max(s[5], 1)), ("eval_sbo_accuracy", s[4] / max(s[5], 1))]
    }
}
