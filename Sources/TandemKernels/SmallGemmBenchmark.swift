import CBLAS
import CSmallGemm

/// `tandem bench kernels --sections libraries`: libxsmm's JIT kernels (`SmallGemm`) next to
/// `cblas_sgemm` at attention's per-head products and small Linears, and `gemm`, which runs the first on
/// libxsmm and the second on sgemm. The full comparison with oneDNN and the bf16 libraries, whose code
/// lost and was removed, is recorded in docs/performance.md, "libxsmm and oneDNN against OpenBLAS and our
/// bf16 GEMM". Every side of a row runs in turn, one repeat each, after one warm-up each (which also
/// generates libxsmm's kernels).
extension KernelBenchmark {
    /// Runs `sides` in turn `repeats` times each after one warm-up of each.
    static func interleaved(repeats: Int, _ sides: [() -> Void]) -> [Timing] {
        for side in sides { side() }
        var timings = Array(repeating: Timing(seconds: []), count: sides.count)
        for _ in 0..<repeats {
            for (i, side) in sides.enumerated() { timings[i].seconds.append(time(side)) }
        }
        return timings
    }

    /// The largest |x - reference| over the largest |reference| of `count` floats.
    static func relativeError(_ x: UnsafePointer<Float>, _ reference: UnsafePointer<Float>, count: Int) -> Double {
        var diff = 0.0, size = 0.0
        for i in 0..<count {
            diff = max(diff, abs(Double(x[i]) - Double(reference[i])))
            size = max(size, abs(Double(reference[i])))
        }
        return size == 0 ? diff : diff / size
    }

    static func scientific(_ x: Double) -> String {
        if x == 0 { return "0" }
        var e = 0, m = x
        while m >= 10 { m /= 10; e += 1 }
        while m < 1 { m *= 10; e -= 1 }
        return format(m, 1) + "e" + String(e)
    }

    /// One product as a call site makes it: `count` times (heads) with operands at a + h strideA etc.
    struct LibraryProduct {
        var label: String, ta: Transpose, tb: Transpose, m: Int, n: Int, k: Int, alpha: Float, beta: Float
        var lda: Int, strideA: Int, ldb: Int, strideB: Int, ldc: Int, strideC: Int, count: Int
        var aCount: Int { (count - 1) * strideA + (ta == .none ? m : k) * lda }
        var bCount: Int { (count - 1) * strideB + (tb == .none ? k : n) * ldb }
        var cCount: Int { (count - 1) * strideC + m * ldc }
        var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(count) }
    }

    /// The six per-head products of one layer's attention over one sequence of T tokens, NH heads of HS,
    /// as `attentionForward` and `attentionBackward` call them: heads are column blocks of (T, NH HS)
    /// buffers, probabilities one (T, T) block per head; alpha and beta as there.
    static func attentionProducts(_ model: String, T: Int, NH: Int, HS: Int) -> [LibraryProduct] {
        let C = NH * HS, TT = T * T, s = 1 / Float(HS).squareRoot()
        func p(_ what: String, _ ta: Transpose, _ tb: Transpose, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ beta: Float,
               _ a: (Int, Int), _ b: (Int, Int), _ c: (Int, Int)) -> LibraryProduct {
            LibraryProduct(label: "\(model) \(what) x\(NH)", ta: ta, tb: tb, m: m, n: n, k: k, alpha: alpha, beta: beta,
                           lda: a.0, strideA: a.1, ldb: b.0, strideB: b.1, ldc: c.0, strideC: c.1, count: NH)
        }
        let head = (C, HS), probs = (T, TT)
        return [
            p("QK^T", .none, .transpose, T, T, HS, s, 0, head, head, probs),
            p("PV", .none, .none, T, HS, T, 1, 0, probs, head, head),
            p("dV=P^T dO", .transpose, .none, T, HS, T, 1, 1, probs, head, head),
            p("dP=dO V^T", .none, .transpose, T, T, HS, 1, 0, head, head, probs),
            p("dQ=dS K", .none, .none, T, HS, T, s, 1, probs, head, head),
            p("dK=dS^T Q", .transpose, .none, T, HS, T, s, 1, probs, head, head),
        ]
    }

    /// A Linear of C inputs and OC outputs over N rows: forward (NT, bias prefilled so beta 1), input
    /// gradient (NN, beta 1) and weight gradient (TN, beta 1), as `linearForward` / `linearBackward`.
    static func linearProducts(_ model: String, N: Int, C: Int, OC: Int) -> [LibraryProduct] {
        let layer = "\(model) \(C)->\(OC)"
        func p(_ what: String, _ ta: Transpose, _ tb: Transpose, _ m: Int, _ n: Int, _ k: Int, _ lda: Int, _ ldb: Int) -> LibraryProduct {
            LibraryProduct(label: layer + " " + what, ta: ta, tb: tb, m: m, n: n, k: k, alpha: 1, beta: 1,
                           lda: lda, strideA: 0, ldb: ldb, strideB: 0, ldc: n, strideC: 0, count: 1)
        }
        return [
            p("fwd", .none, .transpose, N, OC, C, C, C),
            p("dX", .none, .none, N, C, OC, OC, C),
            p("dW", .transpose, .none, OC, C, N, OC, C),
        ]
    }

    static func header(_ columns: [(String, Int)]) -> String { columns.map { pad($0.0, $0.1) }.joined() }

    // MARK: - fp32

    static func benchmarkLibraryGemm(repeats: Int, log: (String) -> Void) {
        log("")
        let xsmm = SmallGemm.available
        log("fp32 small products: cblas_sgemm against libxsmm's JIT kernel for the shape and gemm (libxsmm for")
        log("SmallGemm's class, else sgemm), row-major, per head as attention calls them; GFLOP/s median (best) of")
        log("\(repeats); err = max |libxsmm - sgemm| / max |sgemm|")
        log(xsmm ? "libxsmm \(String(cString: tandem_xsmm_version())) target \(String(cString: tandem_xsmm_arch()))"
                 : "libxsmm: no JIT for this CPU, gemm is sgemm everywhere")
        log(header([("M x N x K", 14), ("op", 4), ("product", 28), ("cblas_sgemm", 16), ("libxsmm", 16), ("gemm", 16),
                    ("gemm runs on", 14), ("err", 0)]))
        var products: [LibraryProduct] = []
        products += attentionProducts("BERT-base", T: 128, NH: 12, HS: 64)
        products += attentionProducts("ViT-B/16", T: 197, NH: 12, HS: 64)
        products += attentionProducts("ViT-tiny-32", T: 65, NH: 3, HS: 64)
        for (model, pairs) in [("bert-tiny", [(128, 128), (128, 512), (512, 128)]),
                               ("bert-mini", [(256, 256), (256, 1024), (1024, 256)])] {
            for (c, oc) in pairs { products += linearProducts(model, N: 1024, C: c, OC: oc) }
        }
        for p in products {
            let a = filled(p.aCount, seed: 61), b = filled(p.bCount, seed: 62)
            let c0 = filled(p.cCount, seed: 63), c = filled(p.cCount, seed: 63), reference = filled(p.cCount, seed: 63)
            defer { [a, b, c0, c, reference].forEach(AlignedMemory.deallocate) }
            func sgemm() {
                for h in 0..<p.count {
                    BLAS.sgemm(p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: p.alpha, a: a + h * p.strideA, lda: p.lda,
                               b: b + h * p.strideB, ldb: p.ldb, beta: p.beta, c: c + h * p.strideC, ldc: p.ldc)
                }
            }
            func libxsmm() -> Bool {
                var ok = true
                for h in 0..<p.count {
                    ok = SmallGemm.libxsmm(p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: p.alpha, a: a + h * p.strideA,
                                           lda: p.lda, b: b + h * p.strideB, ldb: p.ldb, beta: p.beta,
                                           c: c + h * p.strideC, ldc: p.ldc) && ok
                }
                return ok
            }
            func viaGemm() {
                for h in 0..<p.count {
                    gemm(p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: p.alpha, a: a + h * p.strideA, lda: p.lda,
                         b: b + h * p.strideB, ldb: p.ldb, beta: p.beta, c: c + h * p.strideC, ldc: p.ldc)
                }
            }
            // Results from the same C: sgemm's, then libxsmm's, compared.
            c.update(from: c0, count: p.cCount)
            sgemm()
            reference.update(from: c, count: p.cCount)
            c.update(from: c0, count: p.cCount)
            let ok = xsmm && libxsmm()
            let error = ok ? scientific(relativeError(c, reference, count: p.cCount)) : "-"
            let sides: [() -> Void] = ok ? [sgemm, { _ = libxsmm() }, viaGemm] : [sgemm, viaGemm]
            let timings = interleaved(repeats: repeats, sides)
            let routed = SmallGemm.routes(p.ta, p.tb, m: p.m, n: p.n, k: p.k, beta: p.beta)
            log(pad("\(p.m)x\(p.n)x\(p.k)", 14) + pad(name(p.ta) + name(p.tb), 4) + pad(p.label, 28)
                + pad(rate(p.flops, timings[0]), 16) + pad(ok ? rate(p.flops, timings[1]) : "n/a", 16)
                + pad(rate(p.flops, timings[ok ? 2 : 1]), 16) + pad(routed ? "libxsmm" : "sgemm", 14) + error)
        }
    }
}
