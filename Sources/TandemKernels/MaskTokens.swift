/// Mask-token substitution (SimMIM, Xie et al. 2022; HF `ViTEmbeddings.mask_token`): rows of embeddings
/// whose mask is 1 are replaced by a learned token.

/// out (N, C) = inp (1 - mask) + token mask, mask (N) in {0, 1}, token (C).
public func maskTokensForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                              token: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let m = mask[n], keep = 1 - m
        let x = inp + n * C, y = out + n * C
        for c in 0..<C { y[c] = x[c] * keep + token[c] * m }
    }
}

/// dinp (N, C) += dout (1 - mask); dtoken (C) += Σ_n dout[n] mask[n]. A nil gradient is skipped.
public func maskTokensBackward(dinp: UnsafeMutablePointer<Float>?, dtoken: UnsafeMutablePointer<Float>?,
                               dout: UnsafePointer<Float>, mask: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let m = mask[n], keep = 1 - m
        let dy = dout + n * C
        if let dinp { let dx = dinp + n * C; for c in 0..<C { dx[c] += dy[c] * keep } }
        if let dtoken, m != 0 { for c in 0..<C { dtoken[c] += dy[c] * m } }
    }
}

// MARK: - Reference

/// Naive `maskTokensForward`: each element from the formula, in Double.
public func maskTokensForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                       mask: UnsafePointer<Float>, token: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        for c in 0..<C {
            out[n * C + c] = Float(Double(inp[n * C + c]) * (1 - Double(mask[n])) + Double(token[c]) * Double(mask[n]))
        }
    }
}

/// Naive `maskTokensBackward`: the token's gradient summed per channel over all rows in Double.
public func maskTokensBackwardReference(dinp: UnsafeMutablePointer<Float>?, dtoken: UnsafeMutablePointer<Float>?,
                                        dout: UnsafePointer<Float>, mask: UnsafePointer<Float>, N: Int, C: Int) {
    if let dinp {
        for n in 0..<N { for c in 0..<C { dinp[n * C + c] += Float(Double(dout[n * C + c]) * (1 - Double(mask[n]))) } }
    }
    if let dtoken {
        for c in 0..<C {
            var acc = 0.0
            for n in 0..<N { acc += Double(dout[n * C + c]) * Double(mask[n]) }
            dtoken[c] += Float(acc)
        }
    }
}
