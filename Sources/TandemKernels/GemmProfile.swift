import Synchronization
import TandemTensor

/// Time and FLOPs of the matrix products (`gemm` and `panelGemm`) while profiling is on, by the kernel
/// that ran them: what `tandem bench step --profile` reports as the products' own rate in a training
/// step, so that the step's MFU can be split into how fast its products run and how much of the step
/// is something else. Off by default; then each product pays one relaxed atomic load. On, each pays two
/// clock reads and a lock, a few hundred nanoseconds against the microseconds of the smallest product
/// a model runs. Process-wide: the counters sum over every thread that calls a product.
public enum GemmProfile {
    /// The kernel a product ran on.
    public enum Kernel: Int, CaseIterable, Sendable {
        /// OpenBLAS `cblas_sgemm`.
        case sgemm
        /// libxsmm's JIT kernels (`SmallGemm`).
        case libxsmm
        /// The AVX512_BF16 GEMM (`bf16Gemm`).
        case bf16
        /// A recurrent layer's prepacked weight (`panelGemm`).
        case panel

        public var name: String {
            switch self {
            case .sgemm: return "cblas_sgemm"
            case .libxsmm: return "libxsmm"
            case .bf16: return "bf16 GEMM"
            case .panel: return "panelGemm"
            }
        }
    }

    /// Products counted since the last `reset`, for one kernel or all of them.
    public struct Totals: Sendable, Equatable {
        public var calls = 0
        /// 2 m n k summed over the calls.
        public var flops = 0.0
        /// Wall-clock seconds inside the calls.
        public var seconds = 0.0

        public init() {}

        public static func + (l: Totals, r: Totals) -> Totals {
            var t = l
            t.calls += r.calls
            t.flops += r.flops
            t.seconds += r.seconds
            return t
        }
    }

    private static let on = Atomic<Bool>(false)
    private static let counters = Mutex<[Totals]>(Array(repeating: Totals(), count: Kernel.allCases.count))

    /// Whether products are being counted.
    public static var enabled: Bool {
        get { on.load(ordering: .relaxed) }
        set { on.store(newValue, ordering: .relaxed) }
    }

    /// Zeroes every counter.
    public static func reset() {
        counters.withLock { $0 = Array(repeating: Totals(), count: Kernel.allCases.count) }
    }

    /// The counters by kernel, in `Kernel.allCases` order.
    public static func byKernel() -> [(kernel: Kernel, totals: Totals)] {
        counters.withLock { c in Kernel.allCases.map { ($0, c[$0.rawValue]) } }
    }

    /// The counters summed over the kernels.
    public static var total: Totals { byKernel().reduce(Totals()) { $0 + $1.totals } }

    /// Runs `product` (an (m, n, k) product) and, while profiling is on, counts it under the kernel it
    /// returns.
    @inline(__always)
    static func measure(m: Int, n: Int, k: Int, _ product: () -> Kernel) {
        guard enabled else {
            _ = product()
            return
        }
        let start = monotonicSeconds()
        let kernel = product()
        let seconds = monotonicSeconds() - start
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        counters.withLock { c in
            c[kernel.rawValue].calls += 1
            c[kernel.rawValue].flops += flops
            c[kernel.rawValue].seconds += seconds
        }
    }
}
