/// wav2vec 2.0's draws over an utterance's frames and feature channels, as transformers'
/// `_compute_mask_indices` and `_sample_negative_indices` make them, but from Philox keyed on (seed, epoch,
/// utterance), so that an utterance gets the same masks and distractors on any number of ranks and after a
/// resume. Each draw has its own stream: time masks, distractors and feature masks are independent.
public enum SpeechMasking {
    static let maskStream: UInt64 = 0x3a5c_0001
    static let negativeStream: UInt64 = 0x3a5c_0002
    static let featureStream: UInt64 = 0x3a5c_0003

    /// Spans whose starts the draw picked, for an utterance of `frames` valid frames: the number of spans is
    /// ⌊prob · frames / length + u⌋ (u uniform, HF's probabilistic rounding), at least `minMasks`, at most as
    /// many as fit, their starts distinct and uniform over 0...frames - length, each masking `length`
    /// frames (overlaps merge). Returns `frames` flags; none when the utterance is shorter than a span.
    public static func timeMask(frames: Int, probability: Double, length: Int, minMasks: Int, rng: Philox,
                                epoch: Int, utterance: Int) -> [Bool] {
        spanMask(count: frames, probability: probability, length: length, minMasks: minMasks, rng: rng,
                 stream: maskStream, epoch: epoch, utterance: utterance)
    }

    /// The feature channels masked for an utterance (HF's `mask_feature_indices`, `_compute_mask_indices`
    /// over (batch, hidden_size) with no attention mask): the same span draw as `timeMask` over `channels`
    /// channels, from its own stream. Returns `channels` flags; none when `length` exceeds `channels`
    /// (transformers refuses that config; `Wav2Vec2Config.validate` does too).
    public static func featureMask(channels: Int, probability: Double, length: Int, minMasks: Int, rng: Philox,
                                   epoch: Int, utterance: Int) -> [Bool] {
        spanMask(count: channels, probability: probability, length: length, minMasks: minMasks, rng: rng,
                 stream: featureStream, epoch: epoch, utterance: utterance)
    }

    /// `_compute_mask_indices` for one row of `count` valid positions, its draws on `stream`: u at index
    /// utterance << 24, the k-th start at index (utterance << 24) + 1 + k.
    static func spanMask(count: Int, probability: Double, length: Int, minMasks: Int, rng: Philox, stream: UInt64,
                         epoch: Int, utterance: Int) -> [Bool] {
        var mask = [Bool](repeating: false, count: count)
        guard length >= 1, count >= length else { return mask }
        let base = UInt64(utterance) << 24
        let u = Double(rng.uniform(stream: stream, step: UInt64(epoch), index: base))
        var spans = max(Int(probability * Double(count) / Double(length) + u), minMasks)
        spans = min(spans, count / length, count - (length - 1))
        // A partial Fisher–Yates shuffle of the possible starts picks `spans` distinct ones.
        var starts = Array(0...(count - length))
        for k in 0..<spans {
            let j = k + rng.below(starts.count - k, stream: stream, step: UInt64(epoch), index: base + 1 + UInt64(k))
            starts.swapAt(k, j)
            for t in starts[k]..<(starts[k] + length) { mask[t] = true }
        }
        return mask
    }

    /// K distractors for every masked frame of an utterance: frame indices drawn uniformly among the other
    /// masked frames (with replacement across k, as HF), offset by `offset` (the utterance's first row in
    /// the batch). Unmasked frames get their own index (their loss is not taken). With a single masked frame
    /// its distractors are itself (the loss then masks them all out).
    public static func negatives(mask: [Bool], K: Int, offset: Int, rng: Philox, epoch: Int, utterance: Int,
                                 into out: UnsafeMutablePointer<Int32>) {
        let masked = mask.indices.filter { mask[$0] }
        let base = UInt64(utterance) << 24
        for t in mask.indices {
            for k in 0..<K { out[t * K + k] = Int32(offset + t) }
        }
        guard masked.count > 1 else { return }
        for (i, t) in masked.enumerated() {
            for k in 0..<K {
                var j = rng.below(masked.count - 1, stream: negativeStream, step: UInt64(epoch), index: base + UInt64(i * K + k))
                if j >= i { j += 1 }
                out[t * K + k] = Int32(offset + masked[j])
            }
        }
    }
}
