/// 1-D convolution as PyTorch's `nn.Conv1d` (no dilation, one group), computed per batch element as
/// im2col followed by one sgemm.

/// TOut = (TIn + 2 padding - K) / stride + 1, the output length of `conv1dForward`.
public func conv1dOutputLength(TIn: Int, K: Int, stride: Int, padding: Int) -> Int {
    (TIn + 2 * padding - K) / stride + 1
}

/// The number of Floats `scratch` must hold for `conv1dForward` and `conv1dBackward`: CIn K TOut, one
/// unfolded (CIn*K, TOut) batch element.
public func conv1dScratchCount(CIn: Int, TIn: Int, K: Int, stride: Int, padding: Int) -> Int {
    CIn * K * conv1dOutputLength(TIn: TIn, K: K, stride: stride, padding: padding)
}

// MARK: - Forward

/// out (B, COut, TOut) = weight (COut, CIn, K) ⊛ inp (B, CIn, TIn) + bias (COut) or nil, zero padding
/// on both sides, TOut from `conv1dOutputLength`. `scratch` holds `conv1dScratchCount` Floats (overwritten):
/// each batch element is unfolded into it as cols (CIn*K, TOut) and out_b = weight (COut, CIn*K) cols,
/// a product in `precision` (see `gemm`).
public func conv1dForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, B: Int, CIn: Int, TIn: Int, COut: Int, K: Int,
                          stride: Int, padding: Int, scratch: UnsafeMutablePointer<Float>,
                          precision: MatmulPrecision = .fp32) {
    let TOut = conv1dOutputLength(TIn: TIn, K: K, stride: stride, padding: padding)
    precondition(stride > 0 && padding >= 0 && TOut > 0, "conv1d: no output for TIn=\(TIn) K=\(K) stride=\(stride)")
    for b in 0..<B {
        let o = out + b * COut * TOut
        unfold(scratch, inp + b * CIn * TIn, CIn: CIn, TIn: TIn, K: K, TOut: TOut, stride: stride, padding: padding)
        if let bias {
            for co in 0..<COut { (o + co * TOut).update(repeating: bias[co], count: TOut) }
        }
        gemm(.none, .none, m: COut, n: TOut, k: CIn * K, alpha: 1, a: weight, lda: CIn * K, b: scratch, ldb: TOut,
             beta: bias == nil ? 0 : 1, c: o, ldc: TOut, precision: precision)
    }
}

/// im2col: cols[ci*K + k, t] = x[ci, t*stride + k - padding], 0 outside the input. cols (CIn*K, TOut).
@inline(__always)
func unfold(_ cols: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, CIn: Int, TIn: Int, K: Int, TOut: Int,
            stride: Int, padding: Int) {
    for ci in 0..<CIn {
        for k in 0..<K {
            let row = cols + (ci * K + k) * TOut, src = x + ci * TIn
            for t in 0..<TOut {
                let s = t * stride + k - padding
                row[t] = s >= 0 && s < TIn ? src[s] : 0
            }
        }
    }
}

// MARK: - Backward

/// Gradients of `conv1dForward`, accumulated (nil skips one), per batch element: dweight (COut, CIn, K)
/// += dout_b colsᵀ, dbias (COut) += row sums of dout_b, dinp_b += col2im(weightᵀ dout_b). `scratch`
/// as in `conv1dForward` (overwritten). Products in `precision`.
public func conv1dBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                           dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                           inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, B: Int, CIn: Int, TIn: Int,
                           COut: Int, K: Int, stride: Int, padding: Int, scratch: UnsafeMutablePointer<Float>,
                           precision: MatmulPrecision = .fp32) {
    let TOut = conv1dOutputLength(TIn: TIn, K: K, stride: stride, padding: padding)
    precondition(stride > 0 && padding >= 0 && TOut > 0, "conv1d: no output for TIn=\(TIn) K=\(K) stride=\(stride)")
    for b in 0..<B {
        let dy = dout + b * COut * TOut
        if let dbias {
            for co in 0..<COut { dbias[co] += rowSum(dy + co * TOut, TOut) }
        }
        if let dweight {
            unfold(scratch, inp + b * CIn * TIn, CIn: CIn, TIn: TIn, K: K, TOut: TOut, stride: stride, padding: padding)
            gemm(.none, .transpose, m: COut, n: CIn * K, k: TOut, alpha: 1, a: dy, lda: TOut, b: scratch, ldb: TOut,
                 beta: 1, c: dweight, ldc: CIn * K, precision: precision)
        }
        if let dinp {
            gemm(.transpose, .none, m: CIn * K, n: TOut, k: COut, alpha: 1, a: weight, lda: CIn * K, b: dy, ldb: TOut,
                 beta: 0, c: scratch, ldc: TOut, precision: precision)
            // col2im: the transpose of `unfold`, adding overlapping windows.
            let dx = dinp + b * CIn * TIn
            for ci in 0..<CIn {
                for k in 0..<K {
                    let row = scratch + (ci * K + k) * TOut
                    for t in 0..<TOut {
                        let s = t * stride + k - padding
                        if s >= 0 && s < TIn { dx[ci * TIn + s] += row[t] }
                    }
                }
            }
        }
    }
}

// MARK: - Reference

/// Naive `conv1dForward`: the convolution sum directly, in Double; `scratch` is unused.
public func conv1dForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                   weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, B: Int, CIn: Int,
                                   TIn: Int, COut: Int, K: Int, stride: Int, padding: Int,
                                   scratch: UnsafeMutablePointer<Float>) {
    let TOut = conv1dOutputLength(TIn: TIn, K: K, stride: stride, padding: padding)
    for b in 0..<B {
        for co in 0..<COut {
            for t in 0..<TOut {
                var acc = bias.map { Double($0[co]) } ?? 0
                for ci in 0..<CIn {
                    for k in 0..<K {
                        let s = t * stride + k - padding
                        if s >= 0 && s < TIn {
                            acc += Double(weight[(co * CIn + ci) * K + k]) * Double(inp[(b * CIn + ci) * TIn + s])
                        }
                    }
                }
                out[(b * COut + co) * TOut + t] = Float(acc)
            }
        }
    }
}

/// Naive `conv1dBackward` in Double; `scratch` is unused.
public func conv1dBackwardReference(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                    dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                    inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, B: Int, CIn: Int,
                                    TIn: Int, COut: Int, K: Int, stride: Int, padding: Int,
                                    scratch: UnsafeMutablePointer<Float>) {
    let TOut = conv1dOutputLength(TIn: TIn, K: K, stride: stride, padding: padding)
    var dx = [Double](repeating: 0, count: B * CIn * TIn)
    var dw = [Double](repeating: 0, count: COut * CIn * K)
    var db = [Double](repeating: 0, count: COut)
    for b in 0..<B {
        for co in 0..<COut {
            for t in 0..<TOut {
                let g = Double(dout[(b * COut + co) * TOut + t])
                db[co] += g
                for ci in 0..<CIn {
                    for k in 0..<K {
                        let s = t * stride + k - padding
                        guard s >= 0 && s < TIn else { continue }
                        dw[(co * CIn + ci) * K + k] += g * Double(inp[(b * CIn + ci) * TIn + s])
                        dx[(b * CIn + ci) * TIn + s] += g * Double(weight[(co * CIn + ci) * K + k])
                    }
                }
            }
        }
    }
    for i in 0..<dx.count { dinp?[i] += Float(dx[i]) }
    for i in 0..<dw.count { dweight?[i] += Float(dw[i]) }
    for i in 0..<db.count { dbias?[i] += Float(db[i]) }
}
