/// Residual (skip) connections: an elementwise sum whose gradient fans out unchanged.

/// out (count) = a + b. `out` may be `a` or `b`.
public func residualForward(out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                            count: Int) {
    for (i, lanes) in chunks(count) {
        store(load(a + i, lanes: lanes) + load(b + i, lanes: lanes), to: out + i, lanes: lanes)
    }
}

/// da (count) += dout and db (count) += dout; a nil gradient is skipped. `accumulateA`/`accumulateB`
/// false store into that gradient instead (the same bits as adding into zeros, whatever it held).
public func residualBackward(da: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
                             dout: UnsafePointer<Float>, count: Int,
                             accumulateA: Bool = true, accumulateB: Bool = true) {
    for (i, lanes) in chunks(count) {
        let d = load(dout + i, lanes: lanes)
        if let da { writeGradient(d, into: da + i, lanes: lanes, adding: accumulateA) }
        if let db { writeGradient(d, into: db + i, lanes: lanes, adding: accumulateB) }
    }
}

// MARK: - Reference

/// Naive `residualForward`.
public func residualForwardReference(out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>,
                                     b: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { out[i] = a[i] + b[i] }
}

/// Naive `residualBackward`.
public func residualBackwardReference(da: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
                                      dout: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        da?[i] += dout[i]
        db?[i] += dout[i]
    }
}
