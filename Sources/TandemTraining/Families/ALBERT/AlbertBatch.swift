import TandemCheckpoint
import TandemModels

/// An ALBERT batch file (DESIGN.md "Batch files"): BERT's tensors with `sentence_order_label` (B) in
/// place of `next_sentence_label`: `input_ids` (B, T) required, `attention_mask` and `token_type_ids`
/// (B, T) optional (ones and zeros by default, as in HF), `labels` (B, T) with -100 for unscored
/// positions and `sentence_order_label` optional; integer dtypes (I64 or I32).
public struct AlbertBatch {
    public let batch: Int
    public let sequence: Int
    public let inputIDs: [Int32]
    public let tokenTypeIDs: [Int32]
    public let attentionMask: [Int32]
    public let labels: [Int32]?
    public let sentenceOrderLabels: [Int32]?

    /// Reads and checks `path` against `config`: every id, segment and label must fit the model, the
    /// mask must be 0/1 and T at most max_position_embeddings; errors name the file and the tensor.
    public init(path: String, config: AlbertConfig) throws {
        let file = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> AlbertError { AlbertError("\(path): \(message)") }
        let idsShape = try file.info("input_ids").shape
        guard idsShape.count == 2, idsShape[0] > 0, idsShape[1] > 0 else {
            throw fail("input_ids has shape \(idsShape), expected (batch, sequence)")
        }
        let B = idsShape[0], T = idsShape[1]
        guard T <= config.maxPositionEmbeddings else {
            throw fail("sequence length \(T) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        func read(_ name: String, shape: [Int], range: ClosedRange<Int32>?, alsoAllowed: Int32? = nil) throws -> [Int32]? {
            try file.batchIDs(name, shape: shape, range: range, alsoAllowed: alsoAllowed, fail: fail)
        }
        let V = Int32(config.vocabSize)
        batch = B
        sequence = T
        inputIDs = try read("input_ids", shape: [B, T], range: 0...(V - 1))!
        tokenTypeIDs = try read("token_type_ids", shape: [B, T], range: 0...Int32(config.typeVocabSize - 1))
            ?? [Int32](repeating: 0, count: B * T)
        attentionMask = try read("attention_mask", shape: [B, T], range: 0...1) ?? [Int32](repeating: 1, count: B * T)
        labels = try read("labels", shape: [B, T], range: 0...(V - 1), alsoAllowed: -100)
        sentenceOrderLabels = try read("sentence_order_label", shape: [B], range: 0...1, alsoAllowed: -100)
    }

    /// Copies the batch into a graph recorded for (B, T) with every position scored; absent labels
    /// become -100, so their loss is 0.
    public func fill(_ g: ALBERT.Graph) {
        precondition(g.batch == batch && g.sequence == sequence && g.maskedPositions == nil,
                     "the graph was recorded for another batch shape")
        let N = batch * sequence
        g.inputIDs.update(from: inputIDs, count: N)
        g.tokenTypeIDs.update(from: tokenTypeIDs, count: N)
        for i in 0..<N { g.attentionMask.data[i] = Float(attentionMask[i]) }
        if let labels { g.mlmLabels.update(from: labels, count: N) } else { g.mlmLabels.update(repeating: -100, count: N) }
        if let sentenceOrderLabels {
            g.sentenceOrderLabels.update(from: sentenceOrderLabels, count: batch)
        } else {
            g.sentenceOrderLabels.update(repeating: -100, count: batch)
        }
    }
}
