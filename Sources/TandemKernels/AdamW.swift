import CKernels

/// The AdamW update (Loshchilov & Hutter 2019) over a flat slice of parameters, in torch.optim.AdamW's
/// order of operations: decay first, then w -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).

// MARK: - Update

/// One AdamW step over `count` parameters, in place: m (first moments) and v (second moments) are laid
/// out like `weight` and `grad`. `bc1` = 1 - beta1^t and `bc2` = 1 - beta2^t are the bias corrections of
/// step t. Each element goes through the same Float operations as `adamwUpdateReference` (sqrt and
/// division are exact IEEE operations, no fused multiply-add), so the two agree bit for bit; the fast
/// version runs them on vectors (AVX-512 or AVX2 where the CPU has them), which the pointer-aliasing
/// scalar loop cannot.
/// The gradient is first multiplied by `gradScale` (gradient clipping's factor; 1 changes nothing), as
/// a separate scaling pass would, and with `zeroingGrad` it is set to 0 once read, ready for the next
/// accumulation: clipping, update and zeroing in one pass over memory instead of three.
/// Memory-bound: 4 floats read and 3 written per parameter (4 with `zeroingGrad`).
public func adamwUpdate(weight: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                        lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float,
                        bc1: Double, bc2: Double, gradScale: Float = 1, zeroingGrad: Bool = false) {
    // The loop is C (CKernels' tandem_adamw): Swift's SIMD16<Float>.squareRoot() compiles to 16 scalar
    // square roots, which held this loop at about a third of memory bandwidth (`tandem bench kernels`).
    tandem_adamw(weight, grad, m, v, count, Float(Double(lr) / bc1), Float(bc2.squareRoot()), 1 - lr * weightDecay,
                 1 - beta1, beta2, 1 - beta2, eps, gradScale, zeroingGrad ? 1 : 0)
}

// MARK: - Reference

/// Naive `adamwUpdate`: one element at a time, the loop TandemTraining's Optimizer runs.
public func adamwUpdateReference(weight: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                 m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                                 lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float,
                                 bc1: Double, bc2: Double, gradScale: Float = 1, zeroingGrad: Bool = false) {
    let stepSize = Float(Double(lr) / bc1)
    let bc2Sqrt = Float(bc2.squareRoot())
    let decay = 1 - lr * weightDecay
    for i in 0..<count {
        let gi = grad[i] * gradScale
        if zeroingGrad { grad[i] = 0 }
        m[i] += (gi - m[i]) * (1 - beta1)
        v[i] = v[i] * beta2 + (1 - beta2) * gi * gi
        weight[i] *= decay
        weight[i] -= stepSize * m[i] / (v[i].squareRoot() / bc2Sqrt + eps)
    }
}
