/// Inverted dropout (Srivastava et al., "Dropout", JMLR 2014, with PyTorch's scaling at training time)
/// whose mask is never stored: it is a pure function of (rng, stream, step, element index), so backward
/// recomputes it, and a resumed run replays it exactly.
///
/// Element i uses word i % 4 of `rng.block(stream: stream, step: step, index: i / 4)`; its uniform is the
/// top 24 bits over 2^24 (as `Philox.uniform`) and the element is kept when that uniform is >= p, so it
/// is kept with probability 1 - p. Kept elements are scaled by 1 / (1 - p); p == 0 copies exactly and
/// p == 1 drops everything.

// MARK: - Forward

/// out (count) = inp ⊙ mask / (1 - p), the mask drawn as described above. `out` may be `inp`.
public func dropoutForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, p: Float,
                           rng: Philox, stream: UInt64, step: UInt64) {
    precondition(p >= 0 && p <= 1, "dropout: p = \(p) outside [0, 1]")
    if p == 0 {
        if UnsafePointer(out) != inp { out.update(from: inp, count: count) }
        return
    }
    applyDropoutMask(count: count, p: p, rng: rng, stream: stream, step: step) { i, factor in
        out[i] = inp[i] * factor
    }
}

/// dinp (count) += dout ⊙ mask / (1 - p), with the mask of the `dropoutForward` call that had the same
/// count, p, rng, stream and step.
public func dropoutBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, count: Int, p: Float,
                            rng: Philox, stream: UInt64, step: UInt64) {
    precondition(p >= 0 && p <= 1, "dropout: p = \(p) outside [0, 1]")
    if p == 0 {
        residualBackward(da: dinp, db: nil, dout: dout, count: count)
        return
    }
    applyDropoutMask(count: count, p: p, rng: rng, stream: stream, step: step) { i, factor in
        dinp[i] += dout[i] * factor
    }
}

/// Calls `body(i, factor)` for every element with factor 1 / (1 - p) when kept and 0 when dropped,
/// drawing four elements' words from one Philox block.
@inline(__always)
func applyDropoutMask(count: Int, p: Float, rng: Philox, stream: UInt64, step: UInt64,
                      _ body: (Int, Float) -> Void) {
    let scale = p < 1 ? 1 / (1 - p) : 0
    @inline(__always)
    func factor(_ word: UInt32) -> Float { Float(word >> 8) * (1.0 / 16_777_216.0) >= p ? scale : 0 }
    var i = 0
    while i < count {
        let w = rng.block(stream: stream, step: step, index: UInt64(i / 4))
        body(i, factor(w.0))
        if i + 1 < count { body(i + 1, factor(w.1)) }
        if i + 2 < count { body(i + 2, factor(w.2)) }
        if i + 3 < count { body(i + 3, factor(w.3)) }
        i += 4
    }
}

// MARK: - Reference

/// Naive `dropoutForward`: one `Philox.block` per element, the word picked by index.
public func dropoutForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int,
                                    p: Float, rng: Philox, stream: UInt64, step: UInt64) {
    for i in 0..<count { out[i] = inp[i] * dropoutFactorReference(i, p: p, rng: rng, stream: stream, step: step) }
}

/// Naive `dropoutBackward`.
public func dropoutBackwardReference(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, count: Int,
                                     p: Float, rng: Philox, stream: UInt64, step: UInt64) {
    for i in 0..<count { dinp[i] += dout[i] * dropoutFactorReference(i, p: p, rng: rng, stream: stream, step: step) }
}

func dropoutFactorReference(_ i: Int, p: Float, rng: Philox, stream: UInt64, step: UInt64) -> Float {
    if p == 0 { return 1 }
    let b = rng.block(stream: stream, step: step, index: UInt64(i / 4))
    let word = [b.0, b.1, b.2, b.3][i % 4]
    let u = Float(word >> 8) / 16_777_216
    return u >= p ? 1 / (1 - p) : 0
}
