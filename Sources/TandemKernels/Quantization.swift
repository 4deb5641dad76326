#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemTensor

// wav2vec 2.0's product quantiser (Baevski et al. 2020, HF `Wav2Vec2GumbelVectorQuantizer`) and its
// pre-training loss (`Wav2Vec2ForPreTraining`): a contrastive loss over K distractors plus a diversity
// loss on the codebook's perplexity.

/// What `gumbelQuantizeForward` keeps for the backward pass: per (row, group) the chosen entry and, in
/// training, the Gumbel-softmax distribution (the straight-through gradient goes through it) and the
/// plain softmax of the logits (the perplexity's).
public struct GumbelQuantizeSaved {
    /// (N G) chosen entry of each row's group.
    public let chosen: UnsafeMutablePointer<Int32>
    /// (N G V) softmax((logits + gumbel) / τ), training only.
    public let gumbelSoftmax: UnsafeMutablePointer<Float>
    /// (N G V) softmax(logits), training only.
    public let softmax: UnsafeMutablePointer<Float>
    /// (G V) the marginal distribution the perplexity is taken of.
    public let marginal: UnsafeMutablePointer<Float>
    public init(chosen: UnsafeMutablePointer<Int32>, gumbelSoftmax: UnsafeMutablePointer<Float>,
                softmax: UnsafeMutablePointer<Float>, marginal: UnsafeMutablePointer<Float>) {
        self.chosen = chosen; self.gumbelSoftmax = gumbelSoftmax; self.softmax = softmax; self.marginal = marginal
    }
}

/// The Gumbel noise of element i of a quantiser draw: -log(-log u), u uniform in (0, 1) (24 bits, centred) from (rng, stream,
/// step, i) (PyTorch draws -log(Exp(1)), the same law).
@inline(__always)
public func gumbelNoise(_ i: Int, rng: Philox, stream: UInt64, step: UInt64) -> Float {
    gumbelNoise(bits: rng.block(stream: stream, step: step, index: UInt64(i)).0 >> 8)
}

/// -log(-log u) for u = (bits + 1/2) / 2^24, `bits` in 0..<2^24, in Double: the largest u, 1 - 2^-25, rounds
/// to 1 in Float, where the noise would be infinite.
@inline(__always)
public func gumbelNoise(bits: UInt32) -> Float {
    let u = (Double(bits) + 0.5) * (1.0 / 16_777_216.0)
    return Float(-log(-log(u)))
}

/// out (N, G Dg) = for each row n and group g the codevector codevectors[g V + k] of the chosen entry k:
/// in training k = argmax(logits + Gumbel noise) (noise from `rng`, `stream`, `step`), in evaluation
/// k = argmax(logits) (ties to the first, as PyTorch's argmax). `logits` (N, G V), `codevectors` (G V, Dg).
/// `mask` (N) or nil: the rows whose code distribution the perplexity averages (all rows when nil).
/// Returns the perplexity Σ_g exp(-Σ_v p_gv log p_gv) of the marginal p over those rows of softmax(logits)
/// (training) or of the one-hot codes (evaluation).
public func gumbelQuantizeForward(out: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
                                  codevectors: UnsafePointer<Float>, mask: UnsafePointer<Float>?,
                                  N: Int, G: Int, V: Int, Dg: Int, temperature: Float, training: Bool,
                                  rng: Philox, stream: UInt64, step: UInt64, saved: GumbelQuantizeSaved) -> Float {
    precondition(temperature > 0, "gumbel quantiser: temperature \(temperature) is not positive")
    let marginal = saved.marginal
    marginal.update(repeating: 0, count: G * V)
    var rows = 0.0
    for n in 0..<N {
        let weight = mask.map { $0[n] } ?? 1
        if weight != 0 { rows += 1 }
        for g in 0..<G {
            let l = logits + (n * G + g) * V
            var best = 0
            if training {
                let y = saved.gumbelSoftmax + (n * G + g) * V
                var m = -Float.infinity
                for v in 0..<V {
                    y[v] = (l[v] + gumbelNoise((n * G + g) * V + v, rng: rng, stream: stream, step: step)) / temperature
                    if y[v] > m { m = y[v]; best = v }
                }
                softmaxRow(y, V, max: m)
                let s = saved.softmax + (n * G + g) * V
                var ms = -Float.infinity
                for v in 0..<V { s[v] = l[v]; ms = max(ms, l[v]) }
                softmaxRow(s, V, max: ms)
                if weight != 0 { for v in 0..<V { marginal[g * V + v] += s[v] } }
            } else {
                for v in 1..<V where l[v] > l[best] { best = v }
                if weight != 0 { marginal[g * V + best] += 1 }
            }
            saved.chosen[n * G + g] = Int32(best)
            (out + (n * G + g) * Dg).update(from: codevectors + (g * V + best) * Dg, count: Dg)
        }
    }
    var perplexity = 0.0
    for g in 0..<G {
        var entropy = 0.0
        for v in 0..<V {
            let p = rows > 0 ? Double(marginal[g * V + v]) / rows : 0
            marginal[g * V + v] = Float(p)
            if p > 0 { entropy -= p * log(p) }
        }
        perplexity += exp(entropy)
    }
    return Float(perplexity)
}

/// Gradients of `gumbelQuantizeForward`, accumulated: dcodevectors (G V, Dg) += dout at each chosen entry;
/// in training dlogits (N, G V) += the straight-through gradient through the Gumbel softmax, (1/τ) y (dp - Σ dp y)
/// with dp_v = dout · codevectors[g V + v], plus the perplexity's, dperplexity d(perplexity)/dlogits through
/// softmax(logits) on the rows of `mask`. In evaluation the codes are an argmax: no gradient reaches the logits.
public func gumbelQuantizeBackward(dlogits: UnsafeMutablePointer<Float>?, dcodevectors: UnsafeMutablePointer<Float>?,
                                   dout: UnsafePointer<Float>, dperplexity: Float, codevectors: UnsafePointer<Float>,
                                   mask: UnsafePointer<Float>?, N: Int, G: Int, V: Int, Dg: Int, temperature: Float,
                                   training: Bool, saved: GumbelQuantizeSaved) {
    if let dcodevectors {
        for n in 0..<N {
            for g in 0..<G {
                let k = Int(saved.chosen[n * G + g])
                let d = dcodevectors + (g * V + k) * Dg, o = dout + (n * G + g) * Dg
                for j in 0..<Dg { d[j] += o[j] }
            }
        }
    }
    guard training, let dlogits else { return }
    var rows = 0
    for n in 0..<N where (mask?[n] ?? 1) != 0 { rows += 1 }
    // d(perplexity)/d(marginal_gv) = -exp(H_g) (log p_gv + 1).
    var dmarginal = [Float](repeating: 0, count: G * V)
    if dperplexity != 0 && rows > 0 {
        for g in 0..<G {
            var entropy = 0.0
            for v in 0..<V { let p = Double(saved.marginal[g * V + v]); if p > 0 { entropy -= p * log(p) } }
            let e = exp(entropy)
            for v in 0..<V {
                let p = Double(saved.marginal[g * V + v])
                dmarginal[g * V + v] = p > 0 ? Float(Double(dperplexity) * -e * (log(p) + 1) / Double(rows)) : 0
            }
        }
    }
    var dp = [Float](repeating: 0, count: V)  // d(out)/d(probs) of one row's group, reused
    for n in 0..<N {
        let counted = (mask?[n] ?? 1) != 0 && dperplexity != 0 && rows > 0
        for g in 0..<G {
            let y = saved.gumbelSoftmax + (n * G + g) * V, dl = dlogits + (n * G + g) * V
            let o = dout + (n * G + g) * Dg
            var dot: Float = 0
            for v in 0..<V {
                let c = codevectors + (g * V + v) * Dg
                var s: Float = 0
                for j in 0..<Dg { s += o[j] * c[j] }
                dp[v] = s
                dot += s * y[v]
            }
            for v in 0..<V { dl[v] += y[v] * (dp[v] - dot) / temperature }
            if counted {
                let s = saved.softmax + (n * G + g) * V, dm = dmarginal.withUnsafeBufferPointer { $0.baseAddress! + g * V }
                var sdot: Float = 0
                for v in 0..<V { sdot += dm[v] * s[v] }
                for v in 0..<V { dl[v] += s[v] * (dm[v] - sdot) }
            }
        }
    }
}

/// In place: x (n) = softmax(x) given its maximum.
@inline(__always)
func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ n: Int, max m: Float) {
    var sum: Float = 0
    for v in 0..<n { x[v] = expf(x[v] - m); sum += x[v] }
    let inv = 1 / sum
    for v in 0..<n { x[v] *= inv }
}

// MARK: - Contrastive loss

/// What `contrastiveLossForward` keeps: per masked row the K + 1 softmax probabilities of its logits (0 for
/// a distractor equal to the positive) and the cosines.
public struct ContrastiveSaved {
    /// (N, K + 1) softmax of each row's logits (masked rows only).
    public let probs: UnsafeMutablePointer<Float>
    /// (N, K + 1) cosine of the prediction with the positive then each distractor.
    public let cosines: UnsafeMutablePointer<Float>
    public init(probs: UnsafeMutablePointer<Float>, cosines: UnsafeMutablePointer<Float>) {
        self.probs = probs; self.cosines = cosines
    }
}

/// The index in 0..<N of row n's k-th distractor target, checked.
@inline(__always)
func distractor(_ negatives: UnsafePointer<Int32>, _ n: Int, _ k: Int, K: Int, N: Int) -> Int {
    let j = Int(negatives[n * K + k])
    precondition(j >= 0 && j < N, "contrastive loss: distractor index \(j) outside 0..<\(N)")
    return j
}

/// wav2vec 2.0's contrastive loss, summed over the rows n with mask[n] != 0: with c_0 the cosine of
/// predicted[n] with quantized[n] and c_k of predicted[n] with quantized[negatives[n, k - 1]] (k = 1...K),
/// logits c / τ, a distractor equal to the positive masked out (-inf, as HF), and loss_n =
/// -log softmax(logits)_0. `predicted`, `quantized` (N, P); `negatives` (N, K) row indices into 0..<N.
/// HF tests equality on every element of the projected quantised vectors; given the quantiser's `codes`
/// (N, G) the test is on the codes instead, which is the same wherever equal codes project to equal
/// vectors (in PyTorch they do; here two rows of one product may round differently).
public func contrastiveLossForward(predicted: UnsafePointer<Float>, quantized: UnsafePointer<Float>,
                                   negatives: UnsafePointer<Int32>, mask: UnsafePointer<Float>, N: Int, P: Int, K: Int,
                                   codes: UnsafePointer<Int32>? = nil, groups G: Int = 0,
                                   temperature: Float, saved: ContrastiveSaved) -> Float {
    var total = 0.0
    var logits = [Double](repeating: 0, count: K + 1)
    for n in 0..<N where mask[n] != 0 {
        let a = predicted + n * P, positive = quantized + n * P
        for k in 0...K {
            let j = k == 0 ? n : distractor(negatives, n, k - 1, K: K, N: N)
            let b = quantized + j * P
            let same = codes.map { c in (0..<G).allSatisfy { c[j * G + $0] == c[n * G + $0] } }
                ?? (0..<P).allSatisfy { b[$0] == positive[$0] }
            if k > 0 && same {
                saved.cosines[n * (K + 1) + k] = 0
                logits[k] = -.infinity
                continue
            }
            let c = cosine(a, b, P)
            saved.cosines[n * (K + 1) + k] = Float(c)
            logits[k] = c / Double(temperature)
        }
        let m = logits.max()!
        let z = logits.reduce(0) { $0 + exp($1 - m) }
        for k in 0...K { saved.probs[n * (K + 1) + k] = Float(exp(logits[k] - m) / z) }
        total += m + log(z) - logits[0]
    }
    return Float(total)
}

/// Gradients of `contrastiveLossForward` times `dloss`, accumulated into dpredicted and dquantized (N, P)
/// (the distractors' rows get theirs too).
public func contrastiveLossBackward(dpredicted: UnsafeMutablePointer<Float>?, dquantized: UnsafeMutablePointer<Float>?,
                                    dloss: Float, predicted: UnsafePointer<Float>, quantized: UnsafePointer<Float>,
                                    negatives: UnsafePointer<Int32>, mask: UnsafePointer<Float>, N: Int, P: Int, K: Int,
                                    temperature: Float, saved: ContrastiveSaved) {
    for n in 0..<N where mask[n] != 0 {
        let a = predicted + n * P
        let na = norm(a, P)
        for k in 0...K {
            let p = Double(saved.probs[n * (K + 1) + k])
            let dlogit = (p - (k == 0 ? 1 : 0)) * Double(dloss)
            if k > 0 && p == 0 { continue }  // a masked-out distractor (or one whose weight underflowed)
            let j = k == 0 ? n : distractor(negatives, n, k - 1, K: K, N: N)
            let b = quantized + j * P
            let nb = norm(b, P), c = Double(saved.cosines[n * (K + 1) + k])
            let g = dlogit / Double(temperature)
            // d cos / da = b / (|a| |b|) - cos a / |a|², and symmetrically for b.
            for i in 0..<P {
                let ai = Double(a[i]), bi = Double(b[i])
                dpredicted?[n * P + i] += Float(g * (bi / (na * nb) - c * ai / (na * na)))
                dquantized?[j * P + i] += Float(g * (ai / (na * nb) - c * bi / (nb * nb)))
            }
        }
    }
}

@inline(__always)
func norm(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var s = 0.0
    for i in 0..<n { s += Double(x[i]) * Double(x[i]) }
    return max(s.squareRoot(), 1e-8)
}

/// PyTorch's cosine_similarity with eps 1e-8 on each norm, in Double.
@inline(__always)
func cosine(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Double {
    var dot = 0.0
    for i in 0..<n { dot += Double(a[i]) * Double(b[i]) }
    return dot / (norm(a, n) * norm(b, n))
}
