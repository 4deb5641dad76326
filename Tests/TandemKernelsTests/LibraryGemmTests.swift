import XCTest
import TandemKernels
import TandemTestSupport

/// libxsmm's and oneDNN's products (`LibraryGemm`, what `tandem bench kernels` measures) against the
/// Double references: fp32 within 1e-5 of |alpha| sum_p |a b| + |beta c| (fp32 summation in another
/// order is about 1e-7 of that; a wrong transpose, stride, alpha or beta is off by the whole magnitude),
/// bf16 against `bf16GemmReference` on bf16-rounded inputs within 2e-6 (as `BF16GemmTests`: truncating
/// instead of rounding to nearest even would exceed it).
final class LibraryGemmTests: KernelTestCase {
    private let combos: [(Transpose, Transpose)] = [(.none, .none), (.none, .transpose), (.transpose, .none), (.transpose, .transpose)]
    private let libraries: [LibraryGemm.Library] = [.libxsmm, .oneDNN]

    private func available(_ lib: LibraryGemm.Library) -> Bool {
        lib == .libxsmm ? LibraryGemm.xsmmAvailable : LibraryGemm.dnnlAvailable
    }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try XCTSkipUnless(LibraryGemm.xsmmAvailable || LibraryGemm.dnnlAvailable, "neither libxsmm nor oneDNN runs here")
    }

    private func stored(_ t: Transpose, _ r: Int, _ c: Int) -> (Int, Int) { t == .none ? (r, c) : (c, r) }

    /// Worst |x - reference| / (|alpha| sum |a b| + |beta c0|) over the m x n block; also checks padding untouched.
    private func worstError(_ x: Buffer, _ reference: Buffer, magnitude: Buffer, c0: [Float], beta: Float,
                            m: Int, n: Int, ldc: Int, label: String, file: StaticString, line: UInt) -> Double {
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<ldc {
                let e = i * ldc + j
                if j >= n {
                    XCTAssertEqual(x.p[e].bitPattern, c0[e].bitPattern, "\(label): padding changed at (\(i), \(j))",
                                   file: file, line: line)
                    continue
                }
                let bound = Double(magnitude.p[e]) + Double(abs(beta * c0[e])) + 1e-30
                worst = max(worst, abs(Double(x.p[e]) - Double(reference.p[e])) / bound)
            }
        }
        return worst
    }

    private func check(_ lib: LibraryGemm.Library, bf16: Bool, _ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int,
                       alpha: Float, beta: Float, pad: Int, file: StaticString = #filePath, line: UInt = #line) {
        let (ar, ac) = stored(ta, m, k), (br, bc) = stored(tb, k, n)
        let lda = ac + pad, ldb = bc + pad, ldc = n + pad
        let a = Buffer(random: ar * lda, seed: 31), b = Buffer(random: br * ldb, seed: 32)
        let c0 = GradCheck.random(count: m * ldc, seed: 33)
        let x = Buffer(c0), reference = Buffer(c0), magnitude = Buffer(zeros: m * ldc)
        let label = "\(lib.rawValue)\(bf16 ? " bf16" : "") \(ta)\(tb) \(m)x\(n)x\(k) alpha \(alpha) beta \(beta) pad \(pad)"
        let ok = bf16
            ? LibraryGemm.bf16Sgemm(lib, ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb,
                                    beta: beta, c: x.p, ldc: ldc)
            : LibraryGemm.sgemm(lib, ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb,
                                beta: beta, c: x.p, ldc: ldc)
        XCTAssertTrue(ok, "\(label): \(LibraryGemm.lastError(lib))", file: file, line: line)
        guard ok else { return }
        let absA = Buffer(a.array.map(abs)), absB = Buffer(b.array.map(abs))
        if bf16 {
            bf16GemmReference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: beta,
                              c: reference.p, ldc: ldc)
            bf16GemmReference(ta, tb, m: m, n: n, k: k, alpha: abs(alpha), a: absA.c, lda: lda, b: absB.c, ldb: ldb,
                              beta: 0, c: magnitude.p, ldc: ldc)
        } else {
            gemmReference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a.c, lda: lda, b: b.c, ldb: ldb, beta: beta,
                          c: reference.p, ldc: ldc)
            gemmReference(ta, tb, m: m, n: n, k: k, alpha: abs(alpha), a: absA.c, lda: lda, b: absB.c, ldb: ldb,
                          beta: 0, c: magnitude.p, ldc: ldc)
        }
        let worst = worstError(x, reference, magnitude: magnitude, c0: c0, beta: beta, m: m, n: n, ldc: ldc,
                               label: label, file: file, line: line)
        XCTAssertLessThan(worst, bf16 ? 2e-6 : 1e-5, label, file: file, line: line)
    }

    // The shapes of the benchmark's classes in small: attention heads (65x65x64, 128x64x128), odd sizes that
    // leave partial tiles (7x13x5, 13x70x31 with odd K), and 1x1x1; alpha as attention's 1/8, beta 0 and 1.
    private let shapes = [(1, 1, 1), (7, 13, 5), (65, 65, 64), (128, 64, 128), (13, 70, 31)]
    private let scalars: [(Float, Float)] = [(1, 0), (0.125, 0), (1, 1), (0.125, 1)]

    func testFP32MatchesReference() throws {
        for lib in libraries where available(lib) {
            for (s, (m, n, k)) in shapes.enumerated() {
                for (ta, tb) in combos {
                    for (alpha, beta) in scalars {
                        check(lib, bf16: false, ta, tb, m: m, n: n, k: k, alpha: alpha, beta: beta, pad: s % 2 == 0 ? 0 : 3)
                    }
                }
            }
        }
    }

    func testBF16MatchesReferenceOnRoundedInputs() throws {
        try XCTSkipUnless(MatmulPrecision.bf16Supported, "this CPU has no AVX512_BF16")
        for lib in libraries where available(lib) {
            for (s, (m, n, k)) in shapes.enumerated() {
                for (ta, tb) in combos {
                    for (alpha, beta) in [(Float(1), Float(0)), (1, 1), (0.125, 1)] {
                        check(lib, bf16: true, ta, tb, m: m, n: n, k: k, alpha: alpha, beta: beta, pad: s % 2 == 0 ? 0 : 3)
                    }
                }
            }
        }
    }

    /// Attention's heads as column blocks of (T, NH HS) buffers, probabilities one (T, T) block per head: the
    /// batched forms against the per-head reference.
    func testBatchedHeadsMatchPerHeadReference() {
        let T = 65, NH = 3, HS = 64, C = NH * HS
        let q = Buffer(random: T * C, seed: 41), k = Buffer(random: T * C, seed: 42)
        let c0 = GradCheck.random(count: NH * T * T, seed: 43)
        for lib in libraries where available(lib) {
            for beta: Float in [0, 1] {
                let x = Buffer(c0), reference = Buffer(c0), magnitude = Buffer(zeros: NH * T * T)
                let absQ = Buffer(q.array.map(abs)), absK = Buffer(k.array.map(abs))
                let ok = LibraryGemm.sgemmBatch(lib, .none, .transpose, m: T, n: T, k: HS, alpha: 0.125, a: q.c, lda: C,
                                                strideA: HS, b: k.c, ldb: C, strideB: HS, beta: beta, c: x.p, ldc: T,
                                                strideC: T * T, count: NH)
                XCTAssertTrue(ok, "\(lib.rawValue): \(LibraryGemm.lastError(lib))")
                for h in 0..<NH {
                    gemmReference(.none, .transpose, m: T, n: T, k: HS, alpha: 0.125, a: q.c + h * HS, lda: C,
                                  b: k.c + h * HS, ldb: C, beta: beta, c: reference.p + h * T * T, ldc: T)
                    gemmReference(.none, .transpose, m: T, n: T, k: HS, alpha: 0.125, a: absQ.c + h * HS, lda: C,
                                  b: absK.c + h * HS, ldb: C, beta: 0, c: magnitude.p + h * T * T, ldc: T)
                }
                let worst = worstError(x, reference, magnitude: magnitude, c0: c0, beta: beta, m: NH * T, n: T, ldc: T,
                                       label: "\(lib.rawValue) batch beta \(beta)", file: #filePath, line: #line)
                XCTAssertLessThan(worst, 1e-5, "\(lib.rawValue) batch beta \(beta)")
            }
        }
    }

    /// libxsmm 1.17 takes beta 0 or 1 only: any other is refused and C stays as it was.
    func testLibxsmmRefusesOtherBetaAndLeavesCUntouched() throws {
        try XCTSkipUnless(LibraryGemm.xsmmAvailable, "libxsmm has no JIT for this CPU")
        let a = Buffer(random: 6, seed: 1), b = Buffer(random: 6, seed: 2), c0: [Float] = [1, 2, 3, 4]
        let c = Buffer(c0)
        XCTAssertFalse(LibraryGemm.sgemm(.libxsmm, .none, .none, m: 2, n: 2, k: 3, alpha: 1, a: a.c, lda: 3, b: b.c, ldb: 2,
                                         beta: 0.5, c: c.p, ldc: 2))
        XCTAssertEqual(c.array, c0)
        XCTAssertTrue(LibraryGemm.lastError(.libxsmm).contains("beta"))
    }
}
