/// Layer normalisation (Ba, Kiros & Hinton, "Layer Normalization", 2016) over the last dimension,
/// with the biased variance and eps inside the square root, as `torch.nn.LayerNorm`.

// MARK: - Forward

/// out (N, C) = (inp - mean) rstd weight + bias per row, with mean (N) and rstd (N) = 1 / √(var + eps)
/// saved for backward. weight, bias (C). `out` may be `inp`.
public func layerNormForward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                             rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                             weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, N: Int, C: Int, eps: Float) {
    for n in 0..<N {
        normalizeRow(out + n * C, mean + n, rstd + n, inp + n * C, weight, bias, C, eps)
    }
}

/// One row: mean, then the variance as the mean of squared deviations (two passes over a row that sits
/// in L1, and no cancellation as in E[x²] - E[x]²), then the affine output.
@inline(__always)
func normalizeRow(_ o: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>,
                  _ rstd: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                  _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ C: Int, _ eps: Float) {
    let mu = rowSum(x, C) / Float(C)
    let muV = Vector(repeating: mu)
    var sq = Vector()
    for (i, lanes) in chunks(C) {
        // Padding the tail with mu makes its lanes contribute 0.
        let d = load(x + i, lanes: lanes, pad: mu) - muV
        sq = sq.addingProduct(d, d)
    }
    let r = 1 / (horizontalSum(sq) / Float(C) + eps).squareRoot()
    mean.pointee = mu
    rstd.pointee = r
    let rV = Vector(repeating: r)
    for (i, lanes) in chunks(C) {
        let norm = (load(x + i, lanes: lanes) - muV) * rV
        store(load(bias + i, lanes: lanes).addingProduct(norm, load(weight + i, lanes: lanes)), to: o + i, lanes: lanes)
    }
}

// MARK: - Backward

/// Gradients of `layerNormForward`, accumulated, from the saved mean and rstd (N). With x̂ = (x - mean)
/// rstd and g = dout ⊙ weight per row: dinp += rstd (g - mean(g) - x̂ mean(g ⊙ x̂)),
/// dweight (C) += Σ_rows dout ⊙ x̂, dbias (C) += Σ_rows dout. A nil gradient is skipped.
public func layerNormBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                              dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                              inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                              mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let x = inp + n * C, dy = dout + n * C
        let muV = Vector(repeating: mean[n]), rV = Vector(repeating: rstd[n])
        if let dinp {
            var gSum = Vector(), gNormSum = Vector()
            for (i, lanes) in chunks(C) {
                let norm = (load(x + i, lanes: lanes) - muV) * rV
                let g = load(dy + i, lanes: lanes) * load(weight + i, lanes: lanes)
                gSum += g
                gNormSum = gNormSum.addingProduct(g, norm)
            }
            let gMean = Vector(repeating: horizontalSum(gSum) / Float(C))
            let gNormMean = Vector(repeating: horizontalSum(gNormSum) / Float(C))
            let dx = dinp + n * C
            for (i, lanes) in chunks(C) {
                let norm = (load(x + i, lanes: lanes) - muV) * rV
                let g = load(dy + i, lanes: lanes) * load(weight + i, lanes: lanes)
                accumulate((g - gMean - norm * gNormMean) * rV, into: dx + i, lanes: lanes)
            }
        }
        if dweight != nil || dbias != nil {
            for (i, lanes) in chunks(C) {
                let d = load(dy + i, lanes: lanes)
                if let dweight { accumulate(d * ((load(x + i, lanes: lanes) - muV) * rV), into: dweight + i, lanes: lanes) }
                if let dbias { accumulate(d, into: dbias + i, lanes: lanes) }
            }
        }
    }
}

// MARK: - Reference

/// Naive `layerNormForward` in Double.
public func layerNormForwardReference(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                      rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                      weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                      N: Int, C: Int, eps: Float) {
    for n in 0..<N {
        let x = inp + n * C
        var mu = 0.0
        for i in 0..<C { mu += Double(x[i]) }
        mu /= Double(C)
        var variance = 0.0
        for i in 0..<C { variance += (Double(x[i]) - mu) * (Double(x[i]) - mu) }
        variance /= Double(C)
        let r = 1 / (variance + Double(eps)).squareRoot()
        mean[n] = Float(mu)
        rstd[n] = Float(r)
        for i in 0..<C { out[n * C + i] = Float((Double(x[i]) - mu) * r * Double(weight[i]) + Double(bias[i])) }
    }
}

/// Naive `layerNormBackward`: the full Jacobian of each row applied to dout, in Double.
public func layerNormBackwardReference(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                       dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                       inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                       mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, N: Int, C: Int) {
    var dw = [Double](repeating: 0, count: C), db = [Double](repeating: 0, count: C)
    for n in 0..<N {
        let mu = Double(mean[n]), r = Double(rstd[n])
        let norm = (0..<C).map { (Double(inp[n * C + $0]) - mu) * r }
        // d x̂_j / d x_i = r (δ_ij - 1/C - x̂_i x̂_j / C)
        for i in 0..<C {
            var acc = 0.0
            for j in 0..<C {
                let jac = r * ((i == j ? 1 : 0) - 1 / Double(C) - norm[i] * norm[j] / Double(C))
                acc += Double(dout[n * C + j]) * Double(weight[j]) * jac
            }
            dinp?[n * C + i] += Float(acc)
            dw[i] += Double(dout[n * C + i]) * norm[i]
            db[i] += Double(dout[n * C + i])
        }
    }
    for i in 0..<C {
        dweight?[i] += Float(dw[i])
        dbias?[i] += Float(db[i])
    }
}
