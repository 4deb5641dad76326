import CBF16Gemm
import CBLAS

/// `tandem bench kernels`' comparison of libxsmm and oneDNN with what Tandem uses (docs/performance.md,
/// "libxsmm and oneDNN against OpenBLAS and our bf16 GEMM"): fp32 attention heads and small Linears
/// against `cblas_sgemm`, bf16 Linears against `tandem_bf16_sgemm`. Every side of a row runs in turn,
/// one repeat each, after one warm-up each (which also creates the libraries' kernels and primitives).
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
        let xsmm = LibraryGemm.xsmmAvailable, dnnl = LibraryGemm.dnnlAvailable
        log("fp32 small products: cblas_sgemm against libxsmm and oneDNN, row-major, as the call sites make them;")
        log("GFLOP/s median (best) of \(repeats); \"xsmm\" calls the JIT kernel per head (libxsmm's registry finds it),")
        log("\"xsmm batch\" dispatches once for all heads, \"dnnl\" runs one cached 2-D matmul per head, \"dnnl batch\"")
        log("one 3-D matmul over the heads; err = max |x - sgemm| / max |sgemm|")
        log((xsmm ? LibraryGemm.xsmmDescription : "libxsmm: no JIT for this CPU") + "; oneDNN "
            + (dnnl ? LibraryGemm.dnnlVersion : "unavailable: " + LibraryGemm.lastError(.oneDNN)))
        log(header([("M x N x K", 14), ("op", 4), ("product", 28), ("cblas_sgemm", 16), ("xsmm", 16), ("xsmm batch", 16),
                    ("dnnl", 16), ("dnnl batch", 16), ("err xsmm/dnnl", 0)]))
        var implementations: Set<String> = []
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
            func single(_ lib: LibraryGemm.Library) -> Bool {
                var ok = true
                for h in 0..<p.count {
                    ok = LibraryGemm.sgemm(lib, p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: p.alpha, a: a + h * p.strideA,
                                           lda: p.lda, b: b + h * p.strideB, ldb: p.ldb, beta: p.beta,
                                           c: c + h * p.strideC, ldc: p.ldc) && ok
                }
                return ok
            }
            func batch(_ lib: LibraryGemm.Library) -> Bool {
                LibraryGemm.sgemmBatch(lib, p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: p.alpha, a: a, lda: p.lda,
                                       strideA: p.strideA, b: b, ldb: p.ldb, strideB: p.strideB, beta: p.beta, c: c,
                                       ldc: p.ldc, strideC: p.strideC, count: p.count)
            }
            // Results from the same C: sgemm's, then each library's, compared.
            func fresh() { c.update(from: c0, count: p.cCount) }
            fresh(); sgemm(); reference.update(from: c, count: p.cCount)
            var errors: [String] = []
            var usable: [Bool] = []
            for (lib, available) in [(LibraryGemm.Library.libxsmm, xsmm), (.oneDNN, dnnl)] {
                fresh()
                let ok = available && single(lib)
                if lib == .oneDNN && ok { implementations.insert(LibraryGemm.dnnlLastImplementation) }
                usable.append(ok)
                var worst = ok ? relativeError(c, reference, count: p.cCount) : .nan
                if p.count > 1 {
                    fresh()
                    let okBatch = available && batch(lib)
                    if lib == .oneDNN && okBatch { implementations.insert(LibraryGemm.dnnlLastImplementation + " (batch)") }
                    usable.append(okBatch)
                    if okBatch { worst = max(worst.isNaN ? 0 : worst, relativeError(c, reference, count: p.cCount)) }
                } else {
                    usable.append(false)
                }
                errors.append(worst.isNaN ? "-" : scientific(worst))
            }
            var sides: [() -> Void] = [sgemm]
            let libs: [(LibraryGemm.Library, Bool)] = [(.libxsmm, false), (.libxsmm, true), (.oneDNN, false), (.oneDNN, true)]
            for (i, (lib, isBatch)) in libs.enumerated() where usable[i] {
                if isBatch { sides.append { _ = batch(lib) } } else { sides.append { _ = single(lib) } }
            }
            let timings = interleaved(repeats: repeats, sides)
            var line = pad("\(p.m)x\(p.n)x\(p.k)", 14) + pad(name(p.ta) + name(p.tb), 4) + pad(p.label, 28)
                + pad(rate(p.flops, timings[0]), 16)
            var t = 1
            for i in 0..<4 {
                if usable[i] { line += pad(rate(p.flops, timings[t]), 16); t += 1 } else {
                    line += pad(i % 2 == 1 && p.count == 1 ? "" : "n/a", 16)
                }
            }
            log(line + errors.joined(separator: " / "))
            for (i, (lib, isBatch)) in libs.enumerated() where !usable[i] && (!isBatch || p.count > 1) {
                let available = lib == .libxsmm ? xsmm : dnnl
                if available { log("  \(lib.rawValue)\(isBatch ? " batch" : ""): \(LibraryGemm.lastError(lib))") }
            }
        }
        if !implementations.isEmpty { log("oneDNN fp32 matmul implementations: " + implementations.sorted().joined(separator: ", ")) }
    }

    // MARK: - bf16

    /// tandem_bf16_sgemm (what `bf16Gemm` runs on one thread) against oneDNN's bf16 matmul fed by its
    /// f32 -> bf16 reorders and libxsmm's bf16 kernel fed by our conversion: fp32 in, fp32 out on every
    /// side, so each pays for rounding its inputs, at BERT-base's and ViT-B/16's Linear products.
    static func benchmarkLibraryBF16Gemm(repeats: Int, log: (String) -> Void) {
        log("")
        guard MatmulPrecision.bf16Supported else {
            log("bf16 libraries: skipped, this CPU has no AVX512_BF16")
            return
        }
        let xsmm = LibraryGemm.xsmmAvailable, dnnl = LibraryGemm.dnnlAvailable
        log("bf16 products (fp32 in, inputs rounded to bf16, fp32 accumulation and out): tandem_bf16_sgemm against")
        log("oneDNN's bf16 matmul (+ its two f32->bf16 reorders) and libxsmm's bf16 kernel (+ conversion to its layout);")
        log("GFLOP/s median (best) of \(repeats); err = max |x - reference| / max |reference|, reference: Double sums of")
        log("the bf16-rounded inputs")
        log(header([("M x N x K", 18), ("op", 4), ("product", 26), ("tandem bf16", 18), ("oneDNN bf16", 18),
                    ("libxsmm bf16", 18), ("err ours/dnnl/xsmm", 0)]))
        var products: [LibraryProduct] = []
        for (model, tokens) in [("BERT-base", 512), ("ViT-B/16", 394)] {
            for (c, oc) in [(768, 768), (768, 3072), (3072, 768)] {
                products += linearProducts(model, N: tokens, C: c, OC: oc).map {
                    var p = $0
                    p.beta = 0  // beta 0 on every side: C is not read, as in the existing bf16 section
                    return p
                }
            }
        }
        var implementations: Set<String> = []
        for p in products {
            let a = filled(p.aCount, seed: 71), b = filled(p.bCount, seed: 72)
            let c = filled(p.cCount, seed: 73), reference = filled(p.cCount, seed: 73)
            defer { [a, b, c, reference].forEach(AlignedMemory.deallocate) }
            let ta: Int32 = p.ta == .none ? 0 : 1, tb: Int32 = p.tb == .none ? 0 : 1
            let ours = { tandem_bf16_sgemm(ta, tb, p.m, p.n, p.k, 1, a, p.lda, b, p.ldb, 0, c, p.ldc) }
            func library(_ lib: LibraryGemm.Library) -> Bool {
                LibraryGemm.bf16Sgemm(lib, p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: 1, a: a, lda: p.lda, b: b,
                                      ldb: p.ldb, beta: 0, c: c, ldc: p.ldc)
            }
            // The reference takes m n k Double multiply-adds: checked on the first product of each model only.
            let checked = p.label.hasSuffix("768->768 fwd")
            if checked {
                bf16GemmReference(p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: 1, a: a, lda: p.lda, b: b, ldb: p.ldb,
                                  beta: 0, c: reference, ldc: p.ldc)
            }
            var errors: [String] = []
            ours()
            errors.append(checked ? scientific(relativeError(c, reference, count: p.cCount)) : "")
            var usable: [Bool] = []
            for (lib, available) in [(LibraryGemm.Library.oneDNN, dnnl), (.libxsmm, xsmm)] {
                let ok = available && library(lib)
                usable.append(ok)
                if lib == .oneDNN && ok { implementations.insert(LibraryGemm.dnnlLastImplementation) }
                errors.append(ok && checked ? scientific(relativeError(c, reference, count: p.cCount)) : (ok ? "" : "-"))
            }
            var sides: [() -> Void] = [ours]
            if usable[0] { sides.append { _ = library(.oneDNN) } }
            if usable[1] { sides.append { _ = library(.libxsmm) } }
            let timings = interleaved(repeats: repeats, sides)
            var line = pad("\(p.m)x\(p.n)x\(p.k)", 18) + pad(name(p.ta) + name(p.tb), 4) + pad(p.label, 26)
                + pad(rate(p.flops, timings[0]), 18)
            var t = 1
            for ok in usable {
                if ok { line += pad(rate(p.flops, timings[t]), 18); t += 1 } else { line += pad("n/a", 18) }
            }
            log(line + (checked ? errors.joined(separator: " / ") : ""))
            for (i, lib) in [LibraryGemm.Library.oneDNN, .libxsmm].enumerated() where !usable[i] {
                if lib == .oneDNN ? dnnl : xsmm { log("  \(lib.rawValue): \(LibraryGemm.lastError(lib))") }
            }
        }
        if !implementations.isEmpty { log("oneDNN bf16 matmul implementation: " + implementations.sorted().joined(separator: ", ")) }
    }
}
