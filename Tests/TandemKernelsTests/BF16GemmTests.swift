import XCTest
import TandemKernels
import TandemTestSupport

/// The bf16 GEMM against a Double reference on bf16-rounded inputs (`bf16GemmReference`). Its error
/// against that reference is only fp32 summation, about 1e-7 of sum |a b|; a wrong rounding (truncation,
/// or no rounding at all) is off by up to 2^-9 per input, so the 2e-6 bound catches it.
final class BF16GemmTests: KernelTestCase {
    private let combos: [(Transpose, Transpose)] = [(.none, .none), (.none, .transpose), (.transpose, .none), (.transpose, .transpose)]

    override func setUpWithError() throws {
        try super.setUpWithError()
        if name.contains("testRoundedToBF16") { return }
        try XCTSkipUnless(MatmulPrecision.bf16Supported, "this CPU has no AVX512_BF16: the bf16 GEMM cannot run here")
    }

    /// Stored (rows, cols) of an operand whose op() is (r, c).
    private func stored(_ t: Transpose, _ r: Int, _ c: Int) -> (Int, Int) { t == .none ? (r, c) : (c, r) }

    /// Runs `bf16Gemm` and the reference from the same C and checks every element against
    /// 2e-6 (|alpha| sum_p |a b| + |beta c|), and that C's padding columns are untouched.
    private func check(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int, alpha: Float, beta: Float,
                       pad: Int, file: StaticString = #filePath, line: UInt = #line) {
        let (ar, ac) = stored(ta, m, k), (br, bc) = stored(tb, k, n)
        let lda = ac + pad, ldb = bc + pad, ldc = n + pad
        let a = Buffer(random: ar * lda, seed: 11), b = Buffer(random: br * ldb, seed: 12)
        let c0 = GradCheck.random(count: m * ldc, seed: 13)
        let fast = Buffer(c0), reference = Buffer(c0), magnitude = Buffer(zeros: m * ldc)
        bf16Gemm(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: beta, c: fast.p, ldc: ldc)
        bf16GemmReference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: beta,
                          c: reference.p, ldc: ldc)
        let absA = Buffer(a.array.map(abs)), absB = Buffer(b.array.map(abs))
        bf16GemmReference(ta, tb, m: m, n: n, k: k, alpha: abs(alpha), a: absA.c, lda: lda, b: absB.c, ldb: ldb,
                          beta: 0, c: magnitude.p, ldc: ldc)
        let label = "\(ta)\(tb) \(m)x\(n)x\(k) alpha \(alpha) beta \(beta) pad \(pad)"
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<ldc {
                let x = i * ldc + j
                if j >= n {
                    XCTAssertEqual(fast.p[x].bitPattern, c0[x].bitPattern, "\(label): padding changed at (\(i), \(j))",
                                   file: file, line: line)
                    continue
                }
                let bound = Double(magnitude.p[x]) + Double(abs(beta * c0[x])) + 1e-30
                worst = max(worst, abs(Double(fast.p[x]) - Double(reference.p[x])) / bound)
            }
        }
        XCTAssertLessThan(worst, 2e-6, label, file: file, line: line)
    }

    func testMatchesReferenceOnRoundedInputs() {
        // k odd (5, 129, 31) leaves a half k-pair; 65, 197 and 37 leave partial 12-row and 32-column tiles.
        let shapes = [(1, 1, 1), (7, 13, 5), (65, 65, 64), (197, 37, 129), (13, 70, 31)]
        let scalars: [(Float, Float)] = [(1, 0), (1.5, 0.5), (-0.75, 1)]
        for (s, (m, n, k)) in shapes.enumerated() {
            for (ta, tb) in combos {
                for (alpha, beta) in scalars {
                    check(ta, tb, m: m, n: n, k: k, alpha: alpha, beta: beta, pad: s % 2 == 0 ? 0 : 3)
                }
            }
        }
    }

    func testDeepAndWideProductsCrossBlockBoundaries() {
        // K past one 768-deep block (beta applies once, later blocks add) and N past one 1024-wide block.
        check(.none, .transpose, m: 30, n: 40, k: 1600, alpha: 1, beta: 0.5, pad: 1)
        check(.transpose, .none, m: 20, n: 1100, k: 40, alpha: 2, beta: 0, pad: 2)
        check(.none, .none, m: 130, n: 50, k: 60, alpha: 1, beta: 1, pad: 0)
    }

    func testRoundsToNearestEvenIncludingTies() {
        // op(A) is a (rows, 1) column, B is [[1]]: C is A's values rounded to bf16 (8 significant bits).
        let ulp: Float = 1.0 / 128  // bf16's spacing in [1, 2)
        let cases: [(Float, Float)] = [
            (1 + ulp / 2, 1),                      // a tie: the even neighbour (1.0) wins
            (1 + 3 * ulp / 2, 1 + 2 * ulp),        // a tie rounding up to the even neighbour
            (-(1 + ulp / 2), -1),                  // ties are symmetric
            (1 + ulp / 2 + ulp / 4096, 1 + ulp),   // just above a tie rounds up (truncation gives 1.0)
            (1 + ulp / 2 - ulp / 4096, 1),         // just below rounds down
            (3 * ulp + 1, 1 + 3 * ulp),            // representable values pass unchanged
        ]
        let rows = 37  // past one 12-row tile and one 16-lane vector, so the packing's every path sees ties
        let values = (0..<rows).map { cases[$0 % cases.count].0 }
        let expected = (0..<rows).map { cases[$0 % cases.count].1 }
        let one = Buffer([1])
        for ta in [Transpose.none, .transpose] {
            let a = Buffer(values), c = Buffer(zeros: rows)
            // Stored (rows, 1) with lda 1, or its transpose (1, rows) with lda rows.
            bf16Gemm(ta, .none, m: rows, n: 1, k: 1, alpha: 1, a: a.c, lda: ta == .none ? 1 : rows, b: one.c, ldb: 1,
                     beta: 0, c: c.p, ldc: 1)
            XCTAssertEqual(c.array, expected, "op(A) \(ta)")
            // The same values as B's row (op(B) (1, n)): the B side's packing rounds alike.
            let cb = Buffer(zeros: rows)
            bf16Gemm(.none, ta, m: 1, n: rows, k: 1, alpha: 1, a: one.c, lda: 1, b: a.c, ldb: ta == .none ? rows : 1,
                     beta: 0, c: cb.p, ldc: rows)
            XCTAssertEqual(cb.array, expected, "op(B) \(ta)")
        }
        XCTAssertEqual(values.map(roundedToBF16), expected, "roundedToBF16")
    }

    func testRoundedToBF16() {
        XCTAssertEqual(roundedToBF16(1 + 1.0 / 256), 1)
        XCTAssertEqual(roundedToBF16(1 + 3.0 / 256), 1 + 2.0 / 128)
        XCTAssertEqual(roundedToBF16(.infinity), .infinity)
        XCTAssertEqual(roundedToBF16(-.infinity), -.infinity)
        XCTAssertTrue(roundedToBF16(.nan).isNaN)
        XCTAssertEqual(roundedToBF16(Float.leastNormalMagnitude / 2).bitPattern, Float(0).bitPattern, "denormals flush")
        XCTAssertEqual(roundedToBF16(-Float.leastNormalMagnitude / 2).bitPattern, (-Float(0)).bitPattern)
        XCTAssertEqual(roundedToBF16(Float.greatestFiniteMagnitude), .infinity, "overflow rounds to infinity")
    }

    func testBetaZeroIgnoresStaleOutput() {
        let m = 20, n = 40, k = 9
        let a = Buffer(random: m * k, seed: 1), b = Buffer(random: k * n, seed: 2)
        let c = Buffer([Float](repeating: .nan, count: m * n))
        bf16Gemm(.none, .none, m: m, n: n, k: k, alpha: 1, a: a.c, lda: k, b: b.c, ldb: n, beta: 0, c: c.p, ldc: n)
        XCTAssertFalse(c.array.contains { $0.isNaN })
        // k = 0: C = beta C, A and B unread.
        let d = Buffer([Float](repeating: 2, count: 4))
        bf16Gemm(.none, .none, m: 2, n: 2, k: 0, alpha: 1, a: a.c, lda: 1, b: b.c, ldb: 2, beta: 0.5, c: d.p, ldc: 2)
        XCTAssertEqual(d.array, [1, 1, 1, 1])
    }

    func testThreadSplitsAreBitIdentical() {
        // Above 2^22 multiply-adds `bf16Gemm` splits over BLAS.threads: along N when m <= n, else along M.
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        for (m, n, k) in [(100, 330, 130), (330, 100, 130)] {
            let a = Buffer(random: m * k, seed: 3), b = Buffer(random: n * k, seed: 4)
            let c0 = GradCheck.random(count: m * n, seed: 5)
            let one = Buffer(c0), two = Buffer(c0)
            BLAS.threads = 1
            bf16Gemm(.none, .transpose, m: m, n: n, k: k, alpha: 1, a: a.c, lda: k, b: b.c, ldb: k, beta: 1, c: one.p, ldc: n)
            BLAS.threads = 2
            XCTAssertEqual(BLAS.threads, 2, "OpenBLAS took 2 threads")
            bf16Gemm(.none, .transpose, m: m, n: n, k: k, alpha: 1, a: a.c, lda: k, b: b.c, ldb: k, beta: 1, c: two.p, ldc: n)
            XCTAssertEqual(one.array.map(\.bitPattern), two.array.map(\.bitPattern), "\(m)x\(n)x\(k)")
        }
    }

    func testGemmRoutesByPrecision() {
        func run(_ m: Int, _ n: Int, _ k: Int, _ product: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> [UInt32] {
            let a = Buffer(random: m * k, seed: 6), b = Buffer(random: k * n, seed: 7), c = Buffer(zeros: m * n)
            product(a.c, b.c, c.p)
            return c.array.map(\.bitPattern)
        }
        for (m, n, k) in [(65, 65, 64), (8, 8, 8)] {
            func viaGemm(_ p: MatmulPrecision) -> [UInt32] {
                run(m, n, k) { gemm(.none, .none, m: m, n: n, k: k, alpha: 1, a: $0, lda: k, b: $1, ldb: n, beta: 0, c: $2, ldc: n, precision: p) }
            }
            let sgemm = run(m, n, k) { BLAS.sgemm(.none, .none, m: m, n: n, k: k, a: $0, lda: k, b: $1, ldb: n, c: $2, ldc: n) }
            let bf16 = run(m, n, k) { bf16Gemm(.none, .none, m: m, n: n, k: k, alpha: 1, a: $0, lda: k, b: $1, ldb: n, beta: 0, c: $2, ldc: n) }
            let xsmm = run(m, n, k) {
                SmallGemm.libxsmm(.none, .none, m: m, n: n, k: k, alpha: 1, a: $0, lda: k, b: $1, ldb: n, beta: 0, c: $2, ldc: n)
            }
            let small = SmallGemm.routes(.none, .none, m: m, n: n, k: k, beta: 0)
            XCTAssertEqual(small, m == 65 && SmallGemm.available, "the libxsmm class")
            XCTAssertEqual(viaGemm(.fp32), small ? xsmm : sgemm, "fp32 is libxsmm in SmallGemm's class, else cblas_sgemm, bit for bit")
            let big = MatmulPrecision.usesBF16(m: m, n: n, k: k)
            XCTAssertEqual(big, m == 65, "the size rule")
            XCTAssertEqual(viaGemm(.bf16), big ? bf16 : sgemm, "bf16 routes \(m)x\(n)x\(k) to \(big ? "bf16Gemm" : "sgemm")")
        }
    }
}
