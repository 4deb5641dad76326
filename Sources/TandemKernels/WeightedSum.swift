/// A weighted sum of scalars (DeiT's 0.5 cross-entropy + 0.5 distillation loss, Touvron et al. 2021).

/// out[0] = Σ_i weights[i] inp[i][0], summed in Float in the order given.
public func weightedSumForward(out: UnsafeMutablePointer<Float>, inp: [UnsafePointer<Float>], weights: [Float]) {
    var total: Float = 0
    for (x, w) in zip(inp, weights) { total += w * x[0] }
    out[0] = total
}

/// dinp[i][0] += weights[i] dout[0]. A nil gradient is skipped.
public func weightedSumBackward(dinp: [UnsafeMutablePointer<Float>?], dout: UnsafePointer<Float>, weights: [Float]) {
    for (dx, w) in zip(dinp, weights) { if let dx { dx[0] += w * dout[0] } }
}

// MARK: - Reference

/// Naive `weightedSumForward`, in Double.
public func weightedSumForwardReference(out: UnsafeMutablePointer<Float>, inp: [UnsafePointer<Float>], weights: [Float]) {
    var total = 0.0
    for i in inp.indices { total += Double(weights[i]) * Double(inp[i][0]) }
    out[0] = Float(total)
}
