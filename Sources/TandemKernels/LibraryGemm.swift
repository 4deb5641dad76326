/// Row-major products through libxsmm and oneDNN (`CGemmLibs`), with `gemm`'s arguments, for
/// `tandem bench kernels` and their tests: the measurement of docs/performance.md, "libxsmm and oneDNN
/// against OpenBLAS and our bf16 GEMM". Each returns false where the library cannot run the product
/// (`lastError` says why), leaving C untouched. Not thread-safe (the libraries' caches and scratch are
/// shared): call from one thread.
import CGemmLibs

public enum LibraryGemm {
    public enum Library: String, Sendable { case libxsmm, oneDNN }

    /// Whether libxsmm's JIT generates code for this CPU (initialises it on first use).
    public static var xsmmAvailable: Bool { tandem_xsmm_init() == 1 }
    /// Whether oneDNN's CPU engine came up; sets oneDNN's OpenMP threads to `BLAS.threads` each time.
    public static var dnnlAvailable: Bool { tandem_dnnl_init(Int32(BLAS.threads)) == 1 }

    /// libxsmm's version and the target its CPUID check chose; oneDNN's version.
    public static var xsmmDescription: String {
        "libxsmm \(String(cString: tandem_xsmm_version())) target \(String(cString: tandem_xsmm_arch()))"
    }
    public static var dnnlVersion: String { String(cString: tandem_dnnl_version()) }
    /// The implementation oneDNN picked for the last primitive it created (e.g. "brg:avx512_core").
    public static var dnnlLastImplementation: String { String(cString: tandem_dnnl_last_impl()) }

    public static func lastError(_ library: Library) -> String {
        String(cString: library == .libxsmm ? tandem_xsmm_last_error() : tandem_dnnl_last_error())
    }

    @inline(__always) static func flag(_ t: Transpose) -> Int32 { t == .none ? 0 : 1 }

    /// fp32 product (`tandem_xsmm_sgemm` / `tandem_dnnl_sgemm`).
    @discardableResult
    public static func sgemm(_ library: Library, _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                             alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        let f = library == .libxsmm ? tandem_xsmm_sgemm : tandem_dnnl_sgemm
        return f(flag(transA), flag(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 1
    }

    /// `count` fp32 products of one shape at a + i strideA, b + i strideB, c + i strideC: libxsmm's kernel
    /// dispatched once for all, oneDNN's as one 3-D matmul.
    @discardableResult
    public static func sgemmBatch(_ library: Library, _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                                  alpha: Float, a: UnsafePointer<Float>, lda: Int, strideA: Int,
                                  b: UnsafePointer<Float>, ldb: Int, strideB: Int, beta: Float,
                                  c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int, count: Int) -> Bool {
        let f = library == .libxsmm ? tandem_xsmm_sgemm_batch : tandem_dnnl_sgemm_batch
        return f(flag(transA), flag(transB), m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc,
                 strideC, count) == 1
    }

    /// bf16 inputs (rounded to nearest even), fp32 accumulation and C, fp32 in and out as `bf16Gemm`.
    @discardableResult
    public static func bf16Sgemm(_ library: Library, _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                                 alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        let f = library == .libxsmm ? tandem_xsmm_bf16_sgemm : tandem_dnnl_bf16_sgemm
        return f(flag(transA), flag(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 1
    }
}
