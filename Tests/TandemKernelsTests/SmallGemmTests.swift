import XCTest
import TandemKernels
import TandemTestSupport

/// libxsmm's products (`SmallGemm.libxsmm`, what `gemm` runs attention's per-head products on) called
/// directly, at any size, against the Double reference: within 1e-5 of |alpha| sum_p |a b| + |beta c|
/// (fp32 summation in another order is about 1e-7 of that; a wrong transpose, stride, alpha or beta is
/// off by the whole magnitude). `GemmTests.testSmallProductsOnLibxsmmMatchReference` checks the routing.
final class SmallGemmTests: KernelTestCase {
    private let combos: [(Transpose, Transpose)] = [(.none, .none), (.none, .transpose), (.transpose, .none), (.transpose, .transpose)]

    override func setUpWithError() throws {
        try super.setUpWithError()
        try XCTSkipUnless(SmallGemm.available, "libxsmm has no JIT for this CPU")
    }

    private func stored(_ t: Transpose, _ r: Int, _ c: Int) -> (Int, Int) { t == .none ? (r, c) : (c, r) }

    func testMatchesReferenceAtAnySize() {
        // 1x1x1, odd sizes that leave partial vectors (7x13x5, 13x70x31), attention heads, and a Linear-sized
        // 300x40x260; leading dimensions past the width on every other shape.
        let shapes = [(1, 1, 1), (7, 13, 5), (65, 65, 64), (128, 64, 128), (13, 70, 31), (300, 40, 260)]
        let scalars: [(Float, Float)] = [(1, 0), (0.125, 0), (1, 1), (-0.75, 1)]
        for (s, (m, n, k)) in shapes.enumerated() {
            let pad = s % 2 == 0 ? 0 : 3
            for (ta, tb) in combos {
                for (alpha, beta) in scalars {
                    let (ar, ac) = stored(ta, m, k), (br, bc) = stored(tb, k, n)
                    let lda = ac + pad, ldb = bc + pad, ldc = n + pad
                    let a = Buffer(random: ar * lda, seed: 31), b = Buffer(random: br * ldb, seed: 32)
                    let c0 = GradCheck.random(count: m * ldc, seed: 33)
                    let x = Buffer(c0), reference = Buffer(c0), magnitude = Buffer(zeros: m * ldc)
                    let label = "\(ta)\(tb) \(m)x\(n)x\(k) alpha \(alpha) beta \(beta) pad \(pad)"
                    XCTAssertTrue(SmallGemm.libxsmm(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb,
                                                    beta: beta, c: x.p, ldc: ldc), label)
                    gemmReference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: beta,
                                  c: reference.p, ldc: ldc)
                    let absA = Buffer(a.array.map(abs)), absB = Buffer(b.array.map(abs))
                    gemmReference(ta, tb, m: m, n: n, k: k, alpha: abs(alpha), a: absA.c, lda: lda, b: absB.c, ldb: ldb,
                                  beta: 0, c: magnitude.p, ldc: ldc)
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<ldc {
                            let e = i * ldc + j
                            if j >= n {
                                XCTAssertEqual(x.p[e].bitPattern, c0[e].bitPattern, "\(label): padding changed at (\(i), \(j))")
                                continue
                            }
                            let bound = Double(magnitude.p[e]) + Double(abs(beta * c0[e])) + 1e-30
                            worst = max(worst, abs(Double(x.p[e]) - Double(reference.p[e])) / bound)
                        }
                    }
                    XCTAssertLessThan(worst, 1e-5, label)
                }
            }
        }
    }

    /// libxsmm 1.17 takes beta 0 or 1 only: any other is refused, C stays as it was, and `gemm` gives the
    /// product to sgemm instead.
    func testOtherBetaIsRefusedAndGemmFallsBackToSgemm() {
        let m = 64, n = 64, k = 64
        let a = Buffer(random: m * k, seed: 1), b = Buffer(random: k * n, seed: 2), c0 = GradCheck.random(count: m * n, seed: 3)
        let c = Buffer(c0), viaGemm = Buffer(c0), sgemm = Buffer(c0)
        XCTAssertFalse(SmallGemm.libxsmm(.none, .none, m: m, n: n, k: k, alpha: 1, a: a.c, lda: k, b: b.c, ldb: n,
                                         beta: 0.5, c: c.p, ldc: n))
        XCTAssertEqual(c.array.map(\.bitPattern), c0.map(\.bitPattern))
        gemm(.none, .none, m: m, n: n, k: k, alpha: 1, a: a.c, lda: k, b: b.c, ldb: n, beta: 0.5, c: viaGemm.p, ldc: n)
        BLAS.sgemm(.none, .none, m: m, n: n, k: k, a: a.c, lda: k, b: b.c, ldb: n, beta: 0.5, c: sgemm.p, ldc: n)
        XCTAssertEqual(viaGemm.array.map(\.bitPattern), sgemm.array.map(\.bitPattern))
    }

    /// The scratch for transposed B and for alpha is per thread: products on several threads at once agree
    /// with the same products on one.
    func testConcurrentCallersGetTheirOwnScratch() {
        let m = 128, n = 128, k = 64, count = 8
        let a = Buffer(random: count * m * k, seed: 4), b = Buffer(random: count * n * k, seed: 5)
        let serial = Buffer(zeros: count * m * n), parallel = Buffer(zeros: count * m * n)
        let (ap, bp, sp, pp) = (a.c, b.c, serial.p, parallel.p)
        for i in 0..<count {
            SmallGemm.libxsmm(.none, .transpose, m: m, n: n, k: k, alpha: 0.125, a: ap + i * m * k, lda: k,
                              b: bp + i * n * k, ldb: k, beta: 0, c: sp + i * m * n, ldc: n)
        }
        DispatchQueue.concurrentPerform(iterations: count) { i in
            SmallGemm.libxsmm(.none, .transpose, m: m, n: n, k: k, alpha: 0.125, a: ap + i * m * k, lda: k,
                              b: bp + i * n * k, ldb: k, beta: 0, c: pp + i * m * n, ldc: n)
        }
        XCTAssertEqual(serial.array.map(\.bitPattern), parallel.array.map(\.bitPattern))
    }
}
