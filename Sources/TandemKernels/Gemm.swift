/// General matrix products on row-major Float matrices: through `BLAS.sgemm` in fp32 (attention-head
/// sizes through libxsmm's JIT kernels, `SmallGemm`), or through the AVX512_BF16 GEMM of `CBF16Gemm` when
/// the caller passes `MatmulPrecision.bf16`. Transposes are flags, never copies, except the one libxsmm
/// needs (see `SmallGemm`).
import CBF16Gemm
import CSmallGemm
import Dispatch

// MARK: - Precision

/// The arithmetic of a `gemm` (so of a Linear, attention, convolution and their backward products),
/// passed down explicitly: the autograd tape holds one (`Tape.precision`) and every op recorded on it
/// hands it to its kernels. Master weights, gradients, optimizer state and all other kernels are fp32
/// in both modes; only the products' inputs are rounded.
public enum MatmulPrecision: String, Sendable, CaseIterable {
    /// OpenBLAS `cblas_sgemm`, fp32 throughout (the default).
    case fp32
    /// Both inputs rounded to bf16 (round to nearest, ties to even), the products summed in fp32 and
    /// written to fp32 C (`tandem_bf16_sgemm`, vdpbf16ps). Products too small to gain (`usesBF16`) stay
    /// fp32.
    case bf16

    /// Whether this CPU runs the bf16 GEMM (AVX-512 F, BW, VL and BF16, enabled by the OS).
    public static let bf16Supported: Bool = tandem_bf16_supported() != 0

    /// The bf16 rule: products with fewer than 16 rows or columns, or under 32^3 multiply-adds, stay
    /// fp32. There packing (rounding every input once) and the 12 x 32 tile's padding cost more than the
    /// doubled multiply rate gains: measured single-thread, 16x16x16 ran at 0.4-0.6x sgemm and matrix-vector
    /// shapes (64x1x64, 1x64x64) at 0.1-0.2x, while 32x32x32 ran at 1.1-1.3x and 64x64x64 at 1.4-1.5x.
    @inlinable
    public static func usesBF16(m: Int, n: Int, k: Int) -> Bool {
        m >= 16 && n >= 16 && m * n * k >= 32 * 32 * 32
    }
}

// MARK: - Small fp32 products

/// Small fp32 products run on libxsmm 1.17's JIT kernels (one generated per shape on first use, then
/// found in libxsmm's registry) instead of `cblas_sgemm`, where they measured faster single-thread on Zen 4
/// (docs/performance.md, "libxsmm and oneDNN against OpenBLAS and our bf16 GEMM"; 2 to 6 interleaved runs
/// of each shape):
/// - attention's per-head products (m, n, k up to 256): BERT-base (128 x 128 x 64, 128 x 64 x 128),
///   ViT-B/16 (197 x 197 x 64, 197 x 64 x 197) and ViT-tiny-32 (65 x 65 x 64, 65 x 64 x 65), forward and
///   backward: NN and TN 1.1-2.0x in every run; NT (op(B) transposed: libxsmm 1.17 cannot, so B is first
///   transposed into scratch) 1.18-1.57x at 128 rows and 0.97-1.29x at 197, but 0.97-1.10x at 65 rows,
///   where it stays on sgemm;
/// - narrow products, n up to 128 with m and k up to 1024: bert-tiny's Linears over 1024 tokens
///   (1024 x 128 x 128, 1024 x 128 x 512, 128 x 128 x 1024, 512 x 128 x 1024) 1.07-1.37x in every run,
///   where 512 wide outputs measured alike (0.92-1.15x) and stay on sgemm.
/// libxsmm takes beta 0 or 1 only (alpha is applied through scratch); products under 32 on a side stay
/// on sgemm (not measured), as does everything larger. The two round differently (same operations in
/// another order: about 3e-7 to 1.6e-6 of the largest |C|).
public enum SmallGemm {
    /// Whether libxsmm's JIT generates code for this CPU (x86 with AVX2 or later; initialised on first use).
    public static let available: Bool = tandem_xsmm_init() == 1

    /// Whether `gemm` sends this fp32 product to libxsmm: beta 0 or 1, every side at least 32, op(B)
    /// transposed only from 128 rows, and either every side up to 256 (attention's heads) or n up to 128
    /// with m and k up to 1024 (narrow Linears).
    @inlinable
    public static func routes(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, beta: Float) -> Bool {
        guard m >= 32 && n >= 32 && k >= 32, beta == 0 || beta == 1, transB == .none || m >= 128 else { return false }
        let heads = m <= 256 && n <= 256 && k <= 256, narrow = n <= 128 && m <= 1024 && k <= 1024
        return (heads || narrow) && available
    }

    /// The product on libxsmm (`tandem_xsmm_sgemm`), whatever its size, with `gemm`'s arguments; false, C
    /// untouched, where libxsmm cannot run it: beta other than 0 or 1, or no JIT for this CPU.
    @discardableResult
    public static func libxsmm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                               beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        tandem_xsmm_sgemm(transA == .none ? 0 : 1, transB == .none ? 0 : 1, m, n, k, alpha, a, lda, b, ldb,
                          beta, c, ldc) == 1
    }
}

// MARK: - Forward

/// C = alpha op(A) op(B) + beta C, row-major, with op(A) (m, k), op(B) (k, n), C (m, n); leading
/// dimensions are row strides in elements, so strided views (one head of a (B, T, C) buffer) need no copy.
/// A is stored (m, k) for `.none` and (k, m) for `.transpose`; likewise B is (k, n) or (n, k).
/// In `precision` bf16 the product goes to `bf16Gemm` unless `usesBF16` keeps it fp32; bf16 needs
/// `MatmulPrecision.bf16Supported`. fp32 products of `SmallGemm`'s class run on libxsmm, the rest on sgemm.
/// Counted by `GemmProfile` while it is enabled.
public func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, precision: MatmulPrecision = .fp32) {
    checkGemmShapes(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
    if m == 0 || n == 0 { return }
    GemmProfile.measure(m: m, n: n, k: k) {
        if precision == .bf16 && MatmulPrecision.usesBF16(m: m, n: n, k: k) {
            bf16Gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                     beta: beta, c: c, ldc: ldc)
            return .bf16
        }
        if SmallGemm.routes(transA, transB, m: m, n: n, k: k, beta: beta),
           SmallGemm.libxsmm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                             beta: beta, c: c, ldc: ldc) {
            return .libxsmm
        }
        BLAS.sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                   beta: beta, c: c, ldc: ldc)
        return .sgemm
    }
}

/// `gemm`'s product with bf16 inputs and fp32 accumulation, whatever its size (`tandem_bf16_sgemm`);
/// needs `MatmulPrecision.bf16Supported`. With `BLAS.threads` above 1 a product of at least 2^22
/// multiply-adds is split across that many threads, along N (each thread packs its own columns of B and
/// all of A) when A is the smaller operand, else along M; every part is one call of the same kernel, so
/// the result does not depend on the thread count.
public func bf16Gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    checkGemmShapes(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
    let ta: Int32 = transA == .none ? 0 : 1, tb: Int32 = transB == .none ? 0 : 1
    let threads = m * n * k >= 1 << 22 ? BLAS.threads : 1
    let splitN = m <= n
    // Parts are whole 32-column panels (N) or 12-row panels (M) of the kernel, so no part adds padding.
    let unit = splitN ? 32 : 12, extent = splitN ? n : m
    let parts = min(threads, (extent + unit - 1) / unit)
    if parts <= 1 {
        tandem_bf16_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    let units = (extent + unit - 1) / unit
    DispatchQueue.concurrentPerform(iterations: parts) { part in
        let start = units * part / parts * unit, end = min(extent, units * (part + 1) / parts * unit)
        if splitN {
            let bPart = transB == .none ? b + start : b + start * ldb
            tandem_bf16_sgemm(ta, tb, m, end - start, k, alpha, a, lda, bPart, ldb, beta, c + start, ldc)
        } else {
            let aPart = transA == .none ? a + start * lda : a + start
            tandem_bf16_sgemm(ta, tb, end - start, n, k, alpha, aPart, lda, b, ldb, beta, c + start * ldc, ldc)
        }
    }
}

/// `x` rounded to the nearest bf16 (ties to even) and back to Float, as the bf16 GEMM rounds its inputs:
/// denormals become signed zero (as vcvtne2ps2bf16 makes them), NaN stays NaN.
public func roundedToBF16(_ x: Float) -> Float {
    let bits = x.bitPattern
    if x.isNaN { return x }
    if bits & 0x7f80_0000 == 0 { return Float(bitPattern: bits & 0x8000_0000) }
    let rounded = (bits &+ 0x7fff &+ ((bits >> 16) & 1)) & 0xffff_0000
    return Float(bitPattern: rounded)
}

/// OpenBLAS reports a bad leading dimension on stderr and returns without computing, so a wrong stride
/// would silently leave C stale: check them here instead.
@inline(__always)
func checkGemmShapes(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                     lda: Int, ldb: Int, ldc: Int) {
    precondition(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=\(m) n=\(n) k=\(k)")
    precondition(lda >= max(1, transA == .none ? k : m), "gemm: lda \(lda) too small")
    precondition(ldb >= max(1, transB == .none ? n : k), "gemm: ldb \(ldb) too small")
    precondition(ldc >= max(1, n), "gemm: ldc \(ldc) too small")
}

// MARK: - Backward

/// Gradients of C = op(A) op(B) (C (m, n)): dA += dC op(B)^T laid out like A, dB += op(A)^T dC laid
/// out like B; each is one `gemm` in `precision` with beta = 1 whose transposes absorb the layouts.
/// `da`/`db` nil skips.
public func gemmBackward(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                         a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         dc: UnsafePointer<Float>, lddc: Int,
                         da: UnsafeMutablePointer<Float>?, ldda: Int,
                         db: UnsafeMutablePointer<Float>?, lddb: Int, precision: MatmulPrecision = .fp32) {
    if let da {
        switch (transA, transB) {
        case (.none, .none):            // dA (m, k) += dC (m, n) B^T, B (k, n)
            gemm(.none, .transpose, m: m, n: k, k: n, alpha: 1, a: dc, lda: lddc, b: b, ldb: ldb,
                 beta: 1, c: da, ldc: ldda, precision: precision)
        case (.none, .transpose):       // dA (m, k) += dC (m, n) B, B (n, k)
            gemm(.none, .none, m: m, n: k, k: n, alpha: 1, a: dc, lda: lddc, b: b, ldb: ldb,
                 beta: 1, c: da, ldc: ldda, precision: precision)
        case (.transpose, .none):       // dA (k, m) += B (k, n) dC^T
            gemm(.none, .transpose, m: k, n: m, k: n, alpha: 1, a: b, lda: ldb, b: dc, ldb: lddc,
                 beta: 1, c: da, ldc: ldda, precision: precision)
        case (.transpose, .transpose):  // dA (k, m) += B^T dC^T, B (n, k)
            gemm(.transpose, .transpose, m: k, n: m, k: n, alpha: 1, a: b, lda: ldb, b: dc, ldb: lddc,
                 beta: 1, c: da, ldc: ldda, precision: precision)
        }
    }
    if let db {
        switch (transA, transB) {
        case (.none, .none):            // dB (k, n) += A^T dC, A (m, k)
            gemm(.transpose, .none, m: k, n: n, k: m, alpha: 1, a: a, lda: lda, b: dc, ldb: lddc,
                 beta: 1, c: db, ldc: lddb, precision: precision)
        case (.transpose, .none):       // dB (k, n) += A dC, A (k, m)
            gemm(.none, .none, m: k, n: n, k: m, alpha: 1, a: a, lda: lda, b: dc, ldb: lddc,
                 beta: 1, c: db, ldc: lddb, precision: precision)
        case (.none, .transpose):       // dB (n, k) += dC^T A, A (m, k)
            gemm(.transpose, .none, m: n, n: k, k: m, alpha: 1, a: dc, lda: lddc, b: a, ldb: lda,
                 beta: 1, c: db, ldc: lddb, precision: precision)
        case (.transpose, .transpose):  // dB (n, k) += dC^T A^T, A (k, m)
            gemm(.transpose, .transpose, m: n, n: k, k: m, alpha: 1, a: dc, lda: lddc, b: a, ldb: lda,
                 beta: 1, c: db, ldc: lddb, precision: precision)
        }
    }
}

// MARK: - Reference

/// Naive `bf16Gemm`: `gemmReference` on inputs rounded by `roundedToBF16`, the products summed in Double.
public func bf16GemmReference(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                              beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    // Stored (rows, cols) with row stride ld spans (rows - 1) ld + cols elements.
    func span(_ rows: Int, _ cols: Int, _ ld: Int) -> Int { rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols }
    let aCount = transA == .none ? span(m, k, lda) : span(k, m, lda)
    let bCount = transB == .none ? span(k, n, ldb) : span(n, k, ldb)
    let a16 = (0..<aCount).map { roundedToBF16(a[$0]) }, b16 = (0..<bCount).map { roundedToBF16(b[$0]) }
    gemmReference(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a16, lda: lda, b: b16, ldb: ldb,
                  beta: beta, c: c, ldc: ldc)
}

/// Naive `gemm`: a triple loop with Double accumulation. Same arguments and result.
public func gemmReference(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                          beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var acc = 0.0
            for p in 0..<k {
                let aip = transA == .none ? a[i * lda + p] : a[p * lda + i]
                let bpj = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
                acc += Double(aip) * Double(bpj)
            }
            // beta = 0 must ignore C entirely (it may hold NaN), as BLAS does.
            let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
            c[i * ldc + j] = Float(Double(alpha) * acc + old)
        }
    }
}

/// Naive `gemmBackward`: each gradient element summed directly from its definition in Double.
public func gemmBackwardReference(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                  dc: UnsafePointer<Float>, lddc: Int,
                                  da: UnsafeMutablePointer<Float>?, ldda: Int,
                                  db: UnsafeMutablePointer<Float>?, lddb: Int) {
    // op(A)[i, p] lives at A[i, p] or A[p, i]; op(B)[p, j] at B[p, j] or B[j, p].
    func aIndex(_ i: Int, _ p: Int, _ ld: Int) -> Int { transA == .none ? i * ld + p : p * ld + i }
    func bIndex(_ p: Int, _ j: Int, _ ld: Int) -> Int { transB == .none ? p * ld + j : j * ld + p }
    if let da {
        for i in 0..<m {
            for p in 0..<k {
                var acc = 0.0
                for j in 0..<n { acc += Double(dc[i * lddc + j]) * Double(b[bIndex(p, j, ldb)]) }
                da[aIndex(i, p, ldda)] += Float(acc)
            }
        }
    }
    if let db {
        for p in 0..<k {
            for j in 0..<n {
                var acc = 0.0
                for i in 0..<m { acc += Double(a[aIndex(i, p, lda)]) * Double(dc[i * lddc + j]) }
                db[bIndex(p, j, lddb)] += Float(acc)
            }
        }
    }
}
