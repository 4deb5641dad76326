#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The soft-target and hidden-state losses of knowledge distillation (Hinton et al. 2015; DistilBERT,
/// Sanh et al. 2019), over the rows whose `rowMask` is 1 (the tokens that are not padding), as
/// transformers' research_projects/distillation/distiller.py computes them with `restrict_ce_to_mask`
/// false. The teacher's tensors get no gradient.

// MARK: - Soft-target KL at a temperature

/// Returns τ² / n Σ_{rows with mask 1} KL(softmax(t/τ) || softmax(s/τ)) over student logits s and teacher
/// logits t (N, V), n the number of masked rows (PyTorch's `KLDivLoss(reduction="batchmean")` of the
/// selected rows, times τ²; 0 when n is 0), and writes softmax(s/τ) to `studentProbs` and softmax(t/τ) to
/// `teacherProbs` (N, V; rows with mask 0 are left as they are) for backward. Per row,
/// KL = Σ_v p (t - s)/τ - (Σ_v p)(log Z_t - log Z_s), summed in Double.
public func softKLForward(studentProbs: UnsafeMutablePointer<Float>, teacherProbs: UnsafeMutablePointer<Float>,
                          student: UnsafePointer<Float>, teacher: UnsafePointer<Float>, rowMask: UnsafePointer<Float>,
                          N: Int, V: Int, temperature: Float) -> Float {
    let inv = 1 / temperature
    var total = 0.0, rows = 0
    for n in 0..<N where rowMask[n] != 0 {
        rows += 1
        let s = student + n * V, t = teacher + n * V, q = studentProbs + n * V, p = teacherProbs + n * V
        for v in 0..<V { q[v] = s[v] * inv; p[v] = t[v] * inv }
        let zs = softmaxRow(q, q, V), zt = softmaxRow(p, p, V)
        let logZs = Double(zs.max) + log(Double(zs.sum)), logZt = Double(zt.max) + log(Double(zt.sum))
        var cross: Float = 0, mass: Float = 0
        for v in 0..<V { cross += p[v] * (t[v] - s[v]); mass += p[v] }
        total += Double(cross) * Double(inv) - Double(mass) * (logZt - logZs)
    }
    guard rows > 0 else { return 0 }
    return Float(total * Double(temperature * temperature) / Double(rows))
}

/// dstudent (N, V) += dloss τ / n (softmax(s/τ) - softmax(t/τ)) on the rows with mask 1: the gradient of
/// `softKLForward` (τ² from the loss, 1/τ from the scaled logits).
public func softKLBackward(dstudent: UnsafeMutablePointer<Float>, studentProbs: UnsafePointer<Float>,
                           teacherProbs: UnsafePointer<Float>, rowMask: UnsafePointer<Float>, N: Int, V: Int,
                           temperature: Float, dloss: Float) {
    var rows = 0
    for n in 0..<N where rowMask[n] != 0 { rows += 1 }
    guard rows > 0 else { return }
    let scale = dloss * temperature / Float(rows)
    for n in 0..<N where rowMask[n] != 0 {
        let q = studentProbs + n * V, p = teacherProbs + n * V, d = dstudent + n * V
        for v in 0..<V { d[v] += scale * (q[v] - p[v]) }
    }
}

// MARK: - Cosine loss

/// PyTorch's `cosine_embedding_loss` adds this to both squared norms.
let cosineEpsilon: Float = 1e-12

/// Returns 1/n Σ_{rows with mask 1} (1 - cos(s, t)) over student and teacher rows (N, C), cos =
/// s·t / √((|s|² + ε)(|t|² + ε)) with ε = 1e-12 (PyTorch's `CosineEmbeddingLoss` with target 1 and mean
/// reduction over the selected rows; 0 when n is 0).
public func cosineLossForward(student: UnsafePointer<Float>, teacher: UnsafePointer<Float>, rowMask: UnsafePointer<Float>,
                              N: Int, C: Int) -> Float {
    var total = 0.0, rows = 0
    for n in 0..<N where rowMask[n] != 0 {
        rows += 1
        let (dot, ss, tt) = cosineTerms(student + n * C, teacher + n * C, C)
        total += 1 - Double(dot / (ss * tt).squareRoot())
    }
    return rows > 0 ? Float(total / Double(rows)) : 0
}

/// dstudent (N, C) -= dloss / n (t / D - (s·t) s / ((|s|² + ε) D)), D = √((|s|² + ε)(|t|² + ε)), on the rows
/// with mask 1: the gradient of `cosineLossForward`.
public func cosineLossBackward(dstudent: UnsafeMutablePointer<Float>, student: UnsafePointer<Float>,
                               teacher: UnsafePointer<Float>, rowMask: UnsafePointer<Float>, N: Int, C: Int, dloss: Float) {
    var rows = 0
    for n in 0..<N where rowMask[n] != 0 { rows += 1 }
    guard rows > 0 else { return }
    let scale = -dloss / Float(rows)
    for n in 0..<N where rowMask[n] != 0 {
        let s = student + n * C, t = teacher + n * C, d = dstudent + n * C
        let (dot, ss, tt) = cosineTerms(s, t, C)
        let D = (ss * tt).squareRoot()
        let a = scale / D, b = scale * dot / (ss * D)
        for c in 0..<C { d[c] += a * t[c] - b * s[c] }
    }
}

/// s·t, |s|² + ε and |t|² + ε of one row.
@inline(__always)
func cosineTerms(_ s: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ C: Int) -> (Float, Float, Float) {
    var dot: Float = 0, ss: Float = 0, tt: Float = 0
    for c in 0..<C { dot += s[c] * t[c]; ss += s[c] * s[c]; tt += t[c] * t[c] }
    return (dot, ss + cosineEpsilon, tt + cosineEpsilon)
}

// MARK: - Reference

/// Naive `softKLForward`: both distributions and the KL in Double with libm exp and log.
public func softKLForwardReference(studentProbs: UnsafeMutablePointer<Float>, teacherProbs: UnsafeMutablePointer<Float>,
                                   student: UnsafePointer<Float>, teacher: UnsafePointer<Float>, rowMask: UnsafePointer<Float>,
                                   N: Int, V: Int, temperature: Float) -> Float {
    let tau = Double(temperature)
    var total = 0.0, rows = 0
    for n in 0..<N where rowMask[n] != 0 {
        rows += 1
        var zs = 0.0, zt = 0.0
        for v in 0..<V { zs += exp(Double(student[n * V + v]) / tau); zt += exp(Double(teacher[n * V + v]) / tau) }
        for v in 0..<V {
            let i = n * V + v
            let logQ = Double(student[i]) / tau - log(zs), logP = Double(teacher[i]) / tau - log(zt)
            studentProbs[i] = Float(exp(logQ)); teacherProbs[i] = Float(exp(logP))
            total += exp(logP) * (logP - logQ)
        }
    }
    return rows > 0 ? Float(total * tau * tau / Double(rows)) : 0
}

/// Naive `softKLBackward`, in Double.
public func softKLBackwardReference(dstudent: UnsafeMutablePointer<Float>, studentProbs: UnsafePointer<Float>,
                                    teacherProbs: UnsafePointer<Float>, rowMask: UnsafePointer<Float>, N: Int, V: Int,
                                    temperature: Float, dloss: Float) {
    let rows = (0..<N).filter { rowMask[$0] != 0 }
    for n in rows {
        for v in 0..<V {
            let i = n * V + v
            dstudent[i] += Float(Double(dloss) * Double(temperature) * (Double(studentProbs[i]) - Double(teacherProbs[i])) / Double(rows.count))
        }
    }
}

/// Naive `cosineLossForward`, in Double.
public func cosineLossForwardReference(student: UnsafePointer<Float>, teacher: UnsafePointer<Float>, rowMask: UnsafePointer<Float>,
                                       N: Int, C: Int) -> Float {
    let rows = (0..<N).filter { rowMask[$0] != 0 }
    guard !rows.isEmpty else { return 0 }
    var total = 0.0
    for n in rows {
        var dot = 0.0, ss = Double(cosineEpsilon), tt = Double(cosineEpsilon)
        for c in 0..<C {
            let s = Double(student[n * C + c]), t = Double(teacher[n * C + c])
            dot += s * t; ss += s * s; tt += t * t
        }
        total += 1 - dot / (ss * tt).squareRoot()
    }
    return Float(total / Double(rows.count))
}

/// Naive `cosineLossBackward`, in Double: d(1 - cos)/ds = -(t / D - cos s / (|s|² + ε)).
public func cosineLossBackwardReference(dstudent: UnsafeMutablePointer<Float>, student: UnsafePointer<Float>,
                                        teacher: UnsafePointer<Float>, rowMask: UnsafePointer<Float>, N: Int, C: Int, dloss: Float) {
    let rows = (0..<N).filter { rowMask[$0] != 0 }
    for n in rows {
        var dot = 0.0, ss = Double(cosineEpsilon), tt = Double(cosineEpsilon)
        for c in 0..<C {
            let s = Double(student[n * C + c]), t = Double(teacher[n * C + c])
            dot += s * t; ss += s * s; tt += t * t
        }
        let D = (ss * tt).squareRoot(), cosine = dot / D
        for c in 0..<C {
            let i = n * C + c
            let g = -(Double(teacher[i]) / D - cosine * Double(student[i]) / ss)
            dstudent[i] += Float(Double(dloss) * g / Double(rows.count))
        }
    }
}
