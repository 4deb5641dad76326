import Foundation

/// Vector quantisation with a cosine codebook, the bottleneck of Tandem's VQ-VAE image tokenizer (van den
/// Oord et al. 2017, with the l2-normalised codes of Yu et al. 2022's ViT-VQGAN that BEiT v2's VQ-KD
/// tokenizer also uses). Rows z (N, D) and codes e (K, D) are l2-normalised, ẑ = z/‖z‖ and ê = e/‖e‖;
/// each row's code is the nearest normalised code, c = argmax_k ẑ·ê_k (which on the unit sphere is the
/// nearest in Euclidean distance; ties go to the lowest k), and the output is ê_c with the straight-through
/// gradient (dẑ = dout). The loss is VQ-VAE's codebook and commitment terms on the normalised vectors,
///
///     loss = 1/N Σ_n ‖sg(ẑ_n) − ê_c‖² + β/N Σ_n ‖ẑ_n − sg(ê_c)‖²,
///
/// one value (1 + β)/N Σ ‖ẑ − ê_c‖², whose gradient reaches the chosen codes through the first term and the
/// rows through the second. Normalising makes every code a candidate from the start (codes and rows live
/// on the same sphere, whatever the encoder's scale), which keeps far more of the codebook in use than
/// raw Euclidean codes do.

/// Floats of the saved state between forward and backward: ẑ (N D), ê (K D), ‖z‖ (N), ‖e‖ (K) and the
/// N K similarities of the search.
public func vectorQuantizeScratchCount(N: Int, K: Int, D: Int) -> Int {
    N * D + K * D + N + K + N * K
}

/// What forward saves for backward, in one scratch block of `vectorQuantizeScratchCount` floats.
public struct VectorQuantizeSaved {
    public let zHat: UnsafeMutablePointer<Float>
    public let eHat: UnsafeMutablePointer<Float>
    public let zNorm: UnsafeMutablePointer<Float>
    public let eNorm: UnsafeMutablePointer<Float>
    public let similarities: UnsafeMutablePointer<Float>

    public init(scratch: UnsafeMutablePointer<Float>, N: Int, K: Int, D: Int) {
        zHat = scratch
        eHat = zHat + N * D
        zNorm = eHat + K * D
        eNorm = zNorm + N
        similarities = eNorm + K
    }
}

/// The smallest norm a row or code is divided by (PyTorch's F.normalize eps).
let vectorQuantizeEps: Float = 1e-12

/// Writes x / max(‖x‖, eps) for each of the `rows` rows of `count` floats and their norms.
@inline(__always)
func normalizeRows(_ out: UnsafeMutablePointer<Float>, _ norms: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                   rows: Int, count D: Int) {
    for r in 0..<rows {
        let row = x + r * D
        var s: Float = 0
        for d in 0..<D { s += row[d] * row[d] }
        let norm = max(s.squareRoot(), vectorQuantizeEps)
        norms[r] = norm
        let inv = 1 / norm, o = out + r * D
        for d in 0..<D { o[d] = row[d] * inv }
    }
}

/// The cosine codebook's forward pass: `codes` (N) the chosen codes, `out` (N, D) their normalised vectors,
/// and the returned loss (1 + β)/N Σ ‖ẑ − ê_c‖². The search is one N x K product.
public func vectorQuantizeForward(out: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<Int32>,
                                  z: UnsafePointer<Float>, codebook: UnsafePointer<Float>, N: Int, K: Int, D: Int,
                                  beta: Float, saved: VectorQuantizeSaved) -> Float {
    precondition(N > 0 && K > 0 && D > 0, "vectorQuantize: N \(N), K \(K), D \(D)")
    normalizeRows(saved.zHat, saved.zNorm, z, rows: N, count: D)
    normalizeRows(saved.eHat, saved.eNorm, codebook, rows: K, count: D)
    gemm(.none, .transpose, m: N, n: K, k: D, alpha: 1, a: saved.zHat, lda: D, b: saved.eHat, ldb: D, beta: 0,
         c: saved.similarities, ldc: K)
    var total: Double = 0
    for n in 0..<N {
        let s = saved.similarities + n * K
        var best = 0
        for k in 1..<K where s[k] > s[best] { best = k }
        codes[n] = Int32(best)
        let zn = saved.zHat + n * D, e = saved.eHat + best * D, o = out + n * D
        var distance: Float = 0
        for d in 0..<D {
            o[d] = e[d]
            let diff = zn[d] - e[d]
            distance += diff * diff
        }
        total += Double(distance)
    }
    return Float(total * Double(1 + beta) / Double(N))
}

/// Accumulates into `dz` (N, D) and `dcodebook` (K, D) the gradient of dout·out + dloss·loss: the
/// straight-through dẑ = dout + dloss 2β/N (ẑ − ê_c), dê_c = dloss 2/N (ê_c − ẑ), each through its
/// normalisation, dx = (dx̂ − x̂ (x̂·dx̂)) / ‖x‖. `scratch` holds K D floats (the codes' dê).
public func vectorQuantizeBackward(dz: UnsafeMutablePointer<Float>?, dcodebook: UnsafeMutablePointer<Float>?,
                                   dout: UnsafePointer<Float>, dloss: Float, codes: UnsafePointer<Int32>,
                                   N: Int, K: Int, D: Int, beta: Float, saved: VectorQuantizeSaved,
                                   scratch: UnsafeMutablePointer<Float>) {
    let commit = dloss * 2 * beta / Float(N), pull = dloss * 2 / Float(N)
    let deHat = scratch
    deHat.update(repeating: 0, count: K * D)
    for n in 0..<N {
        let c = Int(codes[n]), zn = saved.zHat + n * D, e = saved.eHat + c * D, g = dout + n * D
        if let dz {
            // dẑ, then through the normalisation into dz.
            var dot: Float = 0
            for d in 0..<D { dot += zn[d] * (g[d] + commit * (zn[d] - e[d])) }
            let inv = 1 / saved.zNorm[n], row = dz + n * D
            for d in 0..<D { row[d] += (g[d] + commit * (zn[d] - e[d]) - zn[d] * dot) * inv }
        }
        let de = deHat + c * D
        for d in 0..<D { de[d] += pull * (e[d] - zn[d]) }
    }
    guard let dcodebook else { return }
    for k in 0..<K {
        let e = saved.eHat + k * D, de = deHat + k * D
        var dot: Float = 0
        for d in 0..<D { dot += e[d] * de[d] }
        let inv = 1 / saved.eNorm[k], row = dcodebook + k * D
        for d in 0..<D { row[d] += (de[d] - e[d] * dot) * inv }
    }
}

/// The codes alone (tokenizing): the nearest normalised code of each row, as `vectorQuantizeForward` picks
/// it. `scratch` holds `vectorQuantizeScratchCount` floats.
public func vectorQuantizeCodes(_ codes: UnsafeMutablePointer<Int32>, z: UnsafePointer<Float>, codebook: UnsafePointer<Float>,
                                N: Int, K: Int, D: Int, scratch: UnsafeMutablePointer<Float>) {
    let saved = VectorQuantizeSaved(scratch: scratch, N: N, K: K, D: D)
    let out = UnsafeMutablePointer<Float>.allocate(capacity: N * D)
    defer { out.deallocate() }
    _ = vectorQuantizeForward(out: out, codes: codes, z: z, codebook: codebook, N: N, K: K, D: D, beta: 0, saved: saved)
}

/// The perplexity exp(−Σ p log p) of code frequencies p = counts / Σ counts: how many codes are in use,
/// as if equally often (K when uniform, 1 when one code takes everything).
public func codebookPerplexity<C: Collection>(counts: C) -> Double where C.Element == Double {
    let total = counts.reduce(0, +)
    guard total > 0 else { return 0 }
    var entropy = 0.0
    for c in counts where c > 0 {
        let p = c / total
        entropy -= p * Foundation.log(p)
    }
    return Foundation.exp(entropy)
}

// MARK: - Naive reference

/// The same forward pass in Double, code by code (no product), for tests.
public func vectorQuantizeForwardReference(out: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<Int32>,
                                           z: UnsafePointer<Float>, codebook: UnsafePointer<Float>, N: Int, K: Int,
                                           D: Int, beta: Float) -> Float {
    func normalized(_ x: UnsafePointer<Float>) -> [Double] {
        let v = (0..<D).map { Double(x[$0]) }
        let norm = max(v.reduce(0) { $0 + $1 * $1 }.squareRoot(), Double(vectorQuantizeEps))
        return v.map { $0 / norm }
    }
    let e = (0..<K).map { normalized(codebook + $0 * D) }
    var total = 0.0
    for n in 0..<N {
        let zn = normalized(z + n * D)
        var best = 0, bestDistance = Double.infinity
        for k in 0..<K {
            var distance = 0.0
            for d in 0..<D { distance += (zn[d] - e[k][d]) * (zn[d] - e[k][d]) }
            if distance < bestDistance { best = k; bestDistance = distance }
        }
        codes[n] = Int32(best)
        for d in 0..<D { out[n * D + d] = Float(e[best][d]) }
        total += bestDistance
    }
    return Float(total * Double(1 + beta) / Double(N))
}

// MARK: - Mean squared error

/// PyTorch's F.mse_loss (mean over all `count` elements) of `prediction` against `target`.
public func meanSquaredErrorForward(prediction: UnsafePointer<Float>, target: UnsafePointer<Float>, count: Int) -> Float {
    var total: Double = 0
    var i = 0
    while i < count {
        // Float partial sums of up to 1024 elements, added in Double.
        let end = min(i + 1024, count)
        var partial: Float = 0
        for j in i..<end {
            let diff = prediction[j] - target[j]
            partial += diff * diff
        }
        total += Double(partial)
        i = end
    }
    return Float(total / Double(count))
}

/// Accumulates dloss 2 (prediction − target) / count into `dprediction`.
public func meanSquaredErrorBackward(dprediction: UnsafeMutablePointer<Float>, dloss: Float, prediction: UnsafePointer<Float>,
                                     target: UnsafePointer<Float>, count: Int) {
    let scale = dloss * 2 / Float(count)
    for j in 0..<count { dprediction[j] += scale * (prediction[j] - target[j]) }
}
