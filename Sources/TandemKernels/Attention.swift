import CKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Scaled dot-product attention (Vaswani et al., "Attention Is All You Need", 2017) over heads that
/// stay in place: q, k, v and out are (B, T, C) with head h in columns [h*HS, (h+1)*HS), so each
/// (batch, head) is a strided (T, HS) view with row stride C that sgemm reads through its leading
/// dimension, never a copy.
///
/// The queries may be the first Tq <= T positions of each sequence only (q and out (B, Tq, C), probs
/// (B, NH, Tq, T)): a model whose loss reads only those positions' outputs (ViT's [CLS] token after the
/// last block) computes exactly those rows of the full attention, keys and values still coming from all
/// T positions. With `causal`, query i still sees the keys j <= i. Without `causal` no query row depends
/// on its position, so Tq may also exceed T: cross-attention, the decoder's Tq target positions reading
/// the encoder's T source positions (Vaswani et al. 2017, §3.2.3).

/// Dropout on the attention probabilities (transformers' `attention_probs_dropout_prob`, `attention_dropout`
/// and GPT-2's `attn_pdrop`): out = Drop(softmax(q kᵀ / √HS + mask)) v. Slice s = b NH + h of the
/// probabilities (its Tq T entries) is dropped with `dropoutForward`'s mask at `blockOffset(s)`, so the
/// mask is never stored: backward draws it again. `work` holds the dropped probabilities of one slice
/// (Tq T floats). The saved `probs` stay the undropped ones, which the softmax backward needs.
public struct AttentionDropout {
    public let p: Float
    public let rng: Philox
    public let stream: UInt64, step: UInt64
    public let work: UnsafeMutablePointer<Float>

    public init(p: Float, rng: Philox, stream: UInt64, step: UInt64, work: UnsafeMutablePointer<Float>) {
        precondition(p > 0 && p < 1, "attention dropout: p = \(p) outside (0, 1)")
        self.p = p; self.rng = rng; self.stream = stream; self.step = step; self.work = work
    }

    /// The first Philox block of slice s: 2^36 blocks (2^38 probabilities) apart.
    public static func blockOffset(_ slice: Int) -> UInt64 { UInt64(slice) << 36 }

    /// `work` = the dropped probabilities of slice s, `probs` its Tq T = `count` probabilities.
    func drop(_ probs: UnsafePointer<Float>, slice: Int, count: Int) -> UnsafePointer<Float> {
        dropoutForward(out: work, inp: probs, count: count, p: p, rng: rng, stream: stream, step: step,
                       blockOffset: Self.blockOffset(slice))
        return UnsafePointer(work)
    }

    /// The gradient of the dropped probabilities of slice s into theirs before dropout, in place.
    func backward(_ d: UnsafeMutablePointer<Float>, slice: Int, count: Int) {
        dropoutBackward(dinp: d, dout: d, count: count, p: p, rng: rng, stream: stream, step: step,
                        blockOffset: Self.blockOffset(slice), accumulate: false)
    }
}

// MARK: - Forward

/// out = softmax(q kᵀ / √HS + mask) v per (batch, head); k, v (B, T, C) with C = NH HS; q, out (B, Tq, C),
/// the first Tq = `queries` positions (all T when nil); probs (B, NH, Tq, T) receives the probabilities
/// for backward. The products run in `precision` (see `gemm`).
///
/// `keyMask` (B, T) or nil: 1 attends, 0 is padding. Masked keys (padding, and keys after the query when
/// `causal`) get probability exactly 0, as adding `finfo.min` to the scores does in Hugging Face. A query
/// with no key left gives a zero probability row and a zero output (Hugging Face would spread it
/// uniformly; such rows are padding whose outputs are ignored, and zeros cannot leak NaN).
///
/// `firstKeys` (B, Tq) or nil: query i of sequence b sees no key before `firstKeys[b Tq + i]`. With
/// `causal` this makes the block-diagonal masks of documents packed into one sequence (each query sees
/// the keys from its document's start up to itself).
///
/// `rowStride` (default C): the distance between rows of q, k and v (and of their gradients), so that they
/// may be column blocks of one packed (B, T, 3C) projection, as GPT-2's `c_attn` writes them; out stays
/// (B, Tq, C).
///
/// `scoreBias` (NH, Tq, T) or nil: added to every sequence's scaled scores of head h before the softmax,
/// softmax(q kᵀ / √HS + bias[h]), shared over the batch (BEiT's relative position bias, Bao et al. 2022,
/// which transformers passes as an additive attention mask). Nil runs exactly the code without it.
///
/// `dropout` or nil: dropout on the probabilities before the product with v (`AttentionDropout`); `probs`
/// still receives them undropped. Nil runs exactly the code without it.
public func attentionForward(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                             q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             keyMask: UnsafePointer<Float>?, B: Int, T: Int, queries: Int? = nil, NH: Int, HS: Int,
                             causal: Bool, firstKeys: UnsafePointer<Int32>? = nil, rowStride: Int? = nil,
                             scoreBias: UnsafePointer<Float>? = nil, dropout: AttentionDropout? = nil,
                             precision: MatmulPrecision = .fp32) {
    let C = NH * HS, Tq = queries ?? T, ld = rowStride ?? C
    precondition(Tq >= 1 && (Tq <= T || !causal), "attention: \(Tq) causal queries for \(T) keys")
    precondition(ld >= C, "attention: row stride \(ld) is below \(C) channels")
    let scale = 1 / Float(HS).squareRoot()
    for b in 0..<B {
        let mask = keyMask.map { $0 + b * T }
        let first = firstKeys.map { $0 + b * Tq }
        for h in 0..<NH {
            let head = b * T * ld + h * HS, queryHead = b * Tq * ld + h * HS, outHead = b * Tq * C + h * HS
            let p = probs + (b * NH + h) * Tq * T  // (Tq, T)
            gemm(.none, .transpose, m: Tq, n: T, k: HS, alpha: scale, a: q + queryHead, lda: ld, b: k + head, ldb: ld,
                 beta: 0, c: p, ldc: T, precision: precision)
            if let scoreBias { residualForward(out: p, a: p, b: scoreBias + h * Tq * T, count: Tq * T) }
            attentionSoftmax(p, count: T, rows: Tq, mask: mask, causal: causal, firstKeys: first)
            let kept = dropout?.drop(p, slice: b * NH + h, count: Tq * T) ?? UnsafePointer(p)
            gemm(.none, .none, m: Tq, n: HS, k: T, alpha: 1, a: kept, lda: T, b: v + head, ldb: ld,
                 beta: 0, c: out + outHead, ldc: C, precision: precision)
        }
    }
}

/// Whether attention's row loops (softmax and its backward) run as CKernels' AVX-512 ports, which give
/// the same bits as the Swift loops here: a row of 65 or 197 scores ends in a partial vector, which
/// Swift loads and stores through the stack (a memcpy call each) and AVX-512 masks.
let attentionRowsInC = tandem_avx512_supported() != 0

/// `maskedSoftmaxRow` over `rows` consecutive rows of `count` scores; row i sees keys up to i when
/// `causal`, and none before `firstKeys[i]` when given: the row's scores from there on are softmaxed as a
/// row of their own, those before it become 0. `inC` picks CKernels' port (the default where the CPU has
/// AVX-512) or the Swift loop.
func attentionSoftmax(_ p: UnsafeMutablePointer<Float>, count: Int, rows: Int, mask: UnsafePointer<Float>?,
                      causal: Bool, firstKeys: UnsafePointer<Int32>? = nil, inC: Bool = attentionRowsInC) {
    if inC { return tandem_attention_softmax(p, count, rows, mask, causal ? 1 : 0, firstKeys) }
    for i in 0..<rows {
        let first = firstKeys.map { Int($0[i]) } ?? 0, last = causal ? i : count - 1
        precondition(first >= 0 && first < count, "attention: first key \(first) of row \(i) is outside 0..<\(count)")
        let row = p + i * count
        row.update(repeating: 0, count: first)
        maskedSoftmaxRow(row + first, count: count - first, mask: mask.map { $0 + first }, lastKey: last - first)
    }
}

/// Softmax backward over `rows` rows in place: d = p ⊙ (d - rowsum(p ⊙ d)). `inC` as in `attentionSoftmax`.
func attentionSoftmaxBackward(_ p: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, count: Int, rows: Int,
                              inC: Bool = attentionRowsInC) {
    if inC { return tandem_attention_softmax_backward(p, d, count, rows) }
    for i in 0..<rows {
        let pRow = p + i * count, dRow = d + i * count
        let dot = Vector(repeating: rowDot(pRow, dRow, count))
        for (j, lanes) in chunks(count) {
            store(load(pRow + j, lanes: lanes) * (load(dRow + j, lanes: lanes) - dot), to: dRow + j, lanes: lanes)
        }
    }
}

/// In-place softmax of one row of scores over the keys j <= lastKey with mask[j] != 0 (all of them
/// when `mask` is nil); every other entry becomes exactly 0, and a row with no such key becomes zeros.
@inline(__always)
func maskedSoftmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, mask: UnsafePointer<Float>?, lastKey: Int) {
    let lanes0 = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    @inline(__always)
    func allowed(_ j: Int, _ lanes: Int) -> SIMDMask<SIMD16<Int32>> {
        let inRange = (lanes0 &+ Int32(j)) .<= Int32(lastKey)
        guard let mask else { return inRange }
        return inRange .& (load(mask + j, lanes: lanes) .!= 0)
    }
    // Keys after lastKey (the causal future) are never allowed: only the prefix is computed.
    let keys = lastKey + 1
    (row + keys).update(repeating: 0, count: count - keys)
    var m = Vector(repeating: -.infinity)
    for (j, lanes) in chunks(keys) {
        m = FastMath.maximum(m, load(row + j, lanes: lanes).replacing(with: -.infinity, where: .!allowed(j, lanes)))
    }
    let rowMax = horizontalMax(m)
    if rowMax == -.infinity {
        row.update(repeating: 0, count: keys)
        return
    }
    let shift = Vector(repeating: rowMax)
    var s = Vector()
    for (j, lanes) in chunks(keys) {
        let e = FastMath.exp(load(row + j, lanes: lanes) - shift).replacing(with: 0, where: .!allowed(j, lanes))
        store(e, to: row + j, lanes: lanes)
        s += e
    }
    let inv = Vector(repeating: 1 / horizontalSum(s))
    for (j, lanes) in chunks(keys) { store(load(row + j, lanes: lanes) * inv, to: row + j, lanes: lanes) }
}

// MARK: - Inference with a key/value cache

/// Causal attention of `n` new positions p0..<p0 + n of one sequence over a key/value cache, for
/// generation: q (n, NH HS) with row stride `ldq`, the cache's keys and values (at least p0 + n rows of
/// NH HS, row stride `ldkv`) already holding the new positions' rows, out (n, NH HS). Query i sees keys
/// 0...p0 + i. `scores` holds n (p0 + n) floats. The same products and softmax as `attentionForward`.
public func cachedAttentionForward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, ldq: Int,
                                   keys: UnsafePointer<Float>, values: UnsafePointer<Float>, ldkv: Int,
                                   past p0: Int, count n: Int, NH: Int, HS: Int, scores: UnsafeMutablePointer<Float>) {
    let C = NH * HS, T = p0 + n
    let scale = 1 / Float(HS).squareRoot()
    for h in 0..<NH {
        gemm(.none, .transpose, m: n, n: T, k: HS, alpha: scale, a: q + h * HS, lda: ldq, b: keys + h * HS, ldb: ldkv,
             beta: 0, c: scores, ldc: T)
        for i in 0..<n { maskedSoftmaxRow(scores + i * T, count: T, mask: nil, lastKey: p0 + i) }
        gemm(.none, .none, m: n, n: HS, k: T, alpha: 1, a: scores, lda: T, b: values + h * HS, ldb: ldkv,
             beta: 0, c: out + h * HS, ldc: C)
    }
}

// MARK: - Backward

/// Gradients of `attentionForward`, accumulated into dk, dv (B, T, C) and dq (B, Tq, C) (nil skips one),
/// from dout (B, Tq, C) and the saved probs (B, NH, Tq, T), Tq = `queries` (T when nil). `dprobs`
/// (B, NH, Tq, T) is scratch, overwritten (it ends holding the gradient of the pre-softmax scores); Tq
/// may exceed T where the forward pass allowed it (not causal): backward reads the mask only through probs.
/// Per (batch, head), with P the probabilities and s = 1/√HS:
/// dv += Pᵀ dout, dP = dout vᵀ, dS = P ⊙ (dP - rowsum(P ⊙ dP)), dq += s dS k, dk += s dSᵀ q.
/// Masked entries have P = 0, so they pass no gradient. Products in `precision`.
///
/// `dscoreBias` (NH, Tq, T) or nil: the gradient of the forward's `scoreBias`, dbias[h] += Σ_b dS[b, h]
/// (the bias is shared over the batch). Nil runs exactly the code without it.
///
/// `dropout`: the forward's, whose masks it draws again (with D the dropped probabilities, dv += Dᵀ dout
/// and dP = (dout vᵀ) ⊙ mask / (1 - p) before the softmax backward). Nil runs exactly the code without it.
public func attentionBackward(dq: UnsafeMutablePointer<Float>?, dk: UnsafeMutablePointer<Float>?,
                              dv: UnsafeMutablePointer<Float>?, dprobs: UnsafeMutablePointer<Float>,
                              dout: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                              q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                              B: Int, T: Int, queries: Int? = nil, NH: Int, HS: Int, rowStride: Int? = nil,
                              dscoreBias: UnsafeMutablePointer<Float>? = nil, dropout: AttentionDropout? = nil,
                              precision: MatmulPrecision = .fp32) {
    let C = NH * HS, Tq = queries ?? T, ld = rowStride ?? C
    precondition(Tq >= 1, "attention: \(Tq) queries")
    let scale = 1 / Float(HS).squareRoot()
    for b in 0..<B {
        for h in 0..<NH {
            let head = b * T * ld + h * HS, queryHead = b * Tq * ld + h * HS, outHead = b * Tq * C + h * HS
            let p = probs + (b * NH + h) * Tq * T, dp = dprobs + (b * NH + h) * Tq * T
            if let dv {
                let kept = dropout?.drop(p, slice: b * NH + h, count: Tq * T) ?? p
                gemm(.transpose, .none, m: T, n: HS, k: Tq, alpha: 1, a: kept, lda: T, b: dout + outHead, ldb: C,
                     beta: 1, c: dv + head, ldc: ld, precision: precision)
            }
            if dq == nil && dk == nil && dscoreBias == nil { continue }
            gemm(.none, .transpose, m: Tq, n: T, k: HS, alpha: 1, a: dout + outHead, lda: C, b: v + head, ldb: ld,
                 beta: 0, c: dp, ldc: T, precision: precision)
            dropout?.backward(dp, slice: b * NH + h, count: Tq * T)
            attentionSoftmaxBackward(p, dp, count: T, rows: Tq)
            if let dscoreBias {
                let d = dscoreBias + h * Tq * T
                residualForward(out: d, a: d, b: dp, count: Tq * T)
            }
            if let dq {
                gemm(.none, .none, m: Tq, n: HS, k: T, alpha: scale, a: dp, lda: T, b: k + head, ldb: ld,
                     beta: 1, c: dq + queryHead, ldc: ld, precision: precision)
            }
            if let dk {
                gemm(.transpose, .none, m: T, n: HS, k: Tq, alpha: scale, a: dp, lda: T, b: q + queryHead, ldb: ld,
                     beta: 1, c: dk + head, ldc: ld, precision: precision)
            }
        }
    }
}

// MARK: - Reference

/// Naive `attentionForward`: explicit loops in Double, masking by skipping keys; `dropout` scales each
/// probability by its element's `dropoutFactorReference` (its `work` is not used).
public func attentionForwardReference(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                                      q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                      keyMask: UnsafePointer<Float>?, B: Int, T: Int, queries: Int? = nil,
                                      NH: Int, HS: Int, causal: Bool, firstKeys: UnsafePointer<Int32>? = nil,
                                      scoreBias: UnsafePointer<Float>? = nil, dropout: AttentionDropout? = nil) {
    let C = NH * HS, Tq = queries ?? T
    let scale = 1 / Double(HS).squareRoot()
    for b in 0..<B {
        for h in 0..<NH {
            for i in 0..<Tq {
                let keys = (0..<T).filter { j in
                    (keyMask == nil || keyMask![b * T + j] != 0) && (!causal || j <= i)
                        && (firstKeys == nil || j >= Int(firstKeys![b * Tq + i]))
                }
                var scores = [Double](repeating: 0, count: T)
                for j in keys {
                    var dot = 0.0
                    for d in 0..<HS { dot += Double(q[(b * Tq + i) * C + h * HS + d]) * Double(k[(b * T + j) * C + h * HS + d]) }
                    scores[j] = dot * scale + Double(scoreBias?[(h * Tq + i) * T + j] ?? 0)
                }
                let m = keys.map { scores[$0] }.max() ?? 0
                let total = keys.reduce(0.0) { $0 + exp(scores[$1] - m) }
                var p = [Double](repeating: 0, count: T)
                for j in keys { p[j] = exp(scores[j] - m) / total }
                for j in 0..<T { probs[((b * NH + h) * Tq + i) * T + j] = Float(p[j]) }
                for d in 0..<HS {
                    var acc = 0.0
                    for j in 0..<T {
                        let kept = attentionDropoutFactor(dropout, slice: b * NH + h, element: i * T + j)
                        acc += p[j] * kept * Double(v[(b * T + j) * C + h * HS + d])
                    }
                    out[(b * Tq + i) * C + h * HS + d] = Float(acc)
                }
            }
        }
    }
}

/// Naive `attentionBackward` in Double, element by element; `dprobs` receives dS as in the fast kernel,
/// and `dscoreBias` (NH, Tq, T) its sum over the batch. `dropout` as in `attentionForwardReference`.
public func attentionBackwardReference(dq: UnsafeMutablePointer<Float>?, dk: UnsafeMutablePointer<Float>?,
                                       dv: UnsafeMutablePointer<Float>?, dprobs: UnsafeMutablePointer<Float>,
                                       dout: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                                       q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                       B: Int, T: Int, queries: Int? = nil, NH: Int, HS: Int,
                                       dscoreBias: UnsafeMutablePointer<Float>? = nil, dropout: AttentionDropout? = nil) {
    let C = NH * HS, Tq = queries ?? T
    let scale = 1 / Double(HS).squareRoot()
    /// Row t of sequence b in a (B, rows, C) tensor, head h, channel d.
    func at(_ b: Int, _ t: Int, _ h: Int, _ d: Int, rows: Int) -> Int { (b * rows + t) * C + h * HS + d }
    for b in 0..<B {
        for h in 0..<NH {
            let base = (b * NH + h) * Tq * T
            var dS = [Double](repeating: 0, count: Tq * T)
            for i in 0..<Tq {
                var dP = [Double](repeating: 0, count: T)
                for j in 0..<T {
                    for d in 0..<HS { dP[j] += Double(dout[at(b, i, h, d, rows: Tq)]) * Double(v[at(b, j, h, d, rows: T)]) }
                    dP[j] *= attentionDropoutFactor(dropout, slice: b * NH + h, element: i * T + j)
                }
                var dot = 0.0
                for j in 0..<T { dot += Double(probs[base + i * T + j]) * dP[j] }
                for j in 0..<T { dS[i * T + j] = Double(probs[base + i * T + j]) * (dP[j] - dot) }
            }
            for i in 0..<Tq * T { dprobs[base + i] = Float(dS[i]) }
            if let dscoreBias { for i in 0..<Tq * T { dscoreBias[h * Tq * T + i] += Float(dS[i]) } }
            for d in 0..<HS {
                for i in 0..<Tq {
                    var gq = 0.0
                    for j in 0..<T { gq += dS[i * T + j] * Double(k[at(b, j, h, d, rows: T)]) * scale }
                    dq?[at(b, i, h, d, rows: Tq)] += Float(gq)
                }
                for t in 0..<T {
                    var gk = 0.0, gv = 0.0
                    for i in 0..<Tq {
                        gk += dS[i * T + t] * Double(q[at(b, i, h, d, rows: Tq)]) * scale
                        gv += Double(probs[base + i * T + t]) * attentionDropoutFactor(dropout, slice: b * NH + h, element: i * T + t)
                            * Double(dout[at(b, i, h, d, rows: Tq)])
                    }
                    dk?[at(b, t, h, d, rows: T)] += Float(gk)
                    dv?[at(b, t, h, d, rows: T)] += Float(gv)
                }
            }
        }
    }
}

/// The reference's dropout factor of probability `element` (i T + j) of slice b NH + h: 1 without dropout.
func attentionDropoutFactor(_ dropout: AttentionDropout?, slice: Int, element: Int) -> Double {
    guard let dropout else { return 1 }
    return Double(dropoutFactorReference(element, p: dropout.p, rng: dropout.rng, stream: dropout.stream,
                                         step: dropout.step, blockOffset: AttentionDropout.blockOffset(slice)))
}
