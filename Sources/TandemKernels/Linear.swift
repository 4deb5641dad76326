/// Fully connected layer in PyTorch / Hugging Face `nn.Linear` layout (weight (OC, C)), and the bias add.

// MARK: - Linear

/// How a weight matrix is stored.
public enum WeightLayout: Sendable {
    /// (OC, C), PyTorch's `nn.Linear`.
    case outputsByInputs
    /// (C, OC), GPT-2's `Conv1D` in transformers (`x @ weight + bias`).
    case inputsByOutputs
}

/// out = inp weight^T + bias: inp (N, C), weight (OC, C) (or (C, OC) with `layout: .inputsByOutputs`,
/// then out = inp weight + bias), bias (OC) or nil, out (N, OC).
/// The bias is written into `out` first and the product added by sgemm with beta = 1, so the bias costs
/// one write pass instead of a read-modify-write pass. The product runs in `precision` (see `gemm`).
public func linearForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                          weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, N: Int, C: Int, OC: Int,
                          layout: WeightLayout = .outputsByInputs, precision: MatmulPrecision = .fp32) {
    if let bias {
        for n in 0..<N { (out + n * OC).update(from: bias, count: OC) }
    }
    let inputMajor = layout == .inputsByOutputs
    gemm(.none, inputMajor ? .none : .transpose, m: N, n: OC, k: C, alpha: 1, a: inp, lda: C, b: weight,
         ldb: inputMajor ? OC : C, beta: bias == nil ? 0 : 1, c: out, ldc: OC, precision: precision)
}

/// `linearForward` of one row (N = 1) as a matrix-vector product (`cblas_sgemv`), which streams the
/// weight once where sgemm would pack it first: generation's one-token steps, which are bound by reading
/// the weights. Inference only (its sums may round differently from `linearForward`'s).
public func linearForwardRow(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             bias: UnsafePointer<Float>?, C: Int, OC: Int, layout: WeightLayout = .outputsByInputs) {
    if let bias { out.update(from: bias, count: OC) }
    switch layout {
    case .outputsByInputs:  // out = W inp, W (OC, C)
        BLAS.sgemv(.none, m: OC, n: C, a: weight, lda: C, x: inp, beta: bias == nil ? 0 : 1, y: out)
    case .inputsByOutputs:  // out = Wᵀ inp, W (C, OC)
        BLAS.sgemv(.transpose, m: C, n: OC, a: weight, lda: OC, x: inp, beta: bias == nil ? 0 : 1, y: out)
    }
}

/// Gradients of `linearForward`, accumulated: dinp (N, C) += dout weight, dweight (OC, C) += dout^T inp
/// (with `.inputsByOutputs`: dinp += dout weight^T, dweight (C, OC) += inp^T dout), dbias (OC) += column
/// sums of dout (N, OC). A nil gradient is skipped. Products in `precision`.
public func linearBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                           dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                           inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, N: Int, C: Int, OC: Int,
                           layout: WeightLayout = .outputsByInputs, precision: MatmulPrecision = .fp32) {
    let inputMajor = layout == .inputsByOutputs
    if let dinp {
        gemm(.none, inputMajor ? .transpose : .none, m: N, n: C, k: OC, alpha: 1, a: dout, lda: OC, b: weight,
             ldb: inputMajor ? OC : C, beta: 1, c: dinp, ldc: C, precision: precision)
    }
    if let dweight {
        if inputMajor {
            gemm(.transpose, .none, m: C, n: OC, k: N, alpha: 1, a: inp, lda: C, b: dout, ldb: OC,
                 beta: 1, c: dweight, ldc: OC, precision: precision)
        } else {
            gemm(.transpose, .none, m: OC, n: C, k: N, alpha: 1, a: dout, lda: OC, b: inp, ldb: C,
                 beta: 1, c: dweight, ldc: C, precision: precision)
        }
    }
    if let dbias { accumulateColumnSums(dbias, dout, N: N, C: OC) }
}

// MARK: - Bias add

/// out (N, C) = inp (N, C) + bias (C) broadcast over rows. `out` may be `inp`.
public func biasAddForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                           bias: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let o = out + n * C, x = inp + n * C
        for (i, lanes) in chunks(C) {
            store(load(x + i, lanes: lanes) + load(bias + i, lanes: lanes), to: o + i, lanes: lanes)
        }
    }
}

/// Gradients of `biasAddForward`, accumulated: dinp (N, C) += dout, dbias (C) += column sums of dout.
public func biasAddBackward(dinp: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
                            dout: UnsafePointer<Float>, N: Int, C: Int) {
    if let dinp { residualBackward(da: dinp, db: nil, dout: dout, count: N * C) }
    if let dbias { accumulateColumnSums(dbias, dout, N: N, C: C) }
}

// MARK: - Reference

/// Naive `linearForward`, Double accumulation.
public func linearForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                   weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                   N: Int, C: Int, OC: Int) {
    for n in 0..<N {
        for o in 0..<OC {
            var acc = bias.map { Double($0[o]) } ?? 0
            for c in 0..<C { acc += Double(inp[n * C + c]) * Double(weight[o * C + c]) }
            out[n * OC + o] = Float(acc)
        }
    }
}

/// Naive `linearBackward`, Double accumulation.
public func linearBackwardReference(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                    dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                    inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                    N: Int, C: Int, OC: Int) {
    if let dinp {
        for n in 0..<N {
            for c in 0..<C {
                var acc = 0.0
                for o in 0..<OC { acc += Double(dout[n * OC + o]) * Double(weight[o * C + c]) }
                dinp[n * C + c] += Float(acc)
            }
        }
    }
    if let dweight {
        for o in 0..<OC {
            for c in 0..<C {
                var acc = 0.0
                for n in 0..<N { acc += Double(dout[n * OC + o]) * Double(inp[n * C + c]) }
                dweight[o * C + c] += Float(acc)
            }
        }
    }
    if let dbias {
        for o in 0..<OC {
            var acc = 0.0
            for n in 0..<N { acc += Double(dout[n * OC + o]) }
            dbias[o] += Float(acc)
        }
    }
}

/// Naive `biasAddForward`.
public func biasAddForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                    bias: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N { for c in 0..<C { out[n * C + c] = inp[n * C + c] + bias[c] } }
}

/// Naive `biasAddBackward`, Double accumulation.
public func biasAddBackwardReference(dinp: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
                                     dout: UnsafePointer<Float>, N: Int, C: Int) {
    if let dinp { for i in 0..<N * C { dinp[i] += dout[i] } }
    if let dbias {
        for c in 0..<C {
            var acc = 0.0
            for n in 0..<N { acc += Double(dout[n * C + c]) }
            dbias[c] += Float(acc)
        }
    }
}
