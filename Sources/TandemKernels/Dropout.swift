/// Inverted dropout (Srivastava et al., "Dropout", JMLR 2014, with PyTorch's scaling at training time)
/// whose mask is never stored: it is a pure function of (rng, stream, step, element index), so backward
/// recomputes it, and a resumed run replays it exactly.
///
/// Element i uses word (i / 16) % 4 of `rng.block(stream: stream, step: step, index: (i / 64) * 16 + i % 16)`,
/// so that 16 consecutive Philox blocks give 64 consecutive elements as four whole SIMD16 vectors. Its
/// uniform is the top 24 bits over 2^24 (as `Philox.uniform`) and the element is kept when that uniform is
/// >= p, so with probability 1 - p. Kept elements are scaled by 1 / (1 - p); p == 0 copies exactly and
/// p == 1 drops everything.

// MARK: - Forward

/// out (count) = inp ⊙ mask / (1 - p), the mask drawn as described above. `out` may be `inp`.
/// `blockOffset` is added to every Philox block index, so that slices of one tensor dropped out one at a
/// time (attention's (batch, head) slices) draw from disjoint counters.
public func dropoutForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, p: Float,
                           rng: Philox, stream: UInt64, step: UInt64, blockOffset: UInt64 = 0) {
    precondition(p >= 0 && p <= 1, "dropout: p = \(p) outside [0, 1]")
    if p == 0 {
        if UnsafePointer(out) != inp { out.update(from: inp, count: count) }
        return
    }
    let generator = PhiloxLanes(rng: rng, stream: stream, step: step)
    let mask = DropoutMask(p: p)
    @inline(__always)
    func apply(_ i: Int, _ words: SIMD16<UInt32>) {
        guard i < count else { return }
        let lanes = Swift.min(16, count - i)
        store(load(inp + i, lanes: lanes) * mask.factors(words), to: out + i, lanes: lanes)
    }
    for group in stride(from: 0, to: count, by: 64) {
        let w = generator.blocks(firstIndex: blockOffset &+ UInt64(group / 4))
        apply(group, w.0)
        apply(group + 16, w.1)
        apply(group + 32, w.2)
        apply(group + 48, w.3)
    }
}

/// dinp (count) += dout ⊙ mask / (1 - p), with the mask of the `dropoutForward` call that had the same
/// count, p, rng, stream and step; with `accumulate` false, stored instead (the same bits as adding into
/// zeros, whatever dinp held). `dinp` may be `dout` when not accumulating.
public func dropoutBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, count: Int, p: Float,
                            rng: Philox, stream: UInt64, step: UInt64, blockOffset: UInt64 = 0,
                            accumulate adding: Bool = true) {
    precondition(p >= 0 && p <= 1, "dropout: p = \(p) outside [0, 1]")
    if p == 0 {
        residualBackward(da: dinp, db: nil, dout: dout, count: count, accumulateA: adding)
        return
    }
    let generator = PhiloxLanes(rng: rng, stream: stream, step: step)
    let mask = DropoutMask(p: p)
    @inline(__always)
    func apply(_ i: Int, _ words: SIMD16<UInt32>) {
        guard i < count else { return }
        let lanes = Swift.min(16, count - i)
        writeGradient(load(dout + i, lanes: lanes) * mask.factors(words), into: dinp + i, lanes: lanes, adding: adding)
    }
    for group in stride(from: 0, to: count, by: 64) {
        let w = generator.blocks(firstIndex: blockOffset &+ UInt64(group / 4))
        apply(group, w.0)
        apply(group + 16, w.1)
        apply(group + 32, w.2)
        apply(group + 48, w.3)
    }
}

/// The keep test on 16 Philox words: the uniform (w >> 8) / 2^24 is >= p exactly when w >> 8 >=
/// ceil(p 2^24), an integer compare (p 2^24 is exact in Float).
struct DropoutMask {
    let threshold: SIMD16<UInt32>
    let kept: Vector

    @inline(__always)
    init(p: Float) {
        threshold = SIMD16(repeating: UInt32((p * 16_777_216).rounded(.up)))
        kept = Vector(repeating: p < 1 ? 1 / (1 - p) : 0)
    }

    /// 1 / (1 - p) for kept lanes, 0 for dropped ones.
    @inline(__always)
    func factors(_ words: SIMD16<UInt32>) -> Vector {
        Vector().replacing(with: kept, where: (words &>> 8) .>= threshold)
    }
}

/// Philox4x32-10 on 16 consecutive counters at once, bit-identical to `Philox.block` (the tests compare
/// them): the 32x32 -> 64-bit products are assembled from 16-bit halves, since SIMD16<UInt32> only
/// multiplies modulo 2^32.
struct PhiloxLanes {
    let key0: UInt32, key1: UInt32
    let step: UInt64

    /// The key derivation of `Philox.block`: the seed with the stream folded in by a SplitMix64 finaliser.
    init(rng: Philox, stream: UInt64, step: UInt64) {
        var z = rng.seed &+ (stream &+ 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        key0 = UInt32(truncatingIfNeeded: z)
        key1 = UInt32(truncatingIfNeeded: z >> 32)
        self.step = step
    }

    /// Words 0...3 of the blocks at indices firstIndex ..< firstIndex + 16, one lane per block.
    @inline(__always)
    func blocks(firstIndex: UInt64) -> (SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>, SIMD16<UInt32>) {
        let lane = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        var c0 = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: firstIndex)) &+ lane
        // The high word of the index carries where the low word wrapped.
        var c1 = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: firstIndex >> 32))
        c1 = c1 &+ SIMD16<UInt32>(repeating: 0).replacing(with: 1, where: c0 .< lane)
        var c2 = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: step))
        var c3 = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: step >> 32))
        var k0 = key0, k1 = key1
        for _ in 0..<10 {
            let (hi0, lo0) = multiplyFull(0xD251_1F53, c0)
            let (hi1, lo1) = multiplyFull(0xCD9E_8D57, c2)
            let n0 = hi1 ^ c1 ^ SIMD16(repeating: k0)
            let n2 = hi0 ^ c3 ^ SIMD16(repeating: k1)
            c1 = lo1
            c3 = lo0
            c0 = n0
            c2 = n2
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    /// (high, low) 32-bit halves of m * c per lane: m c = hh 2^32 + (lh + hl) 2^16 + ll over 16-bit halves.
    @inline(__always)
    func multiplyFull(_ m: UInt32, _ c: SIMD16<UInt32>) -> (SIMD16<UInt32>, SIMD16<UInt32>) {
        let mLo = SIMD16<UInt32>(repeating: m & 0xFFFF), mHi = SIMD16<UInt32>(repeating: m >> 16)
        let cLo = c & 0xFFFF, cHi = c &>> 16
        let ll = cLo &* mLo, lh = cHi &* mLo, hl = cLo &* mHi, hh = cHi &* mHi
        let mid = (ll &>> 16) &+ (lh & 0xFFFF) &+ (hl & 0xFFFF)
        let high = hh &+ (lh &>> 16) &+ (hl &>> 16) &+ (mid &>> 16)
        return (high, c &* SIMD16(repeating: m))
    }
}

// MARK: - Reference

/// Naive `dropoutForward`: one `Philox.block` per element, the word picked by index.
public func dropoutForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int,
                                    p: Float, rng: Philox, stream: UInt64, step: UInt64, blockOffset: UInt64 = 0) {
    for i in 0..<count {
        out[i] = inp[i] * dropoutFactorReference(i, p: p, rng: rng, stream: stream, step: step, blockOffset: blockOffset)
    }
}

/// Naive `dropoutBackward`.
public func dropoutBackwardReference(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, count: Int,
                                     p: Float, rng: Philox, stream: UInt64, step: UInt64) {
    for i in 0..<count { dinp[i] += dout[i] * dropoutFactorReference(i, p: p, rng: rng, stream: stream, step: step) }
}

func dropoutFactorReference(_ i: Int, p: Float, rng: Philox, stream: UInt64, step: UInt64,
                            blockOffset: UInt64 = 0) -> Float {
    if p == 0 { return 1 }
    let b = rng.block(stream: stream, step: step, index: blockOffset &+ UInt64((i / 64) * 16 + i % 16))
    let word = [b.0, b.1, b.2, b.3][(i / 16) % 4]
    let u = Float(word >> 8) / 16_777_216
    return u >= p ? 1 / (1 - p) : 0
}
