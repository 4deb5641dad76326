import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// ALBERT pretraining (Lan et al. 2020): masked LM with n-gram masking at the masked positions only
/// plus sentence-order prediction, on segment pairs cut from token shards (`PretrainingExamples` with
/// `sentenceOrder` and `maxNgram`, which the family sets).
public final class AlbertPretrainingTask: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: ALBERT
    public let examples: PretrainingExamples
    public let evalExamples: PretrainingExamples?
    public let tokenizer: WordPieceTokenizer
    private let options: PretrainingOptions
    private var graph: ALBERT.Graph?
    private var microBatch = 0

    public init(config: AlbertConfig, tokenizer: WordPieceTokenizer, train: ShardDataset, eval: ShardDataset?,
                options: PretrainingOptions, seed: UInt64) throws {
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw ConfigError("data.vocab: the vocabulary has \(tokenizer.vocabSize) tokens but model.vocab_size is \(config.vocabSize): the embedding has no row for the extra ids")
        }
        guard options.maxSequence <= config.maxPositionEmbeddings else {
            throw ConfigError("data.seq_len = \(options.maxSequence) exceeds the model's max_position_embeddings = \(config.maxPositionEmbeddings)")
        }
        try config.validate()
        model = ALBERT(config, arena: arena, rng: Philox(seed: seed))
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
                maskedLabels: g.mlmLabels + b * P, nextSentenceLabel: g.sentenceOrderLabels + b))
            // Example positions are within the sequence; the gathered rows index the (B T) hidden states.
            MaskedLM.offsetRows(rows, sample: b, sequence: T, predictions: P)
        }
    }

    /// DESIGN.md's 6 x parameters + 12 x L x C x T per token, with the work where it is: the embeddings
    /// are lookups, the shared layer runs L times (6 x its parameters x L), and the tied decoder (V x E)
    /// runs only at the P masked positions (6 x V x E per prediction).
    public var trainingFLOPsPerSample: Double {
        let c = model.config
        let embeddings = Double((c.vocabSize + c.maxPositionEmbeddings + c.typeVocabSize) * c.embeddingSize)
        let layer = Double(model.parameters.filter { $0.name.contains(".albert_layer_groups.") }.reduce(0) { $0 + $1.count })
        let T = Double(options.maxSequence)
        let perToken = 6.0 * (Double(arena.parameterCount) - embeddings + Double(c.numHiddenLayers - 1) * layer)
            + 12.0 * Double(c.numHiddenLayers * c.hiddenSize) * T
        return perToken * T + 6.0 * Double(c.vocabSize * c.embeddingSize) * Double(options.maxPredictions)
    }

    public var modelDescription: String {
        let c = model.config
        return "ALBERT layers=\(c.numHiddenLayers) (shared) embedding=\(c.embeddingSize) hidden=\(c.hiddenSize) heads=\(c.numAttentionHeads) vocab=\(c.vocabSize) params=\(arena.parameterCount) (BERT of the same shape: \(c.bertParameterCount))"
    }

    public var hfConfigJSON: String {
        ModelFields.configJSON(model.config, adding: ["model_type": ALBERTFamily.modelTypes[0]])
    }

    /// Fills the model from a transformers ALBERT directory (`--init-from`): AlbertForPreTraining or
    /// AlbertModel names (an AlbertModel checkpoint leaves the heads at their init, which `log` hears).
    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        try PretrainedALBERT.loadWeights(into: model, directory: directory, log: log)
    }

    /// The micro-batch in the graph as an HF batch file: `labels` (B, T) hold the original token at the
    /// masked positions and -100 elsewhere, which is what AlbertForPreTraining's loss expects.
    public func writeBatch(to path: String) throws {
        guard let g = graph, let rows = g.maskedPositions else { return }
        let B = microBatch, T = options.maxSequence, P = options.maxPredictions
        let labels = MaskedLM.labels(rows: rows, targets: g.mlmLabels, count: B * P, batch: B, sequence: T)
        var w = SafeTensorsWriter()
        w.add("input_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.inputIDs[$0]) })
        w.add("token_type_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.tokenTypeIDs[$0]) })
        w.add("attention_mask", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.attentionMask.data[$0]) })
        w.add("labels", shape: [B, T], int64s: labels)
        w.add("sentence_order_label", shape: [B], int64s: (0..<B).map { Int64(g.sentenceOrderLabels[$0]) })
        try w.write(toPath: path)
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalExamples?.count ?? 0 }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let evalExamples else { return }
        fill(indices, from: evalExamples, epoch: 0)
    }

    /// MLM loss sum, MLM correct, MLM count, SOP correct, SOP count.
    public var evalStatisticsCount: Int { 5 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        MaskedLM.accumulate(logits: g.predictionLogits.data, targets: g.mlmLabels, count: microBatch * options.maxPredictions,
                            vocabulary: model.config.vocabSize, meanLoss: g.mlmLoss.data[0], into: s)
        for b in 0..<microBatch where g.sentenceOrderLabels[b] != -100 {
            if argmax(g.sopLogits.data + b * 2, 2) == Int(g.sentenceOrderLabels[b]) { s[3] += 1 }
            s[4] += 1
        }
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        MaskedLM.describe(s) + [("eval_sop_accuracy", s[3] / max(s[4], 1))]
    }
}
