import CBLAS
#if canImport(Glibc)
import Glibc
#endif

/// Whether a matrix operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none, transpose
    @inlinable var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// Thin wrappers over OpenBLAS. All matrices are row-major.
public enum BLAS {
    /// C = alpha * op(A) * op(B) + beta * C, with op(A) M x K, op(B) K x N, C M x N (row-major, leading
    /// dimensions in elements). Transposes are passed to sgemm, never materialised.
    @inlinable
    public static func sgemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// y = alpha * op(A) * x + beta * y, A M x N row-major (leading dimension `lda`), op(A) A or Aᵀ; x and y
    /// contiguous.
    @inlinable
    public static func sgemv(_ transA: Transpose, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>) {
        cblas_sgemv(CblasRowMajor, transA.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }

    /// The number of threads OpenBLAS uses for one call on this rank.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    /// The OpenBLAS kernels to ask for (`OPENBLAS_CORETYPE`) on this CPU when OpenBLAS's own choice is
    /// slower, else nil.
    /// - AMD Zen 4 (family 0x19 with AVX-512): OpenBLAS 0.3.21 picks its AVX-512 Cooperlake kernels, but
    ///   Zen 4 runs 512-bit FMAs as two 256-bit halves and its Zen (AVX2) kernels measured faster:
    ///   single-core sgemm 107-112 against 95-104 GFLOP/s on ViT-tiny's products, and +2-8% samples/s per
    ///   step on ViT-tiny, ViT-B/16 and BERT-base (docs/performance.md). Zen 3 gets the Zen kernels anyway.
    /// - Intel CPUs with AVX-512 (F, CD, BW, DQ, VL) that OpenBLAS does not recognise (newer models, or a
    ///   hypervisor's generic "Intel Xeon Processor"): OpenBLAS 0.3.21 falls back to its SSE3 Prescott
    ///   kernels, 32 GFLOP/s single-core sgemm at 4096x768x768 on such a Xeon (AVX-512 BF16 and FP16)
    ///   against 156-158 with its Cooperlake or SkylakeX kernels (`tandem bench kernels`). They get
    ///   Cooperlake where the CPU has AVX512_BF16, else SkylakeX; a CPU OpenBLAS already gives AVX-512
    ///   kernels keeps them (`selectPreferredCore` compares).
    /// Other CPUs keep OpenBLAS's choice.
    public static var preferredCore: String? {
        #if os(Linux)
        guard let file = fopen("/proc/cpuinfo", "r") else { return nil }
        defer { fclose(file) }
        var vendor = "", family = -1, flags: Set<Substring> = []
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        // The first processor's block is enough: the cores of one machine are alike.
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            if text == "\n" { break }
            let parts = text.split(separator: ":", maxSplits: 1).map {
                String($0.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
            }
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "vendor_id": vendor = parts[1]
            case "cpu family": family = Int(parts[1]) ?? -1
            case "flags": flags = Set(parts[1].split(separator: " "))
            default: break
            }
        }
        if vendor == "AuthenticAMD" && family == 0x19 && flags.contains("avx512f") { return "Zen" }
        if vendor == "GenuineIntel" && ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) {
            return flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX"
        }
        return nil
        #else
        return nil
        #endif
    }

    /// OpenBLAS's AVX-512 kernels, which `selectPreferredCore` does not replace by others of Intel's.
    static let avx512Cores: Set<String> = ["SkylakeX", "Cooperlake", "SapphireRapids"]

    /// Re-executes this program with `OPENBLAS_CORETYPE` = `preferredCore` when the variable is unset and
    /// the CPU has a preference. OpenBLAS picks its kernels while it loads, before `main`, so the choice
    /// needs a fresh process image; call this first thing in `main`, before MPI starts. A user's own
    /// `OPENBLAS_CORETYPE` (any value) is kept. Returns when there is nothing to do or exec fails.
    public static func selectPreferredCore() {
        #if os(Linux)
        guard getenv("OPENBLAS_CORETYPE") == nil, let core = preferredCore, core != coreName,
              core == "Zen" || !avx512Cores.contains(coreName) else { return }
        setenv("OPENBLAS_CORETYPE", core, 0)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        #endif
    }

    /// The kernels OpenBLAS runs on this CPU (e.g. `Zen`, `Cooperlake`).
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's build description (kernel target and threading), for benchmark headers.
    public static var configuration: String {
        String(cString: openblas_get_config()) + " core=" + coreName
    }
}
