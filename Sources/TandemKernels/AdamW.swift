/// The AdamW update (Loshchilov & Hutter 2019) over a flat slice of parameters, in torch.optim.AdamW's
/// order of operations: decay first, then w -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).

// MARK: - Update

/// One AdamW step over `count` parameters, in place: m (first moments) and v (second moments) are laid
/// out like `weight` and `grad`. `bc1` = 1 - beta1^t and `bc2` = 1 - beta2^t are the bias corrections of
/// step t. Each element goes through the same Float operations as `adamwUpdateReference` (sqrt and
/// division are exact IEEE operations, no fused multiply-add), so the two agree bit for bit; the fast
/// version only reads and writes 16 lanes at a time, which the pointer-aliasing scalar loop cannot.
/// The gradient is first multiplied by `gradScale` (gradient clipping's factor; 1 changes nothing), as
/// a separate scaling pass would, and with `zeroingGrad` it is set to 0 once read, ready for the next
/// accumulation: clipping, update and zeroing in one pass over memory instead of three.
/// Memory-bound: 4 floats read and 3 written per parameter (4 with `zeroingGrad`).
public func adamwUpdate(weight: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                        lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float,
                        bc1: Double, bc2: Double, gradScale: Float = 1, zeroingGrad: Bool = false) {
    let stepSize = Vector(repeating: Float(Double(lr) / bc1))
    let bc2Sqrt = Vector(repeating: Float(bc2.squareRoot()))
    let decay = Vector(repeating: 1 - lr * weightDecay)
    let oneMinusBeta1 = Vector(repeating: 1 - beta1), oneMinusBeta2 = Vector(repeating: 1 - beta2)
    let b2 = Vector(repeating: beta2), epsilon = Vector(repeating: eps)
    let clip = Vector(repeating: gradScale)
    for (i, lanes) in chunks(count) {
        let g = load(grad + i, lanes: lanes) * clip
        if zeroingGrad { store(Vector(), to: grad + i, lanes: lanes) }
        var mi = load(m + i, lanes: lanes), vi = load(v + i, lanes: lanes), w = load(weight + i, lanes: lanes)
        mi += (g - mi) * oneMinusBeta1
        vi = vi * b2 + oneMinusBeta2 * g * g
        w *= decay
        w -= stepSize * mi / (vi.squareRoot() / bc2Sqrt + epsilon)
        store(mi, to: m + i, lanes: lanes)
        store(vi, to: v + i, lanes: lanes)
        store(w, to: weight + i, lanes: lanes)
    }
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
