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
