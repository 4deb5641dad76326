/// LayerScale (Touvron et al., "Going deeper with image transformers", 2021; BEiT's `lambda_1`,
/// `lambda_2`): a residual branch's output multiplied channel by channel by a learned vector, and
/// stochastic depth (Huang et al. 2016; timm's and transformers' `DropPath`): a residual branch's output
/// dropped for whole samples.

// MARK: - Layer scale

/// out (N, C) = inp (N, C) ⊙ scale (C), row by row. `out` may be `inp`.
public func layerScaleForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                              N: Int, C: Int) {
    for n in 0..<N {
        let x = inp + n * C, y = out + n * C
        for (i, lanes) in chunks(C) { store(load(x + i, lanes: lanes) * load(scale + i, lanes: lanes), to: y + i, lanes: lanes) }
    }
}

/// dinp (N, C) += dout ⊙ scale (stored instead when `accumulate` is false) and dscale (C) += Σ_n dout[n] ⊙
/// inp[n]; a nil gradient is skipped.
public func layerScaleBackward(dinp: UnsafeMutablePointer<Float>?, dscale: UnsafeMutablePointer<Float>?,
                               dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                               N: Int, C: Int, accumulate adding: Bool = true) {
    for n in 0..<N {
        let d = dout + n * C, x = inp + n * C
        for (i, lanes) in chunks(C) {
            let g = load(d + i, lanes: lanes)
            if let dinp { writeGradient(g * load(scale + i, lanes: lanes), into: dinp + n * C + i, lanes: lanes, adding: adding) }
            if let dscale { accumulate(g * load(x + i, lanes: lanes), into: dscale + i, lanes: lanes) }
        }
    }
}

// MARK: - Stochastic depth

/// Whether sample b's branch is kept: the uniform `Philox.uniform(stream:step:index: b)` is >= p, so with
/// probability 1 - p (PyTorch's floor(keep + U[0, 1)) keeps when U >= p). A pure function of (rng,
/// stream, step, b), so backward and any replay recompute it.
@inline(__always)
public func dropPathKeeps(sample b: Int, p: Float, rng: Philox, stream: UInt64, step: UInt64) -> Bool {
    rng.uniform(stream: stream, step: step, index: UInt64(b)) >= p
}

/// out (B, count) = inp / (1 - p) for the samples `dropPathKeeps` keeps, 0 for the others. `out` may be `inp`.
public func dropPathForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, B: Int, count: Int, p: Float,
                            rng: Philox, stream: UInt64, step: UInt64) {
    precondition(p >= 0 && p < 1, "drop path: p = \(p) outside [0, 1)")
    let kept = Vector(repeating: 1 / (1 - p))
    for b in 0..<B {
        let x = inp + b * count, y = out + b * count
        let factor = dropPathKeeps(sample: b, p: p, rng: rng, stream: stream, step: step) ? kept : Vector()
        for (i, lanes) in chunks(count) { store(load(x + i, lanes: lanes) * factor, to: y + i, lanes: lanes) }
    }
}

/// dinp (B, count) += dout scaled as `dropPathForward` scaled its sample (stored when `accumulate` is false).
public func dropPathBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, B: Int, count: Int, p: Float,
                             rng: Philox, stream: UInt64, step: UInt64, accumulate adding: Bool = true) {
    let kept = Vector(repeating: 1 / (1 - p))
    for b in 0..<B {
        let d = dout + b * count, dx = dinp + b * count
        let factor = dropPathKeeps(sample: b, p: p, rng: rng, stream: stream, step: step) ? kept : Vector()
        for (i, lanes) in chunks(count) { writeGradient(load(d + i, lanes: lanes) * factor, into: dx + i, lanes: lanes, adding: adding) }
    }
}

// MARK: - Reference

/// Naive `layerScaleBackward`, the scale's gradient summed in Double.
public func layerScaleBackwardReference(dinp: UnsafeMutablePointer<Float>?, dscale: UnsafeMutablePointer<Float>?,
                                        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                                        N: Int, C: Int) {
    for c in 0..<C {
        var acc = 0.0
        for n in 0..<N {
            dinp?[n * C + c] += dout[n * C + c] * scale[c]
            acc += Double(dout[n * C + c]) * Double(inp[n * C + c])
        }
        dscale?[c] += Float(acc)
    }
}
