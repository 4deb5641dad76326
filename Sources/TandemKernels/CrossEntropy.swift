#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Softmax cross-entropy fused in one kernel, with PyTorch's `CrossEntropyLoss(ignore_index:,
/// label_smoothing:, reduction: "mean")` semantics: with p = softmax(logits) and smoothing eps,
/// loss_i = (1 - eps) (-log p_target) + eps mean_c(-log p_c), averaged over the rows whose target is
/// not `ignoreIndex`. When every row is ignored the loss is 0 and the gradient zero (PyTorch returns NaN
/// there; a batch with nothing to predict should not poison the run).

// MARK: - Forward

/// Writes losses (N) (0 for ignored rows) and probs (N, V) = softmax(logits (N, V)) (zeros for ignored
/// rows, whose softmax is never needed), and returns the mean loss over non-ignored rows.
/// targets (N): each in 0..<V or equal to `ignoreIndex` (checked).
public func crossEntropyForward(losses: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                                logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, N: Int, V: Int,
                                ignoreIndex: Int32, labelSmoothing: Float) -> Float {
    var total = 0.0
    var counted = 0
    for n in 0..<N {
        let target = targets[n]
        let x = logits + n * V, p = probs + n * V
        if target == ignoreIndex {
            losses[n] = 0
            p.update(repeating: 0, count: V)
            continue
        }
        precondition(target >= 0 && Int(target) < V, "cross-entropy: target \(target) at row \(n) outside 0..<\(V)")
        let (m, sum) = softmaxRow(p, x, V)
        // log Z = m + log Σ e^(x - m); -log p_c = log Z - x_c.
        let logZ = Double(m) + log(Double(sum))
        let nll = logZ - Double(x[Int(target)])
        var loss = nll
        if labelSmoothing != 0 {
            let smooth = logZ - Double(rowSum(x, V)) / Double(V)
            loss = (1 - Double(labelSmoothing)) * nll + Double(labelSmoothing) * smooth
        }
        losses[n] = Float(loss)
        total += loss
        counted += 1
    }
    return counted == 0 ? 0 : Float(total / Double(counted))
}

// MARK: - Backward

/// dlogits (N, V) += dloss d(mean loss)/dlogits from the saved probs: for each non-ignored row,
/// (dloss / count) (p - (1 - eps) onehot(target) - eps / V), count being the number of non-ignored rows.
public func crossEntropyBackward(dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
                                 targets: UnsafePointer<Int32>, N: Int, V: Int, ignoreIndex: Int32,
                                 labelSmoothing: Float, dloss: Float) {
    var counted = 0
    for n in 0..<N where targets[n] != ignoreIndex { counted += 1 }
    if counted == 0 { return }
    let g = dloss / Float(counted)
    let gV = Vector(repeating: g)
    let offset = Vector(repeating: g * labelSmoothing / Float(V))
    for n in 0..<N {
        let target = targets[n]
        if target == ignoreIndex { continue }
        precondition(target >= 0 && Int(target) < V, "cross-entropy: target \(target) at row \(n) outside 0..<\(V)")
        let p = probs + n * V, d = dlogits + n * V
        for (i, lanes) in chunks(V) { accumulate(load(p + i, lanes: lanes) * gV - offset, into: d + i, lanes: lanes) }
        d[Int(target)] -= g * (1 - labelSmoothing)
    }
}

// MARK: - Reference

/// Naive `crossEntropyForward` in Double with libm.
public func crossEntropyForwardReference(losses: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                                         logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                                         N: Int, V: Int, ignoreIndex: Int32, labelSmoothing: Float) -> Float {
    var total = 0.0
    var counted = 0
    let eps = Double(labelSmoothing)
    for n in 0..<N {
        let x = (0..<V).map { Double(logits[n * V + $0]) }
        if targets[n] == ignoreIndex {
            losses[n] = 0
            for c in 0..<V { probs[n * V + c] = 0 }
            continue
        }
        let m = x.max()!
        let z = x.reduce(0.0) { $0 + exp($1 - m) }
        let logp = x.map { $0 - m - log(z) }
        for c in 0..<V { probs[n * V + c] = Float(exp(logp[c])) }
        let loss = (1 - eps) * -logp[Int(targets[n])] + eps * -logp.reduce(0, +) / Double(V)
        losses[n] = Float(loss)
        total += loss
        counted += 1
    }
    return counted == 0 ? 0 : Float(total / Double(counted))
}

/// Naive `crossEntropyBackward` in Double.
public func crossEntropyBackwardReference(dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
                                          targets: UnsafePointer<Int32>, N: Int, V: Int, ignoreIndex: Int32,
                                          labelSmoothing: Float, dloss: Float) {
    let counted = (0..<N).filter { targets[$0] != ignoreIndex }.count
    if counted == 0 { return }
    let eps = Double(labelSmoothing)
    for n in 0..<N where targets[n] != ignoreIndex {
        for c in 0..<V {
            let onehot = c == Int(targets[n]) ? 1.0 : 0.0
            let grad = Double(probs[n * V + c]) - (1 - eps) * onehot - eps / Double(V)
            dlogits[n * V + c] += Float(Double(dloss) * grad / Double(counted))
        }
    }
}
