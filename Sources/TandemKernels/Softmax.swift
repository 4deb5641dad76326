#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Row-wise softmax.

/// out (rows, cols) = softmax of each row of inp (rows, cols): e^(x - max) / Σ e^(x - max).
/// A row whose entries are all -inf (everything masked) gives zeros instead of NaN. `out` may be `inp`.
public func softmaxForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows {
        softmaxRow(out + r * cols, inp + r * cols, cols)
    }
}

/// One row of `softmaxForward`: two passes over the input (max, then exp and sum into `out`) and one
/// over the output (normalise), all on a row that stays in L1 or L2. Returns the row's max and
/// Σ e^(x - max), from which cross-entropy gets log Z; (-inf, 0) for a row of -inf, written as zeros.
@inline(__always)
@discardableResult
func softmaxRow(_ o: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ cols: Int) -> (max: Float, sum: Float) {
    let m = rowMax(x, cols)
    if m == -.infinity {
        o.update(repeating: 0, count: cols)
        return (m, 0)
    }
    let shift = Vector(repeating: m)
    var s = Vector()
    for (i, lanes) in chunks(cols) {
        // Padding the tail with -inf makes its lanes contribute e^(-inf) = 0 to the sum.
        let e = FastMath.exp(load(x + i, lanes: lanes, pad: -.infinity) - shift)
        store(e, to: o + i, lanes: lanes)
        s += e
    }
    let sum = horizontalSum(s)
    let inv = Vector(repeating: 1 / sum)
    for (i, lanes) in chunks(cols) { store(load(o + i, lanes: lanes) * inv, to: o + i, lanes: lanes) }
    return (m, sum)
}

/// log Σ_j e^(x_j) over one row x (count), as max + log Σ e^(x - max) with each term from libm `expf`,
/// summed in Double (a reference-grade value for losses and evaluation; not the fast softmax path).
public func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var m = -Float.infinity
    for j in 0..<count { m = max(m, x[j]) }
    var z = 0.0
    for j in 0..<count { z += Double(expf(x[j] - m)) }
    return Double(m) + log(z)
}

// MARK: - Reference

/// Naive `logSumExp`: log Σ e^x in Double, without the max shift (for moderate inputs only).
public func logSumExpReference(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var z = 0.0
    for j in 0..<count { z += exp(Double(x[j])) }
    return log(z)
}

/// Naive `softmaxForward` in Double with libm exp.
public func softmaxForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows {
        let x = inp + r * cols, o = out + r * cols
        var m = -Double.infinity
        for j in 0..<cols { m = max(m, Double(x[j])) }
        if m == -.infinity {
            for j in 0..<cols { o[j] = 0 }
            continue
        }
        var s = 0.0
        for j in 0..<cols { s += exp(Double(x[j]) - m) }
        for j in 0..<cols { o[j] = Float(exp(Double(x[j]) - m) / s) }
    }
}

