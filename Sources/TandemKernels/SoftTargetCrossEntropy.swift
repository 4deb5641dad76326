#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Cross-entropy against soft targets, each row of targets a distribution (mixup, cutmix, label
/// smoothing): timm's `SoftTargetCrossEntropy`, loss = -(1/N) Σ_n Σ_v t[n, v] log softmax(logits[n])[v].
/// The targets get no gradient.

/// Returns -(1/N) Σ t log softmax(logits) over rows of V, logits and targets (N, V), and writes the
/// softmax to `probs` (N, V) for backward; log Z per row from `logSumExp`, the sum in Double.
public func softTargetCrossEntropyForward(probs: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
                                          targets: UnsafePointer<Float>, N: Int, V: Int) -> Float {
    softmaxForward(out: probs, inp: logits, rows: N, cols: V)
    var total = 0.0
    for n in 0..<N {
        let x = logits + n * V, t = targets + n * V
        let logZ = logSumExp(x, count: V)
        for v in 0..<V where t[v] != 0 { total -= Double(t[v]) * (Double(x[v]) - logZ) }
    }
    return Float(total / Double(N))
}

/// dlogits (N, V) += dloss (probs - t Σ_v t) / N: the gradient of `softTargetCrossEntropyForward`.
public func softTargetCrossEntropyBackward(dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
                                           targets: UnsafePointer<Float>, N: Int, V: Int, dloss: Float) {
    let scale = dloss / Float(N)
    for n in 0..<N {
        let p = probs + n * V, t = targets + n * V, d = dlogits + n * V
        var mass: Float = 0
        for v in 0..<V { mass += t[v] }
        for v in 0..<V { d[v] += scale * (p[v] * mass - t[v]) }
    }
}

// MARK: - Reference

/// Naive `softTargetCrossEntropyForward`: softmax and log-softmax in Double with libm exp and log.
public func softTargetCrossEntropyForwardReference(probs: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
                                                   targets: UnsafePointer<Float>, N: Int, V: Int) -> Float {
    var total = 0.0
    for n in 0..<N {
        let x = logits + n * V, t = targets + n * V
        var z = 0.0
        for v in 0..<V { z += exp(Double(x[v])) }
        for v in 0..<V {
            probs[n * V + v] = Float(exp(Double(x[v])) / z)
            total -= Double(t[v]) * (Double(x[v]) - log(z))
        }
    }
    return Float(total / Double(N))
}

/// Naive `softTargetCrossEntropyBackward`, in Double.
public func softTargetCrossEntropyBackwardReference(dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
                                                    targets: UnsafePointer<Float>, N: Int, V: Int, dloss: Float) {
    for n in 0..<N {
        var mass = 0.0
        for v in 0..<V { mass += Double(targets[n * V + v]) }
        for v in 0..<V {
            let i = n * V + v
            dlogits[i] += Float(Double(dloss) * (Double(probs[i]) * mass - Double(targets[i])) / Double(N))
        }
    }
}
