import XCTest
import TandemKernels
import TandemTestSupport

/// `GemmProfile` counts every product `gemm` and `panelGemm` run while it is on, under the kernel that
/// ran it, with 2 m n k FLOPs each, and nothing while it is off; the products' results do not change.
final class GemmProfileTests: KernelTestCase {
    override func tearDown() {
        GemmProfile.enabled = false
        GemmProfile.reset()
        super.tearDown()
    }

    private func product(_ m: Int, _ n: Int, _ k: Int, beta: Float, precision: MatmulPrecision = .fp32) -> [Float] {
        let a = Buffer(random: m * k, seed: 1), b = Buffer(random: k * n, seed: 2), c = Buffer(zeros: m * n)
        gemm(.none, .none, m: m, n: n, k: k, alpha: 1, a: a.c, lda: k, b: b.c, ldb: n, beta: beta, c: c.p, ldc: n,
             precision: precision)
        return c.array
    }

    private func totals(_ kernel: GemmProfile.Kernel) -> GemmProfile.Totals {
        GemmProfile.byKernel().first { $0.kernel == kernel }!.totals
    }

    func testCountsEachProductUnderItsKernelOnlyWhileEnabled() {
        GemmProfile.reset()
        let unprofiled = product(300, 200, 100, beta: 0.5)
        XCTAssertEqual(GemmProfile.total, GemmProfile.Totals(), "off: nothing counted")

        GemmProfile.enabled = true
        // beta 0.5 keeps both on sgemm, whatever their size.
        XCTAssertEqual(product(300, 200, 100, beta: 0.5), unprofiled, "profiling changes no bit of the product")
        _ = product(40, 30, 20, beta: 0.5)
        var expected: [GemmProfile.Kernel: (calls: Int, flops: Double)] = [.sgemm: (2, 2.0 * (300 * 200 * 100 + 40 * 30 * 20))]
        if SmallGemm.available {
            _ = product(65, 65, 64, beta: 0)  // attention-head size: libxsmm
            expected[.libxsmm] = (1, 2.0 * 65 * 65 * 64)
        }
        if MatmulPrecision.bf16Supported {
            _ = product(64, 64, 64, beta: 0, precision: .bf16)
            expected[.bf16] = (1, 2.0 * 64 * 64 * 64)
        }
        if PanelGemm.supported {
            let m = 20, n = 96, k = 48
            let w = Buffer(random: k * n, seed: 3), packed = Buffer(zeros: PanelGemm.packedCount(k: k, n: n))
            panelPack(packed.p, .none, w: w.c, ldw: n, k: k, n: n)
            let a = Buffer(random: m * k, seed: 4), c = Buffer(zeros: m * n)
            panelGemm(c: c.p, ldc: n, a: a.c, lda: k, packed: packed.c, m: m, n: n, k: k)
            expected[.panel] = (1, 2.0 * Double(m * n * k))
        }
        GemmProfile.enabled = false
        _ = product(50, 50, 50, beta: 0.5)

        for kernel in GemmProfile.Kernel.allCases {
            let t = totals(kernel), e = expected[kernel] ?? (0, 0)
            XCTAssertEqual(t.calls, e.calls, "\(kernel.name) calls")
            XCTAssertEqual(t.flops, e.flops, "\(kernel.name) FLOPs")
            if e.calls > 0 { XCTAssertGreaterThan(t.seconds, 0, "\(kernel.name) time") } else { XCTAssertEqual(t.seconds, 0) }
        }
        let all = GemmProfile.total
        XCTAssertEqual(all.calls, expected.values.reduce(0) { $0 + $1.calls })
        XCTAssertEqual(all.flops, expected.values.reduce(0) { $0 + $1.flops })

        GemmProfile.reset()
        XCTAssertEqual(GemmProfile.total, GemmProfile.Totals(), "reset zeroes every counter")
    }
}
