import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// RoBERTa pretraining: masked LM alone, at the masked positions only, on FULL-SENTENCES samples
/// (`FullSentenceExamples`) with masks drawn anew every epoch.
public final class RobertaPretrainingTask: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: RoBERTa
    public let examples: FullSentenceExamples
    public let evalExamples: FullSentenceExamples?
    private let options: PretrainingOptions
    private let tokenizerJSON: String
    private var graph: RoBERTa.Graph?
    private var microBatch = 0
    /// Where the examples write their (unused) next-sentence label.
    private let unusedLabel = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    init(config: BertConfig, tokenizer: ByteLevelBPETokenizer, specials ids: RobertaFamily.Specials, tokenizerJSON: String,
         train: ShardDataset, eval: ShardDataset?, options: PretrainingOptions, seed: UInt64) throws {
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw ConfigError("data.vocab: the tokenizer has \(tokenizer.vocabSize) tokens but model.vocab_size is \(config.vocabSize): the embedding has no row for the extra ids")
        }
        model = RoBERTa(config, arena: arena, rng: Philox(seed: seed))
        guard options.maxSequence <= model.maxSequence else {
            throw ConfigError("data.seq_len = \(options.maxSequence) needs positions up to \(options.maxSequence + config.padTokenId), beyond the model's max_position_embeddings = \(config.maxPositionEmbeddings)")
        }
        arena.seal()
        self.options = options
        self.tokenizerJSON = tokenizerJSON
        // Whole words for whole-word masking: a piece continues a word unless it starts with the byte-level
        // space (Ġ) or is special.
        let special = [ids.bos, ids.pad, ids.eos, ids.mask] + (ids.unk.map { [$0] } ?? [])
        let continuation = tokenizer.tokens.map { !$0.hasPrefix("\u{0120}") }
        func examples(_ dataset: ShardDataset) throws -> FullSentenceExamples {
            try FullSentenceExamples(dataset: dataset, options: options, seed: seed, bos: ids.bos, eos: ids.eos, pad: ids.pad,
                                     mask: ids.mask, special: special, isContinuation: continuation)
        }
        do { self.examples = try examples(train) } catch { throw ConfigError("data.train: \(error)") }
        do { evalExamples = try eval.map(examples) } catch { throw ConfigError("data.eval: \(error)") }
    }

    public var sampleCount: Int { examples.count }
    public var tokensPerSample: Int { options.maxSequence }
    public var checkpointTextFiles: [(name: String, text: String)] { [("tokenizer.json", tokenizerJSON)] }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B, sequence: options.maxSequence, maskedPositions: B * options.maxPredictions)
        graph = g
        microBatch = B
        return g.loss
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        fill(indices, from: examples, epoch: epoch)
    }

    private func fill(_ indices: UnsafeBufferPointer<Int>, from source: FullSentenceExamples, epoch: Int) {
        guard let g = graph, let rows = g.maskedPositions else { preconditionFailure("record the graph before filling it") }
        let T = options.maxSequence, P = options.maxPredictions
        for (b, i) in indices.enumerated() {
            source.fill(example: i, epoch: epoch, into: PretrainingSlots(
                inputIDs: g.inputIDs + b * T, tokenTypeIDs: g.tokenTypeIDs + b * T,
                attentionMask: g.attentionMask.data + b * T, maskedPositions: rows + b * P,
                maskedLabels: g.labels + b * P, nextSentenceLabel: unusedLabel))
            MaskedLM.offsetRows(rows, sample: b, sequence: T, predictions: P)
        }
    }

    /// `MaskedLM.trainingFLOPsPerSample`, as BERT's.
    public var trainingFLOPsPerSample: Double {
        let c = model.config
        return MaskedLM.trainingFLOPsPerSample(
            parameters: arena.parameterCount, embeddingParameters: (c.vocabSize + c.maxPositionEmbeddings + c.typeVocabSize) * c.hiddenSize,
            layers: c.numHiddenLayers, hidden: c.hiddenSize, vocabulary: c.vocabSize, sequence: options.maxSequence,
            predictions: options.maxPredictions)
    }

    public var modelDescription: String {
        let c = model.config
        return "RoBERTa layers=\(c.numHiddenLayers) hidden=\(c.hiddenSize) heads=\(c.numAttentionHeads) vocab=\(c.vocabSize) params=\(arena.parameterCount)"
    }

    public var hfConfigJSON: String { ModelFields.configJSON(model.config) }

    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        try PretrainedBERT.loadWeights(parameters: model.parameters, load: model.load, headPrefix: "lm_head.",
                                       baseModel: "RobertaModel", directory: directory, log: log)
    }

    /// The micro-batch as an HF batch file for RobertaForMaskedLM: `labels` (B, T) hold the original token
    /// at the masked positions and -100 elsewhere.
    public func writeBatch(to path: String) throws {
        guard let g = graph, let rows = g.maskedPositions else { return }
        let B = microBatch, T = options.maxSequence, P = options.maxPredictions
        let labels = MaskedLM.labels(rows: rows, targets: g.labels, count: B * P, batch: B, sequence: T)
        var w = SafeTensorsWriter()
        w.add("input_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.inputIDs[$0]) })
        w.add("attention_mask", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.attentionMask.data[$0]) })
        w.add("labels", shape: [B, T], int64s: labels)
        try w.write(toPath: path)
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalExamples?.count ?? 0 }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let evalExamples else { return }
        fill(indices, from: evalExamples, epoch: 0)
    }

    /// MLM loss sum, MLM correct, MLM count.
    public var evalStatisticsCount: Int { 3 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        MaskedLM.accumulate(logits: g.logits.data, targets: g.labels, count: microBatch * options.maxPredictions,
                            vocabulary: model.config.vocabSize, meanLoss: g.loss.data[0], into: s)
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        MaskedLM.describe(s)
    }
}
