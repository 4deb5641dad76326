/// Weight normalisation (Salimans & Kingma, "Weight Normalization", 2016) as PyTorch's
/// `torch.nn.utils.weight_norm(module, dim:)`: w = g v / ‖v‖, the norm taken over every axis of v but
/// `dim`, without eps (`torch._weight_norm`). v is viewed as (outer, D, inner) with D its size on `dim`;
/// g holds D values, one per slice. wav2vec 2.0's positional convolution has v (768, 48, 128) and dim 2:
/// outer 36,864, D 128, inner 1.

// MARK: - Forward

/// out (outer, D, inner) = g[d] v / norm[d], with norm (D) = ‖v[:, d, :]‖ saved for backward. Sums of
/// squares in Double (a slice holds tens of thousands of values).
public func weightNormForward(out: UnsafeMutablePointer<Float>, norm: UnsafeMutablePointer<Float>,
                              g: UnsafePointer<Float>, v: UnsafePointer<Float>, outer: Int, D: Int, inner: Int) {
    withUnsafeTemporaryAllocation(of: Double.self, capacity: D) { sums in
        let sums = sums.baseAddress!
        sliceSums(sums, v, v, outer: outer, D: D, inner: inner)
        for d in 0..<D { norm[d] = Float(sums[d].squareRoot()) }
    }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: D) { scale in
        let scale = scale.baseAddress!
        for d in 0..<D { scale[d] = g[d] / norm[d] }
        forEachSlice(outer: outer, D: D, inner: inner) { i, d in out[i] = scale[d] * v[i] }
    }
}

/// Calls `body(i, d)` for every element i of a (outer, D, inner) buffer, d its index on the middle axis,
/// in memory order. inner 1 (a norm over every axis but the last: wav2vec 2.0's positional convolution)
/// gets a loop of its own over d, which the compiler vectorises.
@inline(__always)
func forEachSlice(outer: Int, D: Int, inner: Int, _ body: (_ i: Int, _ d: Int) -> Void) {
    if inner == 1 {
        for o in 0..<outer {
            for d in 0..<D { body(o * D + d, d) }
        }
    } else {
        for o in 0..<outer {
            for d in 0..<D {
                for j in 0..<inner { body((o * D + d) * inner + j, d) }
            }
        }
    }
}

/// sums[d] = Σ_o,i a[o, d, i] b[o, d, i], in Double.
@inline(__always)
func sliceSums(_ sums: UnsafeMutablePointer<Double>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
               outer: Int, D: Int, inner: Int) {
    sums.initialize(repeating: 0, count: D)
    forEachSlice(outer: outer, D: D, inner: inner) { i, d in sums[d] += Double(a[i]) * Double(b[i]) }
}

// MARK: - Backward

/// Gradients of `weightNormForward`, accumulated (nil skips one), from the saved norm (D). With
/// s[d] = Σ dout v over slice d: dg[d] += s[d] / norm[d], dv += g[d] / norm[d] (dout - v s[d] / norm[d]²).
public func weightNormBackward(dg: UnsafeMutablePointer<Float>?, dv: UnsafeMutablePointer<Float>?,
                               dout: UnsafePointer<Float>, g: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               norm: UnsafePointer<Float>, outer: Int, D: Int, inner: Int) {
    withUnsafeTemporaryAllocation(of: Double.self, capacity: D) { sums in
        let sums = sums.baseAddress!
        sliceSums(sums, dout, v, outer: outer, D: D, inner: inner)
        if let dg {
            for d in 0..<D { dg[d] += Float(sums[d] / Double(norm[d])) }
        }
        guard let dv else { return }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * D) { coefficients in
            let scale = coefficients.baseAddress!, projection = scale + D
            for d in 0..<D {
                scale[d] = g[d] / norm[d]
                projection[d] = Float(sums[d] / (Double(norm[d]) * Double(norm[d])))
            }
            forEachSlice(outer: outer, D: D, inner: inner) { i, d in dv[i] += scale[d] * (dout[i] - v[i] * projection[d]) }
        }
    }
}

// MARK: - Reference

/// Naive `weightNormForward` in Double.
public func weightNormForwardReference(out: UnsafeMutablePointer<Float>, norm: UnsafeMutablePointer<Float>,
                                       g: UnsafePointer<Float>, v: UnsafePointer<Float>, outer: Int, D: Int,
                                       inner: Int) {
    for d in 0..<D {
        var sq = 0.0
        for o in 0..<outer {
            for j in 0..<inner { sq += Double(v[(o * D + d) * inner + j]) * Double(v[(o * D + d) * inner + j]) }
        }
        norm[d] = Float(sq.squareRoot())
        for o in 0..<outer {
            for j in 0..<inner {
                let i = (o * D + d) * inner + j
                out[i] = Float(Double(g[d]) * Double(v[i]) / sq.squareRoot())
            }
        }
    }
}

/// Naive `weightNormBackward`: each slice's full Jacobian ∂w_i/∂v_k = g (δ_ik / n - v_i v_k / n³),
/// ∂w_i/∂g = v_i / n, applied to dout in Double (n = ‖slice‖ recomputed, `norm` unused).
public func weightNormBackwardReference(dg: UnsafeMutablePointer<Float>?, dv: UnsafeMutablePointer<Float>?,
                                        dout: UnsafePointer<Float>, g: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                        norm: UnsafePointer<Float>, outer: Int, D: Int, inner: Int) {
    for d in 0..<D {
        let slice = (0..<outer).flatMap { o in (0..<inner).map { (o * D + d) * inner + $0 } }
        let n = slice.map { Double(v[$0]) * Double(v[$0]) }.reduce(0, +).squareRoot()
        let gd = Double(g[d])
        var dgd = 0.0
        for i in slice {
            dgd += Double(dout[i]) * Double(v[i]) / n
            var acc = 0.0
            for k in slice {
                let jac = gd * ((i == k ? 1 : 0) / n - Double(v[k]) * Double(v[i]) / (n * n * n))
                acc += Double(dout[k]) * jac
            }
            dv?[i] += Float(acc)
        }
        dg?[d] += Float(dgd)
    }
}
