/// 1-D convolution as PyTorch's `nn.Conv1d` (zero padding, no dilation, `groups`) on channels-last
/// activations: inp (B, T, CIn), weight (COut, CIn/groups, K) in PyTorch's layout, out (B, TOut, COut).
///
/// Channels-last needs no im2col: output row t reads the input rows t stride - padding + k, k < K,
/// which for one group and no padding are K CIn contiguous floats starting at (t stride) CIn. A strided
/// view of the input is then the im2col matrix itself, except that BLAS wants a leading dimension of at
/// least the row length, and these rows overlap (stride CIn < K CIn) whenever K > stride. So the taps are
/// taken `stride` at a time: taps [j stride, (j + 1) stride) read stride CIn contiguous floats from row
/// (t + j) stride, a view with leading dimension stride CIn that BLAS accepts, and out = Σ_j view_j W'_jᵀ
/// with W'_j those taps of the weight permuted to (COut, K, CIn). wav2vec 2.0's feature encoder (K 10
/// stride 5, K 3 stride 2, K 2 stride 2) is then two or one products per batch element. With padding or
/// several groups each tap is a product of its own over the rows it reaches (one group's CIn/groups
/// columns, leading dimension stride CIn): wav2vec 2.0's positional convolution (768 channels, K 128,
/// padding 64, 16 groups) runs as K x 16 products of (T x 48) (48 x 48), faster than an im2col per group
/// (see `conv1dForward`).

/// TOut = (T + 2 padding - K) / stride + 1, the full output length of a convolution.
public func conv1dOutputLength(T: Int, K: Int, stride: Int, padding: Int) -> Int {
    (T + 2 * padding - K) / stride + 1
}

/// The number of Floats `scratch` must hold for `conv1dForward` and `conv1dBackward`: the permuted weight
/// W' (COut, K, CIn/groups) and, for backward, its gradient of the same size.
public func conv1dScratchCount(CIn: Int, COut: Int, K: Int, groups: Int) -> Int {
    2 * COut * K * (CIn / groups)
}

/// The shape of one convolution, checked once.
struct Conv1dShape {
    let B: Int, T: Int, CIn: Int, COut: Int, K: Int, stride: Int, padding: Int, groups: Int, TOut: Int
    /// Input and output channels of one group.
    var CInG: Int { CIn / groups }
    var COutG: Int { COut / groups }
    /// The floats of W' (COut, K, CInG).
    var weightCount: Int { COut * K * CInG }

    init(B: Int, T: Int, CIn: Int, COut: Int, K: Int, stride: Int, padding: Int, groups: Int, TOut: Int) {
        precondition(B >= 0 && K > 0 && stride > 0 && padding >= 0 && groups > 0, "conv1d: bad sizes K=\(K) stride=\(stride) padding=\(padding) groups=\(groups)")
        precondition(CIn % groups == 0 && COut % groups == 0, "conv1d: CIn \(CIn) and COut \(COut) must divide by groups \(groups)")
        let full = conv1dOutputLength(T: T, K: K, stride: stride, padding: padding)
        precondition(TOut > 0 && TOut <= full, "conv1d: output length \(TOut) outside 1...\(full) for T=\(T) K=\(K) stride=\(stride) padding=\(padding)")
        self.B = B; self.T = T; self.CIn = CIn; self.COut = COut; self.K = K
        self.stride = stride; self.padding = padding; self.groups = groups; self.TOut = TOut
    }

    /// Whether `stride` taps go into one product: one group and no padding, so that they read
    /// stride CIn contiguous floats of every row they cover, which is then every output row.
    var mergesTaps: Bool { groups == 1 && padding == 0 }

    /// Calls `body(k0, taps, t0, t1)` for each product: taps k0 ..< k0 + taps (`stride` of them at once
    /// where `mergesTaps`, else one) over the output rows t0 ..< t1 whose every tap reads inside the
    /// input, t stride + k - padding in 0 ..< T.
    @inline(__always)
    func forEachTap(_ body: (_ k0: Int, _ taps: Int, _ t0: Int, _ t1: Int) -> Void) {
        let width = mergesTaps ? stride : 1
        var k0 = 0
        while k0 < K {
            let taps = min(width, K - k0), kLast = k0 + taps - 1
            let t0 = padding > k0 ? (padding - k0 + stride - 1) / stride : 0
            let last = T - 1 + padding - kLast  // row t reads input row t stride + kLast - padding < T
            let t1 = last < 0 ? 0 : min(TOut, last / stride + 1)
            if t0 < t1 { body(k0, taps, t0, t1) }
            k0 += taps
        }
    }

    // The permuted weight W' holds the same values as the weight (COut, CInG, K), laid out so that each
    // product's block of it is a plain matrix: (COut, K, CInG) where `mergesTaps` (the block of taps
    // k0 ..< k0 + taps is COut rows of taps CInG floats, K CInG apart), else (groups, K, COutG, CInG),
    // one contiguous (COutG, CInG) block per group and tap. The blocks of the second kind could also sit
    // K CInG apart in (COut, K, CInG), but libxsmm's kernels ran the positional convolution's input
    // gradient 3x slower on those rows 24 KiB apart, a multiple of 4 KiB that maps them all to one
    // set of L1.

    /// The offset of the block of W' for group g and first tap k0, and its row stride.
    @inline(__always)
    func weightBlock(g: Int, k0: Int) -> (offset: Int, ld: Int) {
        mergesTaps ? (k0 * CInG, K * CInG) : ((g * K + k0) * COutG * CInG, CInG)
    }

    /// W' from weight (COut, CInG, K).
    func permute(_ wp: UnsafeMutablePointer<Float>, _ weight: UnsafePointer<Float>) {
        for co in 0..<COut {
            let src = weight + co * CInG * K
            for k in 0..<K {
                let block = weightBlock(g: co / COutG, k0: k), dst = wp + block.offset + (co % COutG) * block.ld
                for ci in 0..<CInG { dst[ci] = src[ci * K + k] }
            }
        }
    }

    /// dweight (COut, CInG, K) += dW', laid out as W'.
    func accumulatePermuted(_ dweight: UnsafeMutablePointer<Float>, _ dwp: UnsafePointer<Float>) {
        for co in 0..<COut {
            let dst = dweight + co * CInG * K
            for k in 0..<K {
                let block = weightBlock(g: co / COutG, k0: k), src = dwp + block.offset + (co % COutG) * block.ld
                for ci in 0..<CInG { dst[ci * K + k] += src[ci] }
            }
        }
    }
}

// MARK: - Forward

/// out (B, TOut, COut) = inp (B, T, CIn) ⊛ weight (COut, CIn/groups, K) + bias (COut) or nil, PyTorch's
/// `nn.Conv1d` on channels-last rows with zero padding on both sides; TOut at most
/// `conv1dOutputLength` (a smaller one drops the trailing outputs). `scratch` holds `conv1dScratchCount`
/// Floats (overwritten). Per batch element, every tap group of `Conv1dShape.forEachTap` is one product
/// in `precision` (see `gemm`) added into the output.
///
/// For wav2vec 2.0's positional convolution (B 1, C 768, K 128, padding 64, groups 16) the per-tap
/// products measured faster than an im2col per group followed by one (T, 6144) (6144, 48) product
/// (release build, one OpenBLAS thread, the 2-core Zen 4 machine, best of 5): T 400 forward 50.5 against
/// 66.1 ms, forward and backward 158 against 222 ms; T 800 forward 102 against 146 ms, forward and
/// backward 338 against 431 ms. The im2col writes K copies of the input; the taps reread it from L2.
public func conv1dForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, B: Int, T: Int, CIn: Int, COut: Int, K: Int, stride: Int,
                          padding: Int, groups: Int, TOut: Int, scratch: UnsafeMutablePointer<Float>,
                          precision: MatmulPrecision = .fp32) {
    let s = Conv1dShape(B: B, T: T, CIn: CIn, COut: COut, K: K, stride: stride, padding: padding, groups: groups, TOut: TOut)
    let wp = scratch
    s.permute(wp, weight)
    let CInG = s.CInG, COutG = s.COutG
    // Without padding every tap covers every row, so the first product of a group stores and the bias
    // comes after; with padding the edge rows miss some taps, so the output starts as the bias or zeros.
    let prefill = padding > 0
    for b in 0..<B {
        let x = inp + b * T * CIn, y = out + b * TOut * COut
        if prefill {
            for t in 0..<TOut {
                if let bias { (y + t * COut).update(from: bias, count: COut) } else { (y + t * COut).update(repeating: 0, count: COut) }
            }
        }
        for g in 0..<groups {
            s.forEachTap { k0, taps, t0, t1 in
                let block = s.weightBlock(g: g, k0: k0)
                gemm(.none, .transpose, m: t1 - t0, n: COutG, k: taps * CInG, alpha: 1,
                     a: x + (t0 * stride + k0 - padding) * CIn + g * CInG, lda: stride * CIn,
                     b: wp + block.offset, ldb: block.ld,
                     beta: prefill || k0 > 0 ? 1 : 0, c: y + t0 * COut + g * COutG, ldc: COut, precision: precision)
            }
        }
        if !prefill, let bias { biasAddForward(out: y, inp: y, bias: bias, N: TOut, C: COut) }
    }
}

// MARK: - Backward

/// Gradients of `conv1dForward`, accumulated (nil skips one): dbias (COut) += column sums of dout,
/// dinp += each tap's product dout W'_k written straight into the input rows it read, dweight += the
/// products doutᵀ view_k summed over the batch in `scratch` and permuted back. `scratch` as in
/// `conv1dForward` (overwritten). Products in `precision`.
public func conv1dBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                           dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                           weight: UnsafePointer<Float>, B: Int, T: Int, CIn: Int, COut: Int, K: Int, stride: Int,
                           padding: Int, groups: Int, TOut: Int, scratch: UnsafeMutablePointer<Float>,
                           precision: MatmulPrecision = .fp32) {
    let s = Conv1dShape(B: B, T: T, CIn: CIn, COut: COut, K: K, stride: stride, padding: padding, groups: groups, TOut: TOut)
    let CInG = s.CInG, COutG = s.COutG
    if let dbias { accumulateColumnSums(dbias, dout, N: B * TOut, C: COut) }
    let wp = scratch, dwp = scratch + s.weightCount
    if dinp != nil { s.permute(wp, weight) }
    if dweight != nil { dwp.update(repeating: 0, count: s.weightCount) }
    for b in 0..<B {
        let dy = dout + b * TOut * COut
        for g in 0..<groups {
            s.forEachTap { k0, taps, t0, t1 in
                let rows = t1 - t0, dyRows = dy + t0 * COut + g * COutG
                let xOffset = (b * T + t0 * stride + k0 - padding) * CIn + g * CInG
                let block = s.weightBlock(g: g, k0: k0)
                if dweight != nil {
                    weightGradientGemm(m: COutG, n: taps * CInG, k: rows, a: dyRows, lda: COut, b: inp + xOffset,
                                       ldb: stride * CIn, c: dwp + block.offset, ldc: block.ld, precision: precision)
                }
                if let dinp {
                    gemm(.none, .none, m: rows, n: taps * CInG, k: COutG, alpha: 1, a: dyRows, lda: COut,
                         b: wp + block.offset, ldb: block.ld, beta: 1, c: dinp + xOffset, ldc: stride * CIn,
                         precision: precision)
                }
            }
        }
    }
    if let dweight { s.accumulatePermuted(dweight, dwp) }
}

/// c (m, n) += aᵀ b with a (k, m) and b (k, n): `gemm` in `precision`, except that fp32 products go to
/// OpenBLAS even where `gemm` would send them to libxsmm. The positional convolution's per-tap weight
/// gradients (48 x 48 x T, A transposed) are such products, and ran 1.7x slower there.
@inline(__always)
func weightGradientGemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                        c: UnsafeMutablePointer<Float>, ldc: Int, precision: MatmulPrecision) {
    if precision == .fp32 {
        BLAS.sgemm(.transpose, .none, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: c, ldc: ldc)
    } else {
        gemm(.transpose, .none, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: c, ldc: ldc,
             precision: precision)
    }
}

// MARK: - Reference

/// Naive `conv1dForward`: the convolution sum directly, in Double.
public func conv1dForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                   weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, B: Int, T: Int,
                                   CIn: Int, COut: Int, K: Int, stride: Int, padding: Int, groups: Int, TOut: Int) {
    let CInG = CIn / groups, COutG = COut / groups
    for b in 0..<B {
        for t in 0..<TOut {
            for co in 0..<COut {
                let g = co / COutG
                var acc = bias.map { Double($0[co]) } ?? 0
                for ci in 0..<CInG {
                    for k in 0..<K {
                        let s = t * stride + k - padding
                        guard s >= 0 && s < T else { continue }
                        acc += Double(weight[(co * CInG + ci) * K + k]) * Double(inp[(b * T + s) * CIn + g * CInG + ci])
                    }
                }
                out[(b * TOut + t) * COut + co] = Float(acc)
            }
        }
    }
}

/// Naive `conv1dBackward` in Double.
public func conv1dBackwardReference(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                    dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                    inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, B: Int, T: Int,
                                    CIn: Int, COut: Int, K: Int, stride: Int, padding: Int, groups: Int, TOut: Int) {
    let CInG = CIn / groups, COutG = COut / groups
    var dx = [Double](repeating: 0, count: B * T * CIn)
    var dw = [Double](repeating: 0, count: COut * CInG * K)
    var db = [Double](repeating: 0, count: COut)
    for b in 0..<B {
        for t in 0..<TOut {
            for co in 0..<COut {
                let g = co / COutG, d = Double(dout[(b * TOut + t) * COut + co])
                db[co] += d
                for ci in 0..<CInG {
                    for k in 0..<K {
                        let s = t * stride + k - padding
                        guard s >= 0 && s < T else { continue }
                        let xi = (b * T + s) * CIn + g * CInG + ci, wi = (co * CInG + ci) * K + k
                        dw[wi] += d * Double(inp[xi])
                        dx[xi] += d * Double(weight[wi])
                    }
                }
            }
        }
    }
    for i in 0..<dx.count { dinp?[i] += Float(dx[i]) }
    for i in 0..<dw.count { dweight?[i] += Float(dw[i]) }
    for i in 0..<db.count { dbias?[i] += Float(db[i]) }
}
