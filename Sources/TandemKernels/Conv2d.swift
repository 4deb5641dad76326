/// 2-D convolution as PyTorch's `nn.Conv2d` (zero padding, one stride and one padding for both axes, no
/// dilation, one group) on channels-last activations: inp (B, H, W, CIn), weight (COut, CIn, KH, KW) in
/// PyTorch's layout, out (B, HOut, WOut, COut). The convolutions of an image tokenizer for BEiT's visual
/// tokens (BEiT used DALL-E's dVAE, Ramesh et al. 2021): kernel 4 stride 2 padding 1 down, as in van den
/// Oord et al. 2017's VQ-VAE, kernel 3 padding 1 and 1x1 at a resolution.
///
/// Unlike `conv1dForward`, a strided view of the input cannot be the im2col matrix: the KH taps of one
/// output pixel read KH input rows W CIn floats apart. So the output pixels (all B HOut WOut of them, in
/// order, so a chunk may span images) are taken a chunk at a time: im2col writes each pixel's receptive
/// field as one row of KH KW CIn floats in (kh, kw, ci) order into scratch, zeros where it reaches the
/// padding, and one product with the weight permuted to (COut, KH, KW, CIn) gives the chunk's outputs.
/// Chunks hold at most `columnFloats` floats of im2col (1 MiB by default), so the scratch it needs (the
/// tape's shared workspace) stays bounded whatever the batch. A 1x1 convolution with stride 1 and no padding is a plain
/// product of the input rows with the weight viewed as (COut, CIn), with no im2col and no scratch.

/// The im2col floats a chunk may hold unless the caller says otherwise: 2^18, 1 MiB, which stays in
/// Zen 4's L2 and, for rows of 256 floats or more, keeps the forward product within the 1024 rows that
/// `SmallGemm` sends to libxsmm.
/// For (64, 28, 28, 32) -> (64, 14, 14, 64), kernel 4 stride 2 padding 1, the forward took 4.4 ms in
/// chunks of 512 rows (1 MiB) against 8.3 ms in chunks of 2048 (4 MiB, on sgemm), the backward 16.5
/// against 16.3 ms (release build, one OpenBLAS thread, the 2-core Zen 4 machine, median of 14).
public let conv2dColumnFloats = 1 << 18

/// HOut = (H + 2 padding - KH) / stride + 1 and WOut likewise, the output size of a convolution.
public func conv2dOutputSize(H: Int, W: Int, KH: Int, KW: Int, stride: Int, padding: Int) -> (HOut: Int, WOut: Int) {
    ((H + 2 * padding - KH) / stride + 1, (W + 2 * padding - KW) / stride + 1)
}

/// The number of Floats `scratch` must hold for `conv2dForward` and `conv2dBackward` with the same
/// `columnFloats`: the permuted weight (COut, KH, KW, CIn), its gradient, and one chunk of im2col rows;
/// 0 for a 1x1 convolution with stride 1 and no padding, which needs none.
public func conv2dScratchCount(B: Int, H: Int, W: Int, CIn: Int, COut: Int, KH: Int, KW: Int, stride: Int,
                               padding: Int, columnFloats: Int = conv2dColumnFloats) -> Int {
    let s = Conv2dShape(B: B, H: H, W: W, CIn: CIn, COut: COut, KH: KH, KW: KW, stride: stride, padding: padding)
    return s.isPointwise ? 0 : 2 * s.weightCount + s.chunkRows(columnFloats) * s.rowLength
}

/// The shape of one convolution, checked once.
struct Conv2dShape {
    let B: Int, H: Int, W: Int, CIn: Int, COut: Int, KH: Int, KW: Int, stride: Int, padding: Int
    let HOut: Int, WOut: Int

    init(B: Int, H: Int, W: Int, CIn: Int, COut: Int, KH: Int, KW: Int, stride: Int, padding: Int) {
        precondition(B >= 0 && CIn > 0 && COut > 0 && KH > 0 && KW > 0 && stride > 0 && padding >= 0,
                     "conv2d: bad sizes CIn=\(CIn) COut=\(COut) K=\(KH)x\(KW) stride=\(stride) padding=\(padding)")
        (HOut, WOut) = conv2dOutputSize(H: H, W: W, KH: KH, KW: KW, stride: stride, padding: padding)
        precondition(H + 2 * padding >= KH && W + 2 * padding >= KW,
                     "conv2d: kernel \(KH)x\(KW) larger than the padded input \(H)x\(W) with padding \(padding)")
        self.B = B; self.H = H; self.W = W; self.CIn = CIn; self.COut = COut; self.KH = KH; self.KW = KW
        self.stride = stride; self.padding = padding
    }

    /// Output pixels, the rows of the products.
    var N: Int { B * HOut * WOut }
    /// Floats of one im2col row, (KH, KW, CIn).
    var rowLength: Int { KH * KW * CIn }
    /// Floats of the weight.
    var weightCount: Int { COut * rowLength }
    /// Whether the input rows are the im2col rows themselves.
    var isPointwise: Bool { KH == 1 && KW == 1 && stride == 1 && padding == 0 }

    /// Output pixels per chunk: as many whole im2col rows as `columnFloats` holds, at least one.
    func chunkRows(_ columnFloats: Int) -> Int {
        max(1, min(N, columnFloats / rowLength))
    }

    /// Calls `body(n0, n1)` for the chunks of output pixels n0 ..< n1 in order.
    @inline(__always)
    func forEachChunk(_ columnFloats: Int, _ body: (_ n0: Int, _ n1: Int) -> Void) {
        let rows = chunkRows(columnFloats)
        var n0 = 0
        while n0 < N {
            let n1 = min(N, n0 + rows)
            body(n0, n1)
            n0 = n1
        }
    }

    /// Calls `body(r, kh, kw0, kw1, x)` for every run of taps of output pixels n0 ..< n1 that read inside
    /// the input: row r of the chunk, kernel row kh, kernel columns kw0 ..< kw1, whose (kw1 - kw0) CIn
    /// floats are contiguous in the input (channels-last) and start at offset x; `gap(r, kh, kw0, kw1)`
    /// for every run that reads padding. Together they cover each row's KH KW CIn floats once.
    @inline(__always)
    func forEachRun(_ n0: Int, _ n1: Int, run body: (_ r: Int, _ kh: Int, _ kw0: Int, _ kw1: Int, _ x: Int) -> Void,
                    gap: (_ r: Int, _ kh: Int, _ kw0: Int, _ kw1: Int) -> Void) {
        for n in n0..<n1 {
            let b = n / (HOut * WOut), oh = n / WOut % HOut, ow = n % WOut
            let ih0 = oh * stride - padding, iw0 = ow * stride - padding
            // Kernel columns kw read input column iw0 + kw, inside for kw in kwLo ..< kwHi.
            let kwLo = max(0, -iw0), kwHi = min(KW, W - iw0)
            for kh in 0..<KH {
                let ih = ih0 + kh
                guard ih >= 0 && ih < H && kwLo < kwHi else { gap(n - n0, kh, 0, KW); continue }
                if kwLo > 0 { gap(n - n0, kh, 0, kwLo) }
                body(n - n0, kh, kwLo, kwHi, ((b * H + ih) * W + iw0 + kwLo) * CIn)
                if kwHi < KW { gap(n - n0, kh, kwHi, KW) }
            }
        }
    }

    /// The im2col rows (n1 - n0, KH KW CIn) of output pixels n0 ..< n1 into `cols`, zeros for padding.
    func im2col(_ cols: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ n0: Int, _ n1: Int) {
        let L = rowLength, rowCIn = KW * CIn
        forEachRun(n0, n1, run: { r, kh, kw0, kw1, x in
            (cols + r * L + kh * rowCIn + kw0 * CIn).update(from: inp + x, count: (kw1 - kw0) * CIn)
        }, gap: { r, kh, kw0, kw1 in
            (cols + r * L + kh * rowCIn + kw0 * CIn).update(repeating: 0, count: (kw1 - kw0) * CIn)
        })
    }

    /// dinp += the im2col rows' gradient `dcols` scattered back to the input floats each row read
    /// (overlapping fields add up); padding drops its share.
    func col2im(_ dinp: UnsafeMutablePointer<Float>, _ dcols: UnsafePointer<Float>, _ n0: Int, _ n1: Int) {
        let L = rowLength, rowCIn = KW * CIn
        forEachRun(n0, n1, run: { r, kh, kw0, kw1, x in
            residualBackward(da: dinp + x, db: nil, dout: dcols + r * L + kh * rowCIn + kw0 * CIn, count: (kw1 - kw0) * CIn)
        }, gap: { _, _, _, _ in })
    }

    /// The weight (COut, CIn, KH, KW) permuted to (COut, KH, KW, CIn), the im2col rows' order.
    func permute(_ wp: UnsafeMutablePointer<Float>, _ weight: UnsafePointer<Float>) {
        let K = KH * KW
        for co in 0..<COut {
            let src = weight + co * CIn * K, dst = wp + co * K * CIn
            for k in 0..<K {
                for ci in 0..<CIn { dst[k * CIn + ci] = src[ci * K + k] }
            }
        }
    }

    /// dweight (COut, CIn, KH, KW) += dwp, laid out as the permuted weight.
    func accumulatePermuted(_ dweight: UnsafeMutablePointer<Float>, _ dwp: UnsafePointer<Float>) {
        let K = KH * KW
        for co in 0..<COut {
            let dst = dweight + co * CIn * K, src = dwp + co * K * CIn
            for k in 0..<K {
                for ci in 0..<CIn { dst[ci * K + k] += src[k * CIn + ci] }
            }
        }
    }
}

// MARK: - Forward

/// out (B, HOut, WOut, COut) = inp (B, H, W, CIn) ⊛ weight (COut, CIn, KH, KW) + bias (COut) or nil,
/// PyTorch's `nn.Conv2d` on channels-last pixels with zero padding on every side, HOut and WOut from
/// `conv2dOutputSize`. `scratch` holds `conv2dScratchCount` Floats for the same `columnFloats`
/// (overwritten). Each chunk of output pixels is one (rows, KH KW CIn) (KH KW CIn, COut) product in
/// `precision` (see `gemm`).
///
/// A VQ-VAE's first downsampling at BEiT's batch, (64, 28, 28, 32) -> (64, 14, 14, 64) with kernel 4
/// stride 2 padding 1 (three products of 822 MFLOP), took 4.4 ms forward and 16.5 ms backward (all three
/// gradients), release build, one OpenBLAS thread, the 2-core Zen 4 machine, median of 14; the same three
/// products on one whole im2col matrix (25 MiB, no im2col counted) took 25 ms.
public func conv2dForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, B: Int, H: Int, W: Int, CIn: Int, COut: Int, KH: Int, KW: Int,
                          stride: Int, padding: Int, scratch: UnsafeMutablePointer<Float>,
                          columnFloats: Int = conv2dColumnFloats, precision: MatmulPrecision = .fp32) {
    let s = Conv2dShape(B: B, H: H, W: W, CIn: CIn, COut: COut, KH: KH, KW: KW, stride: stride, padding: padding)
    let N = s.N, L = s.rowLength
    if s.isPointwise {
        gemm(.none, .transpose, m: N, n: COut, k: CIn, alpha: 1, a: inp, lda: CIn, b: weight, ldb: CIn,
             beta: 0, c: out, ldc: COut, precision: precision)
    } else {
        let wp = scratch, cols = scratch + 2 * s.weightCount
        s.permute(wp, weight)
        s.forEachChunk(columnFloats) { n0, n1 in
            s.im2col(cols, inp, n0, n1)
            gemm(.none, .transpose, m: n1 - n0, n: COut, k: L, alpha: 1, a: cols, lda: L, b: wp, ldb: L,
                 beta: 0, c: out + n0 * COut, ldc: COut, precision: precision)
        }
    }
    if let bias, N > 0 { biasAddForward(out: out, inp: out, bias: bias, N: N, C: COut) }
}

// MARK: - Backward

/// Gradients of `conv2dForward`, accumulated (nil skips one): dbias (COut) += column sums of dout,
/// dweight += doutᵀ im2col summed over the chunks in `scratch` and permuted back, dinp += col2im of
/// dout W' (each chunk's column gradient, in `scratch` where the im2col rows were, scattered back and
/// added where receptive fields overlap). `scratch` and `columnFloats` as in `conv2dForward`
/// (overwritten). Products in `precision`.
public func conv2dBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                           dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                           weight: UnsafePointer<Float>, B: Int, H: Int, W: Int, CIn: Int, COut: Int, KH: Int,
                           KW: Int, stride: Int, padding: Int, scratch: UnsafeMutablePointer<Float>,
                           columnFloats: Int = conv2dColumnFloats, precision: MatmulPrecision = .fp32) {
    let s = Conv2dShape(B: B, H: H, W: W, CIn: CIn, COut: COut, KH: KH, KW: KW, stride: stride, padding: padding)
    let N = s.N, L = s.rowLength
    if let dbias { accumulateColumnSums(dbias, dout, N: N, C: COut) }
    if N == 0 { return }
    if s.isPointwise {
        if let dweight {
            weightGradientGemm(m: COut, n: CIn, k: N, a: dout, lda: COut, b: inp, ldb: CIn, c: dweight, ldc: CIn,
                               precision: precision)
        }
        if let dinp {
            gemm(.none, .none, m: N, n: CIn, k: COut, alpha: 1, a: dout, lda: COut, b: weight, ldb: CIn,
                 beta: 1, c: dinp, ldc: CIn, precision: precision)
        }
        return
    }
    let wp = scratch, dwp = scratch + s.weightCount, cols = scratch + 2 * s.weightCount
    if dinp != nil { s.permute(wp, weight) }
    if dweight != nil { dwp.update(repeating: 0, count: s.weightCount) }
    s.forEachChunk(columnFloats) { n0, n1 in
        let rows = n1 - n0, dy = dout + n0 * COut
        if dweight != nil {
            s.im2col(cols, inp, n0, n1)
            weightGradientGemm(m: COut, n: L, k: rows, a: dy, lda: COut, b: cols, ldb: L, c: dwp, ldc: L,
                               precision: precision)
        }
        if let dinp {
            gemm(.none, .none, m: rows, n: L, k: COut, alpha: 1, a: dy, lda: COut, b: wp, ldb: L,
                 beta: 0, c: cols, ldc: L, precision: precision)
            s.col2im(dinp, cols, n0, n1)
        }
    }
    if let dweight { s.accumulatePermuted(dweight, dwp) }
}

// MARK: - Reference

/// Naive `conv2dForward`: the convolution sum directly, in Double.
public func conv2dForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                   weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, B: Int, H: Int, W: Int,
                                   CIn: Int, COut: Int, KH: Int, KW: Int, stride: Int, padding: Int) {
    let (HOut, WOut) = conv2dOutputSize(H: H, W: W, KH: KH, KW: KW, stride: stride, padding: padding)
    for b in 0..<B {
        for oh in 0..<HOut {
            for ow in 0..<WOut {
                for co in 0..<COut {
                    var acc = bias.map { Double($0[co]) } ?? 0
                    for ci in 0..<CIn {
                        for kh in 0..<KH {
                            for kw in 0..<KW {
                                let ih = oh * stride + kh - padding, iw = ow * stride + kw - padding
                                guard ih >= 0 && ih < H && iw >= 0 && iw < W else { continue }
                                acc += Double(weight[((co * CIn + ci) * KH + kh) * KW + kw])
                                    * Double(inp[((b * H + ih) * W + iw) * CIn + ci])
                            }
                        }
                    }
                    out[((b * HOut + oh) * WOut + ow) * COut + co] = Float(acc)
                }
            }
        }
    }
}

/// Naive `conv2dBackward` in Double.
public func conv2dBackwardReference(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                    dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                    inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, B: Int, H: Int, W: Int,
                                    CIn: Int, COut: Int, KH: Int, KW: Int, stride: Int, padding: Int) {
    let (HOut, WOut) = conv2dOutputSize(H: H, W: W, KH: KH, KW: KW, stride: stride, padding: padding)
    var dx = [Double](repeating: 0, count: B * H * W * CIn)
    var dw = [Double](repeating: 0, count: COut * CIn * KH * KW)
    var db = [Double](repeating: 0, count: COut)
    for b in 0..<B {
        for oh in 0..<HOut {
            for ow in 0..<WOut {
                for co in 0..<COut {
                    let d = Double(dout[((b * HOut + oh) * WOut + ow) * COut + co])
                    db[co] += d
                    for ci in 0..<CIn {
                        for kh in 0..<KH {
                            for kw in 0..<KW {
                                let ih = oh * stride + kh - padding, iw = ow * stride + kw - padding
                                guard ih >= 0 && ih < H && iw >= 0 && iw < W else { continue }
                                let xi = ((b * H + ih) * W + iw) * CIn + ci, wi = ((co * CIn + ci) * KH + kh) * KW + kw
                                dw[wi] += d * Double(inp[xi])
                                dx[xi] += d * Double(weight[wi])
                            }
                        }
                    }
                }
            }
        }
    }
    for i in 0..<dx.count { dinp?[i] += Float(dx[i]) }
    for i in 0..<dw.count { dweight?[i] += Float(dw[i]) }
    for i in 0..<db.count { dbias?[i] += Float(db[i]) }
}
