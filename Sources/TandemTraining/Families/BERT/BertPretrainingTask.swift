import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// BERT pretraining (Devlin et al. 2019): masked LM at the masked positions only plus next-sentence
/// prediction, on sentence pairs cut from token shards (`PretrainingExamples`).
public final class BertPretrainingTask: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: BERT
    public let examples: PretrainingExamples
    public let evalExamples: PretrainingExamples?
    public let tokenizer: WordPieceTokenizer
    private let options: PretrainingOptions
    private var graph: BERT.Graph?
    private var microBatch = 0

    public init(config: BertConfig, tokenizer: WordPieceTokenizer, train: ShardDataset, eval: ShardDataset?,
                options: PretrainingOptions, seed: UInt64) throws {
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw ConfigError("data.vocab: the vocabulary has \(tokenizer.vocabSize) tokens but model.vocab_size is \(config.vocabSize): the embedding has no row for the extra ids")
        }
        guard options.maxSequence <= config.maxPositionEmbeddings else {
            throw ConfigError("data.seq_len = \(options.maxSequence) exceeds the model's max_position_embeddings = \(config.maxPositionEmbeddings)")
        }
        try config.validate()
        model = BERT(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        self.tokenizer = tokenizer
        self.options = options
        examples = try PretrainingExamples(dataset: train, tokenizer: tokenizer, options: options, seed: seed)
        evalExamples = try eval.map { try PretrainingExamples(dataset: $0, tokenizer: tokenizer, options: options, seed: seed) }
    }

    public var sampleCount: Int { examples.count }
    public var tokensPerSample: Int { options.maxSequence }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B, sequence: options.maxSequence, maskedPositions: B * options.maxPredictions)
        graph = g
        microBatch = B
        return g.loss
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        fill(indices, from: examples, epoch: epoch)
    }

    private func fill(_ indices: UnsafeBufferPointer<Int>, from source: PretrainingExamples, epoch: Int) {
        guard let g = graph, let rows = g.maskedPositions else { preconditionFailure("record the graph before filling it") }
        let T = options.maxSequence, P = options.maxPredictions
        for (b, i) in indices.enumerated() {
            source.fill(example: i, epoch: epoch, into: PretrainingSlots(
                inputIDs: g.inputIDs + b * T, tokenTypeIDs: g.tokenTypeIDs + b * T,
                attentionMask: g.attentionMask.data + b * T, maskedPositions: rows + b * P,
                maskedLabels: g.mlmLabels + b * P, nextSentenceLabel: g.nextSentenceLabels + b))
            // Example positions are within the sequence; the gathered rows index the (B T) hidden states.
            MaskedLM.offsetRows(rows, sample: b, sequence: T, predictions: P)
        }
    }

    /// `MaskedLM.trainingFLOPsPerSample`: the tied decoder counted at the masked positions only.
    public var trainingFLOPsPerSample: Double {
        let c = model.config
        return MaskedLM.trainingFLOPsPerSample(
            parameters: arena.parameterCount, embeddingParameters: (c.vocabSize + c.maxPositionEmbeddings + c.typeVocabSize) * c.hiddenSize,
            layers: c.numHiddenLayers, hidden: c.hiddenSize, vocabulary: c.vocabSize, sequence: options.maxSequence,
            predictions: options.maxPredictions)
    }

    public var modelDescription: String {
        let c = model.config
        return "BERT layers=\(c.numHiddenLayers) hidden=\(c.hiddenSize) heads=\(c.numAttentionHeads) vocab=\(c.vocabSize) params=\(arena.parameterCount)"
    }

    /// The vocabulary saved in every checkpoint (`CheckpointVocabulary`: data.vocab's file), set by the family.
    public var checkpointVocabulary: (name: String, text: String)?
    public var checkpointTextFiles: [(name: String, text: String)] { checkpointVocabulary.map { [$0] } ?? [] }

    public var hfConfigJSON: String {
        ModelFields.configJSON(model.config, adding: ["model_type": BERTFamily.modelTypes[0]])
    }

    /// Fills the model from a transformers BERT directory (`--init-from`): BertForPreTraining or BertModel
    /// names (a BertModel checkpoint leaves the heads at their init, which `log` hears).
    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        if let note = CheckpointVocabulary.note(initFrom: directory) { log(note) }
        try PretrainedBERT.loadWeights(into: model, directory: directory, log: log)
    }

    /// The micro-batch in the graph as an HF batch file: `labels` (B, T) hold the original token at the
    /// masked positions and -100 elsewhere, which is what BertForPreTraining's loss expects.
    public func writeBatch(to path: String) throws {
        guard let g = graph, let rows = g.maskedPositions else { return }
        let B = microBatch, T = options.maxSequence, P = options.maxPredictions
        let labels = MaskedLM.labels(rows: rows, targets: g.mlmLabels, count: B * P, batch: B, sequence: T)
        var w = SafeTensorsWriter()
        w.add("input_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.inputIDs[$0]) })
        w.add("token_type_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.tokenTypeIDs[$0]) })
        w.add("attention_mask", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.attentionMask.data[$0]) })
        w.add("labels", shape: [B, T], int64s: labels)
        w.add("next_sentence_label", shape: [B], int64s: (0..<B).map { Int64(g.nextSentenceLabels[$0]) })
        try w.write(toPath: path)
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalExamples?.count ?? 0 }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let evalExamples else { return }
        fill(indices, from: evalExamples, epoch: 0)
    }

    /// MLM loss sum, MLM correct, MLM count, NSP correct, NSP count.
    public var evalStatisticsCount: Int { 5 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        MaskedLM.accumulate(logits: g.predictionLogits.data, targets: g.mlmLabels, count: microBatch * options.maxPredictions,
                            vocabulary: model.config.vocabSize, meanLoss: g.mlmLoss.data[0], into: s)
        for b in 0..<microBatch where g.nextSentenceLabels[b] != -100 {
            if argmax(g.seqRelationshipLogits.data + b * 2, 2) == Int(g.nextSentenceLabels[b]) { s[3] += 1 }
            s[4] += 1
        }
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        MaskedLM.describe(s) + [("eval_nsp_accuracy", s[3] / max(s[4], 1))]
    }
}
