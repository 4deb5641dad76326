#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Attention of one query per sequence over a memory of S positions (an encoder's outputs), as the
/// recurrent encoder-decoders use it at every decoder step: B sequences, memory (B, S, C), query (B, ·),
/// context (B, C) = Σ_s p_s values_s with p = softmax over the valid positions s < lengths[b] (padded
/// positions get probability exactly 0, as a -inf score gives in PyTorch; a sequence of length 0 gets
/// zero probabilities and a zero context instead of NaN).
///
/// - dot (Luong et al. 2015, "dot" and, with keys = W_a memory, "general"): score_s = q · k_s.
/// - additive (Bahdanau et al. 2015): score_s = v · tanh(q_s' + k_s) + b_v, where the caller passes the
///   projected query W_a q + b_W (B, A) and projected keys U_a k + b_U (B, S, A).
///
/// The probabilities are written to `weights`, row b at `weights + b * ldw` (S floats), so the steps of
/// a decoder can fill one (B, T, S) alignment matrix (ldw = T S) that backward reads back.

// MARK: - Dot

/// context (B, C) = Σ_s p_s values (B, S, C), p = masked softmax of scores q (B, C) · keys (B, S, C);
/// the probabilities into `weights` rows of stride `ldw`. `lengths` (B), each in 0...S; nil means all S.
public func dotAttentionForward(context: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>, ldw: Int,
                                query: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                lengths: UnsafePointer<Int32>?, B: Int, S: Int, C: Int) {
    for b in 0..<B {
        let p = weights + b * ldw, q = query + b * C, n = validLength(lengths, b, S)
        for s in 0..<n { p[s] = rowDot(q, keys + (b * S + s) * C, C) }
        maskedSoftmaxRow(p, count: S, mask: nil, lastKey: n - 1)
        weightedRowSum(context + b * C, p, values + b * S * C, n, C)
    }
}

/// Gradients of `dotAttentionForward`, accumulated into dquery (B, C), dkeys, dvalues (B, S, C), each
/// skipped when nil, from dcontext (B, C) and the forward's `weights`. `scratch` holds S floats.
/// dv_s += p_s dc; dp_s = dc · v_s; ds = p ⊙ (dp - Σ p dp); dq += Σ_s ds_s k_s; dk_s += ds_s q.
public func dotAttentionBackward(dquery: UnsafeMutablePointer<Float>?, dkeys: UnsafeMutablePointer<Float>?,
                                 dvalues: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>,
                                 dcontext: UnsafePointer<Float>, weights: UnsafePointer<Float>, ldw: Int,
                                 query: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                 lengths: UnsafePointer<Int32>?, B: Int, S: Int, C: Int) {
    for b in 0..<B {
        let n = validLength(lengths, b, S)
        let ds = scoreGradients(scratch, dcontext + b * C, weights + b * ldw, values + b * S * C, dvalues.map { $0 + b * S * C }, n, C)
        for s in 0..<n {
            let d = Vector(repeating: ds[s]), k = keys + (b * S + s) * C
            if let dquery { for (i, lanes) in chunks(C) { accumulate(d * load(k + i, lanes: lanes), into: dquery + b * C + i, lanes: lanes) } }
            if let dkeys {
                let q = query + b * C
                for (i, lanes) in chunks(C) { accumulate(d * load(q + i, lanes: lanes), into: dkeys + (b * S + s) * C + i, lanes: lanes) }
            }
        }
    }
}

// MARK: - Additive

/// context (B, C) = Σ_s p_s values (B, S, C), p = masked softmax of score_s = v · tanh(query_b + keys_{b,s})
/// + vBias, with query (B, A) and keys (B, S, A) already projected, v (A), vBias (1) or nil. Keeps
/// tanh(query + keys) in `hidden` (B, S, A) for backward (zeros at padded positions); the probabilities
/// go to `weights` rows of stride `ldw`.
public func additiveAttentionForward(context: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>, ldw: Int,
                                     hidden: UnsafeMutablePointer<Float>, query: UnsafePointer<Float>,
                                     keys: UnsafePointer<Float>, v: UnsafePointer<Float>, vBias: UnsafePointer<Float>?,
                                     values: UnsafePointer<Float>, lengths: UnsafePointer<Int32>?,
                                     B: Int, S: Int, A: Int, C: Int) {
    let bias = vBias?[0] ?? 0
    for b in 0..<B {
        let p = weights + b * ldw, q = query + b * A, n = validLength(lengths, b, S)
        for s in 0..<n {
            let k = keys + (b * S + s) * A, h = hidden + (b * S + s) * A
            for (i, lanes) in chunks(A) {
                store(FastMath.tanh(load(q + i, lanes: lanes) + load(k + i, lanes: lanes)), to: h + i, lanes: lanes)
            }
            p[s] = rowDot(h, v, A) + bias
        }
        (hidden + (b * S + n) * A).update(repeating: 0, count: (S - n) * A)
        maskedSoftmaxRow(p, count: S, mask: nil, lastKey: n - 1)
        weightedRowSum(context + b * C, p, values + b * S * C, n, C)
    }
}

/// Gradients of `additiveAttentionForward`, accumulated into dquery (B, A), dkeys (B, S, A), dv (A),
/// dvBias (1), dvalues (B, S, C), each skipped when nil, from dcontext (B, C), the forward's `weights`
/// and `hidden`. `scratch` holds S floats. With ds the scores' gradient (as in `dotAttentionBackward`):
/// dvBias += Σ ds (zero up to rounding: softmax ignores a common shift), dv += Σ_s ds_s h_s,
/// and dpre_s = ds_s v ⊙ (1 - h_s²) goes to dkeys_s and, summed over s, to dquery.
public func additiveAttentionBackward(dquery: UnsafeMutablePointer<Float>?, dkeys: UnsafeMutablePointer<Float>?,
                                      dv: UnsafeMutablePointer<Float>?, dvBias: UnsafeMutablePointer<Float>?,
                                      dvalues: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>,
                                      dcontext: UnsafePointer<Float>, weights: UnsafePointer<Float>, ldw: Int,
                                      hidden: UnsafePointer<Float>, v: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                      lengths: UnsafePointer<Int32>?, B: Int, S: Int, A: Int, C: Int) {
    for b in 0..<B {
        let n = validLength(lengths, b, S)
        let ds = scoreGradients(scratch, dcontext + b * C, weights + b * ldw, values + b * S * C, dvalues.map { $0 + b * S * C }, n, C)
        for s in 0..<n {
            let d = Vector(repeating: ds[s]), h = hidden + (b * S + s) * A
            dvBias?[0] += ds[s]
            for (i, lanes) in chunks(A) {
                let hv = load(h + i, lanes: lanes)
                if let dv { accumulate(d * hv, into: dv + i, lanes: lanes) }
                let dpre = d * load(v + i, lanes: lanes) * (1 - hv * hv)
                if let dquery { accumulate(dpre, into: dquery + b * A + i, lanes: lanes) }
                if let dkeys { accumulate(dpre, into: dkeys + (b * S + s) * A + i, lanes: lanes) }
            }
        }
    }
}

// MARK: - Shared steps

@inline(__always)
private func validLength(_ lengths: UnsafePointer<Int32>?, _ b: Int, _ S: Int) -> Int {
    guard let lengths else { return S }
    let n = Int(lengths[b])
    precondition(n >= 0 && n <= S, "attention: length \(n) of sequence \(b) outside 0...\(S)")
    return n
}

/// out (C) = Σ_{s < n} p_s rows_s, rows (n, C).
@inline(__always)
private func weightedRowSum(_ out: UnsafeMutablePointer<Float>, _ p: UnsafePointer<Float>, _ rows: UnsafePointer<Float>,
                            _ n: Int, _ C: Int) {
    out.update(repeating: 0, count: C)
    for s in 0..<n {
        let w = Vector(repeating: p[s]), row = rows + s * C
        for (i, lanes) in chunks(C) { accumulate(w * load(row + i, lanes: lanes), into: out + i, lanes: lanes) }
    }
}

/// One sequence's dvalues_s += p_s dc and the scores' gradient ds = p ⊙ (dp - Σ p dp), dp_s = dc · v_s,
/// written to `ds` (the first n floats), which it returns.
@inline(__always)
private func scoreGradients(_ ds: UnsafeMutablePointer<Float>, _ dc: UnsafePointer<Float>, _ p: UnsafePointer<Float>,
                            _ values: UnsafePointer<Float>, _ dvalues: UnsafeMutablePointer<Float>?, _ n: Int, _ C: Int)
    -> UnsafeMutablePointer<Float> {
    for s in 0..<n {
        let row = values + s * C
        ds[s] = rowDot(dc, row, C)
        if let dvalues {
            let w = Vector(repeating: p[s])
            for (i, lanes) in chunks(C) { accumulate(w * load(dc + i, lanes: lanes), into: dvalues + s * C + i, lanes: lanes) }
        }
    }
    if n > 0 { attentionSoftmaxBackward(p, ds, count: n, rows: 1) }
    return ds
}

// MARK: - Reference

/// Scores (one sequence), probabilities and context in Double: what the references share.
private func referenceAttention(_ b: Int, scores: [Double], values: UnsafePointer<Float>, lengths: UnsafePointer<Int32>?,
                                S: Int, C: Int) -> (p: [Double], context: [Double]) {
    let n = lengths.map { Int($0[b]) } ?? S
    var p = [Double](repeating: 0, count: S)
    if n > 0 {
        let m = scores[0..<n].max()!
        let z = scores[0..<n].reduce(0.0) { $0 + exp($1 - m) }
        for s in 0..<n { p[s] = exp(scores[s] - m) / z }
    }
    var context = [Double](repeating: 0, count: C)
    for s in 0..<n { for c in 0..<C { context[c] += p[s] * Double(values[(b * S + s) * C + c]) } }
    return (p, context)
}

/// The gradient of the scores of one sequence from dcontext, in Double; adds p_s dc into dvalues.
private func referenceScoreGradients(_ b: Int, p: [Double], dcontext: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                     dvalues: UnsafeMutablePointer<Float>?, S: Int, C: Int) -> [Double] {
    var dp = [Double](repeating: 0, count: S)
    for s in 0..<S {
        for c in 0..<C {
            dp[s] += Double(dcontext[b * C + c]) * Double(values[(b * S + s) * C + c])
            dvalues?[(b * S + s) * C + c] += Float(p[s] * Double(dcontext[b * C + c]))
        }
    }
    let dot = (0..<S).reduce(0.0) { $0 + p[$1] * dp[$1] }
    return (0..<S).map { p[$0] * (dp[$0] - dot) }
}

/// Naive `dotAttentionForward` in Double.
public func dotAttentionForwardReference(context: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>, ldw: Int,
                                         query: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                         lengths: UnsafePointer<Int32>?, B: Int, S: Int, C: Int) {
    for b in 0..<B {
        let scores = (0..<S).map { s in (0..<C).reduce(0.0) { $0 + Double(query[b * C + $1]) * Double(keys[(b * S + s) * C + $1]) } }
        let (p, ctx) = referenceAttention(b, scores: scores, values: values, lengths: lengths, S: S, C: C)
        for s in 0..<S { weights[b * ldw + s] = Float(p[s]) }
        for c in 0..<C { context[b * C + c] = Float(ctx[c]) }
    }
}

/// Naive `dotAttentionBackward` in Double (recomputes the probabilities).
public func dotAttentionBackwardReference(dquery: UnsafeMutablePointer<Float>?, dkeys: UnsafeMutablePointer<Float>?,
                                          dvalues: UnsafeMutablePointer<Float>?, dcontext: UnsafePointer<Float>,
                                          query: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                          lengths: UnsafePointer<Int32>?, B: Int, S: Int, C: Int) {
    for b in 0..<B {
        let scores = (0..<S).map { s in (0..<C).reduce(0.0) { $0 + Double(query[b * C + $1]) * Double(keys[(b * S + s) * C + $1]) } }
        let p = referenceAttention(b, scores: scores, values: values, lengths: lengths, S: S, C: C).p
        let ds = referenceScoreGradients(b, p: p, dcontext: dcontext, values: values, dvalues: dvalues, S: S, C: C)
        for c in 0..<C {
            var dq = 0.0
            for s in 0..<S {
                dq += ds[s] * Double(keys[(b * S + s) * C + c])
                dkeys?[(b * S + s) * C + c] += Float(ds[s] * Double(query[b * C + c]))
            }
            dquery?[b * C + c] += Float(dq)
        }
    }
}

/// tanh(query_b + keys_{b,s}) (A) in Double.
private func referenceHidden(_ b: Int, _ s: Int, query: UnsafePointer<Float>, keys: UnsafePointer<Float>, S: Int, A: Int) -> [Double] {
    (0..<A).map { tanh(Double(query[b * A + $0]) + Double(keys[(b * S + s) * A + $0])) }
}

/// Naive `additiveAttentionForward` in Double (no `hidden` output).
public func additiveAttentionForwardReference(context: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>, ldw: Int,
                                              query: UnsafePointer<Float>, keys: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                              vBias: UnsafePointer<Float>?, values: UnsafePointer<Float>,
                                              lengths: UnsafePointer<Int32>?, B: Int, S: Int, A: Int, C: Int) {
    for b in 0..<B {
        let scores = (0..<S).map { s in
            zip(referenceHidden(b, s, query: query, keys: keys, S: S, A: A), 0..<A).reduce(Double(vBias?[0] ?? 0)) { $0 + $1.0 * Double(v[$1.1]) }
        }
        let (p, ctx) = referenceAttention(b, scores: scores, values: values, lengths: lengths, S: S, C: C)
        for s in 0..<S { weights[b * ldw + s] = Float(p[s]) }
        for c in 0..<C { context[b * C + c] = Float(ctx[c]) }
    }
}

/// Naive `additiveAttentionBackward` in Double (recomputes the forward).
public func additiveAttentionBackwardReference(dquery: UnsafeMutablePointer<Float>?, dkeys: UnsafeMutablePointer<Float>?,
                                               dv: UnsafeMutablePointer<Float>?, dvBias: UnsafeMutablePointer<Float>?,
                                               dvalues: UnsafeMutablePointer<Float>?, dcontext: UnsafePointer<Float>,
                                               query: UnsafePointer<Float>, keys: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                               vBias: UnsafePointer<Float>?, values: UnsafePointer<Float>,
                                               lengths: UnsafePointer<Int32>?, B: Int, S: Int, A: Int, C: Int) {
    for b in 0..<B {
        let hidden = (0..<S).map { referenceHidden(b, $0, query: query, keys: keys, S: S, A: A) }
        let scores = hidden.map { h in (0..<A).reduce(Double(vBias?[0] ?? 0)) { $0 + h[$1] * Double(v[$1]) } }
        let p = referenceAttention(b, scores: scores, values: values, lengths: lengths, S: S, C: C).p
        let ds = referenceScoreGradients(b, p: p, dcontext: dcontext, values: values, dvalues: dvalues, S: S, C: C)
        var dq = [Double](repeating: 0, count: A)
        for s in 0..<S {
            dvBias?[0] += Float(ds[s])
            for a in 0..<A {
                dv?[a] += Float(ds[s] * hidden[s][a])
                let dpre = ds[s] * Double(v[a]) * (1 - hidden[s][a] * hidden[s][a])
                dq[a] += dpre
                dkeys?[(b * S + s) * A + a] += Float(dpre)
            }
        }
        for a in 0..<A { dquery?[b * A + a] += Float(dq[a]) }
    }
}
