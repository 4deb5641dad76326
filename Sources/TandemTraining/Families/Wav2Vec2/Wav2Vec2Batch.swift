import TandemCheckpoint
import TandemModels

/// A wav2vec 2.0 batch file (DESIGN.md "Batch files"), as `tandem debug` reads it: `input_values` F32
/// (B, samples) required; `attention_mask` (B, samples) integer 0/1, each row ones then zeros (absent:
/// all ones); for Wav2Vec2ForCTC `labels` (B, U) integer in 0..<vocab_size, padded with -100; for
/// Wav2Vec2ForPreTraining `mask_time_indices` (B, frames) BOOL or integer 0/1 and
/// `sampled_negative_indices` (B, frames, num_negatives) integer, indices into the B × frames frames.
public struct Wav2Vec2Batch {
    public let batch: Int
    public let samples: Int
    /// The frames the feature encoder makes of `samples`.
    public let frames: Int
    public let inputValues: [Float]
    /// Each utterance's sample count (the ones of its attention_mask row, or `samples`).
    public let lengths: [Int]
    public let labels: [Int32]?
    /// U, the label columns (1 without labels).
    public let labelColumns: Int
    public let maskTimeIndices: [Int32]?
    public let sampledNegativeIndices: [Int32]?

    /// Reads and checks `path` against `config`; errors name the file and the tensor.
    public init(path: String, config: Wav2Vec2Config) throws {
        let file = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> ConfigError { ConfigError("\(path): \(message)") }
        let shape = try file.info("input_values").shape
        guard shape.count == 2, shape[0] > 0 else {
            throw fail("input_values has shape \(shape), expected (batch, samples)")
        }
        let (B, S) = (shape[0], shape[1])
        let T = config.frames(samples: S)
        guard T > 0 else {
            throw fail("input_values has \(S) samples per utterance, fewer than the feature encoder's receptive field of \(config.receptiveField) samples (no frame)")
        }
        (batch, samples, frames) = (B, S, T)
        do { inputValues = try file.floats("input_values") } catch { throw fail("input_values: \(error)") }

        if let mask = try file.batchIDs("attention_mask", shape: [B, S], range: 0...1, fail: fail) {
            lengths = try (0..<B).map { b in
                let row = mask[(b * S)..<((b + 1) * S)]
                let n = row.prefix(while: { $0 == 1 }).count
                guard !row.dropFirst(n).contains(1) else {
                    throw fail("attention_mask row \(b) is not ones then zeros (a padded utterance starts at sample 0)")
                }
                guard config.frames(samples: n) > 0 else {
                    throw fail("attention_mask row \(b) has \(n) samples, fewer than the receptive field of \(config.receptiveField) (no frame)")
                }
                return n
            }
        } else {
            lengths = Array(repeating: S, count: B)
        }

        switch config.head {
        case .ctc:
            for name in ["mask_time_indices", "sampled_negative_indices"] where file.tensors[name] != nil {
                throw fail("\(name) is an input of Wav2Vec2ForPreTraining, not of Wav2Vec2ForCTC")
            }
            if let info = file.tensors["labels"] {
                guard info.shape.count == 2, info.shape[0] == B else {
                    throw fail("labels has shape \(info.shape), expected (\(B), label columns)")
                }
                let U = max(info.shape[1], 1)
                let values = try file.batchIDs("labels", shape: info.shape, range: 0...Int32(config.vocabSize - 1),
                                               alsoAllowed: -100, fail: fail)!
                if let i = values.firstIndex(of: Int32(config.padTokenId)) {
                    throw fail("labels[\(i)] = \(config.padTokenId) is the CTC blank (pad_token_id); pad transcripts with -100")
                }
                labels = info.shape[1] == 0 ? [Int32](repeating: -100, count: B) : values
                labelColumns = U
            } else {
                (labels, labelColumns) = (nil, 1)
            }
            (maskTimeIndices, sampledNegativeIndices) = (nil, nil)
        case .preTraining:
            if file.tensors["labels"] != nil {
                throw fail("labels is an input of Wav2Vec2ForCTC, not of Wav2Vec2ForPreTraining")
            }
            (labels, labelColumns) = (nil, 1)
            maskTimeIndices = try file.batchIDs("mask_time_indices", shape: [B, T], range: 0...1, fail: fail)
            let K = config.numNegatives
            sampledNegativeIndices = try file.batchIDs("sampled_negative_indices", shape: [B, T, K],
                                                       range: 0...Int32(B * T - 1), fail: fail)
            if sampledNegativeIndices != nil && maskTimeIndices == nil {
                throw fail("sampled_negative_indices needs mask_time_indices (the frames whose distractors they are)")
            }
        }
    }

    /// Copies the batch into a graph recorded by `record(on:batch:samples:labelColumns:)` with this
    /// batch's sizes; absent labels stay -100, an absent mask masks nothing, absent negatives stay 0.
    public func fill(_ g: Wav2Vec2.Graph, config: Wav2Vec2Config) {
        precondition(g.batch == batch && g.samples == samples, "the graph was recorded for another batch shape")
        g.inputValues.data.update(from: inputValues, count: inputValues.count)
        g.setLengths(lengths, config: config)
        if let labels, let l = g.labels { l.update(from: labels, count: batch * g.labelColumns) }
        if let maskTimeIndices, let m = g.maskTimeIndices {
            for i in 0..<m.count { m.data[i] = Float(maskTimeIndices[i]) }
        }
        if let sampledNegativeIndices, let n = g.sampledNegativeIndices {
            n.update(from: sampledNegativeIndices, count: sampledNegativeIndices.count)
        }
    }
}
