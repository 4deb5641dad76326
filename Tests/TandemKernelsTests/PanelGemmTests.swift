import XCTest
import TandemKernels
import TandemTestSupport

/// `panelGemm` on packed W against its Double reference on the unpacked W: both layouts of W, row counts
/// around the 12-row tile (1, a tile and a tail, several chunks), widths with a full 32-column panel, a
/// 16-lane half and a masked tail, strided A and C rows, and any split of the panels across threads.
final class PanelGemmTests: KernelTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(PanelGemm.supported, "panelGemm needs AVX-512")
    }

    /// C (m, n) with row stride n + 3, prefilled, after C += A op(W), fast and reference.
    private func product(_ transW: Transpose, m: Int, n: Int, k: Int, threads: Int = 1) -> (fast: [Float], reference: [Float]) {
        let lda = k + 5, ldc = n + 3, ldw = (transW == .none ? n : k) + 2
        let a = Buffer(random: m * lda, seed: 1)
        let w = Buffer(random: (transW == .none ? k : n) * ldw, seed: 2, scale: 0.3)
        let c0 = GradCheck.random(count: m * ldc, seed: 3)
        let fast = Buffer(c0), reference = Buffer(c0)
        let packed = Buffer(zeros: PanelGemm.packedCount(k: k, n: n))
        panelPack(packed.p, transW, w: w.c, ldw: ldw, k: k, n: n)
        let saved = BLAS.threads
        BLAS.threads = threads
        panelGemm(c: fast.p, ldc: ldc, a: a.c, lda: lda, packed: packed.c, m: m, n: n, k: k)
        BLAS.threads = saved
        panelGemmReference(c: reference.p, ldc: ldc, a: a.c, lda: lda, transW, w: w.c, ldw: ldw, m: m, n: n, k: k)
        return (fast.array, reference.array)
    }

    func testMatchesReference() {
        for transW in [Transpose.none, .transpose] {
            for m in [1, 5, 12, 13, 20, 31] {
                for n in [7, 16, 19, 32, 76, 97] {
                    let k = 23
                    let (fast, reference) = product(transW, m: m, n: n, k: k)
                    assertClose(fast, reference, atol: 1e-5, rtol: 1e-5, "\(transW) m \(m) n \(n) k \(k)")
                }
            }
        }
    }

    /// Two threads split the panels; every element is the same sum, so the bits are those of one thread.
    func testThreadsGiveTheSameBits() {
        let one = product(.transpose, m: 20, n: 650, k: 130, threads: 1).fast
        let two = product(.transpose, m: 20, n: 650, k: 130, threads: 2)
        XCTAssertEqual(one, two.fast)
        assertClose(two.fast, two.reference, atol: 1e-4, rtol: 1e-5, "two threads")
    }
}
