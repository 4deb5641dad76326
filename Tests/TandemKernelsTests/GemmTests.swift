import XCTest
import TandemKernels
import TandemTestSupport

final class GemmTests: KernelTestCase {
    private let combos: [(Transpose, Transpose)] = [(.none, .none), (.none, .transpose), (.transpose, .none), (.transpose, .transpose)]

    /// Stored (rows, cols) of an operand whose op() is (r, c).
    private func stored(_ t: Transpose, _ r: Int, _ c: Int) -> (Int, Int) { t == .none ? (r, c) : (c, r) }

    func testGemmMatchesReferenceForAllTransposesWithStrides() {
        let m = 5, n = 7, k = 3
        for (ta, tb) in combos {
            let (ar, ac) = stored(ta, m, k), (br, bc) = stored(tb, k, n)
            let lda = ac + 2, ldb = bc + 1, ldc = n + 3
            let a = Buffer(random: ar * lda, seed: 1), b = Buffer(random: br * ldb, seed: 2)
            let c0 = GradCheck.random(count: m * ldc, seed: 3)
            let fast = Buffer(c0), reference = Buffer(c0)
            gemm(ta, tb, m: m, n: n, k: k, alpha: 1.5, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: 0.5, c: fast.p, ldc: ldc)
            gemmReference(ta, tb, m: m, n: n, k: k, alpha: 1.5, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: 0.5,
                          c: reference.p, ldc: ldc)
            assertClose(fast.array, reference.array, atol: 1e-5, rtol: 1e-5, "gemm \(ta) \(tb)")
        }
    }

    /// `gemm`'s fp32 products of attention-head size run on libxsmm (`SmallGemm`): every transpose, the
    /// alphas and betas attention uses, strided heads, against the Double reference; beta 0 ignores NaN in C.
    func testSmallProductsOnLibxsmmMatchReference() throws {
        try XCTSkipUnless(SmallGemm.available, "libxsmm has no JIT for this CPU: small products stay on sgemm")
        for (m, n, k) in [(65, 65, 64), (65, 64, 65), (128, 128, 64), (128, 64, 128), (197, 197, 64), (32, 256, 33),
                          (1024, 128, 128), (512, 128, 1024), (300, 100, 700)] {
            for (ta, tb) in combos {
                for (alpha, beta) in [(Float(1), Float(0)), (0.125, 0), (1, 1), (0.125, 1)] {
                    let (ar, ac) = stored(ta, m, k), (br, bc) = stored(tb, k, n)
                    let lda = ac + 5, ldb = bc + 3, ldc = n + 1
                    let a = Buffer(random: ar * lda, seed: 4), b = Buffer(random: br * ldb, seed: 5)
                    var c0 = GradCheck.random(count: m * ldc, seed: 6)
                    if beta == 0 { c0 = c0.map { _ in .nan } }
                    let fast = Buffer(c0), reference = Buffer(c0)
                    let label = "\(m)x\(n)x\(k) \(ta) \(tb) alpha \(alpha) beta \(beta)"
                    XCTAssertEqual(SmallGemm.routes(ta, tb, m: m, n: n, k: k, beta: beta), tb == .none || m >= 128, label)
                    gemm(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: beta, c: fast.p, ldc: ldc)
                    gemmReference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: beta,
                                  c: reference.p, ldc: ldc)
                    // Padding columns past n keep their old values (NaN included: compared by bits).
                    for i in 0..<m {
                        for j in n..<ldc { XCTAssertEqual(fast.p[i * ldc + j].bitPattern, c0[i * ldc + j].bitPattern, label) }
                    }
                    let inside = (0..<m).flatMap { i in (0..<n).map { i * ldc + $0 } }
                    assertClose(inside.map { fast.p[$0] }, inside.map { reference.p[$0] }, atol: 1e-4, rtol: 1e-5, label)
                }
            }
        }
        // Outside the class: beta 0.5 (libxsmm takes 0 or 1 only), 1-row and 16-wide products, wider than
        // 256 with n above 128, m or k past 1024.
        XCTAssertFalse(SmallGemm.routes(.none, .none, m: 64, n: 64, k: 64, beta: 0.5))
        XCTAssertFalse(SmallGemm.routes(.none, .transpose, m: 1, n: 65, k: 64, beta: 0))
        XCTAssertFalse(SmallGemm.routes(.none, .none, m: 64, n: 16, k: 64, beta: 0))
        XCTAssertFalse(SmallGemm.routes(.none, .none, m: 257, n: 129, k: 64, beta: 0))
        XCTAssertFalse(SmallGemm.routes(.none, .transpose, m: 1024, n: 512, k: 128, beta: 1))
        XCTAssertFalse(SmallGemm.routes(.none, .none, m: 1025, n: 128, k: 128, beta: 1))
        XCTAssertFalse(SmallGemm.routes(.transpose, .none, m: 128, n: 128, k: 2048, beta: 1))
    }

    func testBetaZeroIgnoresStaleOutput() {
        let a = Buffer(random: 6, seed: 1), b = Buffer(random: 6, seed: 2)
        let c = Buffer([Float](repeating: .nan, count: 4))
        gemm(.none, .none, m: 2, n: 2, k: 3, alpha: 1, a: a.c, lda: 3, b: b.c, ldb: 2, beta: 0, c: c.p, ldc: 2)
        XCTAssertFalse(c.array.contains { $0.isNaN })
    }

    func testGemmBackwardMatchesReference() {
        let m = 4, n = 5, k = 3
        for (ta, tb) in combos {
            let (ar, ac) = stored(ta, m, k), (br, bc) = stored(tb, k, n)
            let a = Buffer(random: ar * ac, seed: 4), b = Buffer(random: br * bc, seed: 5)
            let dc = Buffer(random: m * n, seed: 6)
            let da0 = GradCheck.random(count: ar * ac, seed: 7), db0 = GradCheck.random(count: br * bc, seed: 8)
            let da = Buffer(da0), db = Buffer(db0), daRef = Buffer(da0), dbRef = Buffer(db0)
            gemmBackward(ta, tb, m: m, n: n, k: k, a: a.c, lda: ac, b: b.c, ldb: bc, dc: dc.c, lddc: n,
                         da: da.p, ldda: ac, db: db.p, lddb: bc)
            gemmBackwardReference(ta, tb, m: m, n: n, k: k, a: a.c, lda: ac, b: b.c, ldb: bc, dc: dc.c, lddc: n,
                                  da: daRef.p, ldda: ac, db: dbRef.p, lddb: bc)
            assertClose(da.array, daRef.array, atol: 1e-5, rtol: 1e-5, "dA \(ta) \(tb)")
            assertClose(db.array, dbRef.array, atol: 1e-5, rtol: 1e-5, "dB \(ta) \(tb)")
        }
    }

    func testGemmBackwardGradients() {
        let m = 3, n = 4, k = 5
        for (ta, tb) in combos {
            let (ar, ac) = stored(ta, m, k), (br, bc) = stored(tb, k, n)
            let a0 = GradCheck.random(count: ar * ac, seed: 9), b0 = GradCheck.random(count: br * bc, seed: 10)
            func forward(_ a: [Float], _ b: [Float]) -> [Float] {
                let out = Buffer(zeros: m * n)
                gemm(ta, tb, m: m, n: n, k: k, alpha: 1, a: Buffer(a).c, lda: ac, b: Buffer(b).c, ldb: bc,
                     beta: 0, c: out.p, ldc: n)
                return out.array
            }
            gradCheck("gemm dA \(ta) \(tb)", x: a0, outputCount: m * n, forward: { forward($0, b0) }) { a, dout, da in
                let g = Buffer(da)
                gemmBackward(ta, tb, m: m, n: n, k: k, a: Buffer(a).c, lda: ac, b: Buffer(b0).c, ldb: bc,
                             dc: Buffer(dout).c, lddc: n, da: g.p, ldda: ac, db: nil, lddb: bc)
                da = g.array
            }
            gradCheck("gemm dB \(ta) \(tb)", x: b0, outputCount: m * n, forward: { forward(a0, $0) }) { b, dout, db in
                let g = Buffer(db)
                gemmBackward(ta, tb, m: m, n: n, k: k, a: Buffer(a0).c, lda: ac, b: Buffer(b).c, ldb: bc,
                             dc: Buffer(dout).c, lddc: n, da: nil, ldda: ac, db: g.p, lddb: bc)
                db = g.array
            }
        }
    }
}
