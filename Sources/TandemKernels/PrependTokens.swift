/// Leading tokens and learned positions (ViT's [CLS], Dosovitskiy et al. 2021; DeiT's [CLS] and
/// distillation tokens, Touvron et al. 2021): K learned tokens in front of every sequence of NP
/// embeddings, and learned positions (NP + K, C) added to the whole sequence.

/// out (B, NP + K, C): row k < K = tokens[k] (C) + positions[k], row K + i = inp (B, NP, C)[i] +
/// positions[K + i]; K = tokens.count.
public func prependTokensForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                 tokens: [UnsafePointer<Float>], positions: UnsafePointer<Float>,
                                 B: Int, NP: Int, C: Int) {
    let K = tokens.count, T = NP + K
    for b in 0..<B {
        let y = out + b * T * C
        for k in 0..<K { residualForward(out: y + k * C, a: tokens[k], b: positions + k * C, count: C) }
        residualForward(out: y + K * C, a: inp + b * NP * C, b: positions + K * C, count: NP * C)
    }
}

/// Gradients of `prependTokensForward`, accumulated: dtokens[k] (C) += Σ_b dout[b, k], dpositions
/// (NP + K, C) += Σ_b dout[b], dinp[b, i] += dout[b, K + i]. A nil gradient is skipped.
public func prependTokensBackward(dinp: UnsafeMutablePointer<Float>?, dtokens: [UnsafeMutablePointer<Float>?],
                                  dpositions: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                  B: Int, NP: Int, C: Int) {
    let K = dtokens.count, T = NP + K
    for b in 0..<B {
        let dy = dout + b * T * C
        for k in 0..<K { residualBackward(da: dtokens[k], db: dpositions.map { $0 + k * C }, dout: dy + k * C, count: C) }
        residualBackward(da: dinp.map { $0 + b * NP * C }, db: dpositions.map { $0 + K * C }, dout: dy + K * C,
                         count: NP * C)
    }
}

// MARK: - Reference

/// Naive `prependTokensForward`: each output element from the index formula.
public func prependTokensForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                          tokens: [UnsafePointer<Float>], positions: UnsafePointer<Float>,
                                          B: Int, NP: Int, C: Int) {
    let K = tokens.count, T = NP + K
    for b in 0..<B {
        for t in 0..<T {
            for c in 0..<C {
                let source = t < K ? tokens[t][c] : inp[(b * NP + t - K) * C + c]
                out[(b * T + t) * C + c] = source + positions[t * C + c]
            }
        }
    }
}

/// Naive `prependTokensBackward`: token and position gradients summed over the batch in Double.
public func prependTokensBackwardReference(dinp: UnsafeMutablePointer<Float>?, dtokens: [UnsafeMutablePointer<Float>?],
                                           dpositions: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                           B: Int, NP: Int, C: Int) {
    let K = dtokens.count, T = NP + K
    for t in 0..<T {
        for c in 0..<C {
            var acc = 0.0
            for b in 0..<B { acc += Double(dout[(b * T + t) * C + c]) }
            dpositions?[t * C + c] += Float(acc)
            if t < K { dtokens[t]?[c] += Float(acc) }
            if t >= K, let dinp { for b in 0..<B { dinp[(b * NP + t - K) * C + c] += dout[(b * T + t) * C + c] } }
        }
    }
}
