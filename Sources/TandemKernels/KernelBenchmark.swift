#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBLAS

/// `tandem bench kernels`: how close the kernels come to the machine's limits. Matrix products are
/// compared with raw `cblas_sgemm` (the goal is within 3%), memory-bound kernels with memcpy's bandwidth
/// (the goal is at least 50%), bytes counted as read + written once each.
///
/// The two sides of every comparison run interleaved, one repeat of each in turn, so that frequency or
/// load drift affects both alike; figures are the median (and best) of `repeats` runs.
public enum KernelBenchmark {
    /// The groups of benchmarks `run` can be limited to.
    public enum Section: String, CaseIterable, Sendable {
        case gemm, bf16, libraries, memory, adamw, recurrent
    }

    /// Runs the benchmarks of `sections` (all by default) `repeats` times (at least 1) and reports through
    /// `log`, a line at a time.
    public static func run(repeats: Int, sections: Set<Section> = Set(Section.allCases), log: (String) -> Void) {
        let repeats = max(1, repeats)
        log("BLAS: \(BLAS.configuration), threads \(BLAS.threads)")
        if sections.contains(.gemm) { benchmarkGemm(repeats: repeats, log: log) }
        if sections.contains(.bf16) { benchmarkBF16Gemm(repeats: repeats, log: log) }
        if sections.contains(.libraries) { benchmarkLibraryGemm(repeats: repeats, log: log) }
        if sections.contains(.memory) { benchmarkMemoryBound(repeats: repeats, log: log) }
        if sections.contains(.adamw) { benchmarkAdamW(repeats: repeats, log: log) }
        if sections.contains(.recurrent) { benchmarkRecurrent(repeats: repeats, log: log) }
    }

    // MARK: - Matrix products

    static func benchmarkGemm(repeats: Int, log: (String) -> Void) {
        log("")
        log("sgemm, row-major, C (M,N) = op(A) op(B); GFLOP/s median (best) of \(repeats);")
        log("ratio = ours / cblas_sgemm, of medians (of bests)")
        log(pad("M x N x K", 18) + pad("op", 6) + pad("cblas_sgemm", 20) + pad("gemm", 20) + "ratio")
        let shapes = [(4096, 768, 768), (4096, 3072, 768), (4096, 768, 3072)]
        let combos: [(Transpose, Transpose)] = [(.none, .none), (.none, .transpose), (.transpose, .none), (.transpose, .transpose)]
        for (m, n, k) in shapes {
            let a = filled(m * k, seed: 1), b = filled(k * n, seed: 2), c = filled(m * n, seed: 3)
            defer { [a, b, c].forEach(AlignedMemory.deallocate) }
            let flops = 2 * Double(m) * Double(n) * Double(k)
            for (ta, tb) in combos {
                let lda = ta == .none ? k : m, ldb = tb == .none ? n : k
                let (raw, ours) = interleaved(repeats: repeats, {
                    cblas_sgemm(CblasRowMajor, ta == .none ? CblasNoTrans : CblasTrans,
                                tb == .none ? CblasNoTrans : CblasTrans, Int32(m), Int32(n), Int32(k), 1,
                                a, Int32(lda), b, Int32(ldb), 0, c, Int32(n))
                }, {
                    gemm(ta, tb, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: n)
                })
                log(pad("\(m)x\(n)x\(k)", 18) + pad(name(ta) + name(tb), 6)
                    + pad(rate(flops, raw), 20) + pad(rate(flops, ours), 20) + ratio(raw, ours))
            }
            // linearForward is the NT product (weight stored (OC, C)); with a bias it adds one write pass.
            let bias = filled(n, seed: 4)
            defer { AlignedMemory.deallocate(bias) }
            for withBias in [false, true] {
                let (raw, ours) = interleaved(repeats: repeats, {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1,
                                a, Int32(k), b, Int32(k), 0, c, Int32(n))
                }, {
                    linearForward(out: c, inp: a, weight: b, bias: withBias ? UnsafePointer(bias) : nil, N: m, C: k, OC: n)
                })
                log(pad("\(m)x\(n)x\(k)", 18) + pad("NT", 6) + pad(rate(flops, raw), 20) + pad(rate(flops, ours), 20)
                    + pad(ratio(raw, ours), 16) + (withBias ? "linearForward + bias" : "linearForward"))
            }
        }
    }

    // MARK: - bf16 matrix products

    /// `bf16Gemm` next to `cblas_sgemm` (both on `BLAS.threads` threads) at the products of a training
    /// step: each Linear of BERT-base (micro-batch 4 x 128 tokens) and ViT-B/16 (2 x 197) forward (NT),
    /// its input gradient (NN) and its weight gradient (TN), and one layer's attention products (12 heads
    /// as strided views of a (T, 768) buffer: scores NT, probabilities x V NN, dV TN).
    static func benchmarkBF16Gemm(repeats: Int, log: (String) -> Void) {
        log("")
        guard MatmulPrecision.bf16Supported else {
            log("bf16 gemm: skipped, this CPU has no AVX512_BF16")
            return
        }
        log("bf16 gemm (inputs rounded to bf16, fp32 accumulation) against cblas_sgemm, row-major; GFLOP/s")
        log("median (best) of \(repeats); ratio = bf16 / cblas_sgemm, of medians (of bests)")
        log(bf16Header)
        var products: [BF16Product] = []
        for (model, tokens) in [("BERT-base", 512), ("ViT-B/16", 394)] {
            for (c, oc) in [(768, 768), (768, 3072), (3072, 768)] {
                let layer = "\(model) \(c)->\(oc)"
                products.append((tokens, oc, c, .none, .transpose, c, c, 1, layer + " fwd"))
                products.append((tokens, c, oc, .none, .none, oc, c, 1, layer + " dX"))
                products.append((oc, c, tokens, .transpose, .none, oc, c, 1, layer + " dW"))
            }
        }
        for (model, t) in [("BERT-base", 128), ("ViT-B/16", 197)] {
            products.append((t, t, 64, .none, .transpose, 768, 768, 12, "\(model) attn QK^T x12"))
            products.append((t, 64, t, .none, .none, t, 768, 12, "\(model) attn PV x12"))
            products.append((t, 64, t, .transpose, .none, t, 768, 12, "\(model) attn dV x12"))
        }
        var ratioProduct = 1.0
        for p in products {
            let aRows = p.ta == .none ? p.m : p.k, bRows = p.tb == .none ? p.k : p.n
            let a = filled(aRows * p.lda, seed: 21), b = filled(bRows * p.ldb, seed: 22), c = filled(p.m * p.n, seed: 23)
            defer { [a, b, c].forEach(AlignedMemory.deallocate) }
            // Head h of a (T, 768) buffer starts at column 64 h; a (T, T) operand is one buffer per head.
            func offset(_ ld: Int, _ h: Int) -> Int { ld == 768 && p.heads > 1 ? 64 * h : 0 }
            let (raw, ours) = interleaved(repeats: repeats, {
                for h in 0..<p.heads {
                    BLAS.sgemm(p.ta, p.tb, m: p.m, n: p.n, k: p.k, a: a + offset(p.lda, h), lda: p.lda,
                               b: b + offset(p.ldb, h), ldb: p.ldb, c: c, ldc: p.n)
                }
            }, {
                for h in 0..<p.heads {
                    bf16Gemm(p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: 1, a: a + offset(p.lda, h), lda: p.lda,
                             b: b + offset(p.ldb, h), ldb: p.ldb, beta: 0, c: c, ldc: p.n)
                }
            })
            ratioProduct *= raw.median / ours.median
            log(bf16Row(p, flops: 2 * Double(p.m) * Double(p.n) * Double(p.k) * Double(p.heads), raw, ours))
        }
        log(geometricMeanLine(ratioProduct, count: products.count))
        benchmarkColdGemm(products.filter { $0.heads == 1 }, repeats: repeats, log: log)
    }

    /// One product of the bf16 tables: m x n x k, op(A) op(B), its leading dimensions, and `heads`
    /// products side by side (attention's heads as strided views) or 1.
    typealias BF16Product = (m: Int, n: Int, k: Int, ta: Transpose, tb: Transpose, lda: Int, ldb: Int, heads: Int, label: String)

    static let bf16Header = pad("M x N x K", 18) + pad("op", 6) + pad("product", 26) + pad("cblas_sgemm", 20)
        + pad("bf16 gemm", 20) + "ratio"

    static func bf16Row(_ p: BF16Product, flops: Double, _ raw: Timing, _ ours: Timing) -> String {
        pad("\(p.m)x\(p.n)x\(p.k)", 18) + pad(name(p.ta) + name(p.tb), 6) + pad(p.label, 26)
            + pad(rate(flops, raw), 20) + pad(rate(flops, ours), 20) + ratio(raw, ours)
    }

    static func geometricMeanLine(_ ratioProduct: Double, count: Int) -> String {
        "geometric mean of the median ratios: " + format(pow(ratioProduct, 1 / Double(count)), 3)
    }

    /// The Linear products of `benchmarkBF16Gemm` with their operands out of cache, as a training step
    /// meets them (a weight last touched by the previous step's optimizer, an activation written long
    /// before its weight gradient): each timed run calls the product once on each of several copies of
    /// its operands, 64 MiB or more in all, past this machine's L3. The bf16 GEMM's prefetch of C was
    /// measured this way (docs/performance.md, "bf16").
    static func benchmarkColdGemm(_ products: [BF16Product], repeats: Int, log: (String) -> Void) {
        log("")
        log("the same Linear products out of cache (each run calls the product on each of several copies of its")
        log("operands, 64 MiB or more in all); GFLOP/s, median (best) of \(repeats)")
        log(bf16Header)
        var ratioProduct = 1.0
        for p in products {
            let aRows = p.ta == .none ? p.m : p.k, bRows = p.tb == .none ? p.k : p.n
            let aCount = aRows * p.lda, bCount = bRows * p.ldb, cCount = p.m * p.n
            let setBytes = (aCount + bCount + cCount) * MemoryLayout<Float>.size
            let copies = max(2, (64 << 20) / setBytes + 1)
            var sets: [(a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>)] = []
            for i in 0..<copies {
                let seed = UInt64(31 + 3 * i)
                sets.append((filled(aCount, seed: seed), filled(bCount, seed: seed + 1), filled(cCount, seed: seed + 2)))
            }
            defer { for set in sets { [set.a, set.b, set.c].forEach(AlignedMemory.deallocate) } }
            let (raw, ours) = interleaved(repeats: repeats, {
                for set in sets {
                    BLAS.sgemm(p.ta, p.tb, m: p.m, n: p.n, k: p.k, a: set.a, lda: p.lda, b: set.b, ldb: p.ldb, c: set.c, ldc: p.n)
                }
            }, {
                for set in sets {
                    bf16Gemm(p.ta, p.tb, m: p.m, n: p.n, k: p.k, alpha: 1, a: set.a, lda: p.lda, b: set.b, ldb: p.ldb,
                             beta: 0, c: set.c, ldc: p.n)
                }
            })
            ratioProduct *= raw.median / ours.median
            log(bf16Row(p, flops: 2 * Double(p.m) * Double(p.n) * Double(p.k) * Double(copies), raw, ours))
        }
        log(geometricMeanLine(ratioProduct, count: products.count))
    }

    // MARK: - Memory-bound kernels

    static func benchmarkMemoryBound(repeats: Int, log: (String) -> Void) {
        log("")
        log("memory-bound kernels: GB/s (bytes read + written) median (best) of \(repeats); \"of memcpy\" is the")
        log("kernel's GB/s over that of a memcpy of its input size run interleaved with it, of medians (of bests)")
        let N = 4096, C = 768, count = N * C
        let x = filled(count, seed: 5, scale: 3), y = filled(count, seed: 6)
        let weight = filled(C, seed: 7), bias = filled(C, seed: 8)
        let mean = filled(N, seed: 9), rstd = filled(N, seed: 10)
        defer { [x, y, weight, bias, mean, rstd].forEach(AlignedMemory.deallocate) }
        let bytes = Double(2 * count * MemoryLayout<Float>.size)

        // A 512 x 30522 (BERT vocabulary) cross-entropy is 62 MB, past the L3 cache that holds the 12 MB
        // activations above, so it is compared with a memcpy of its own size.
        let ceN = 512, ceV = 30522, ceCount = ceN * ceV
        let logits = filled(ceCount, seed: 11, scale: 3), probs = filled(ceCount, seed: 12)
        let losses = filled(ceN, seed: 13)
        let targets = UnsafeMutablePointer<Int32>.allocate(capacity: ceN)
        defer {
            [logits, probs, losses].forEach(AlignedMemory.deallocate)
            targets.deallocate()
        }
        for i in 0..<ceN { targets[i] = Int32((i * 7919) % ceV) }
        let ceBytes = Double(2 * ceCount * MemoryLayout<Float>.size)

        let small = { memcpy(y, x, count * MemoryLayout<Float>.size); return }
        let large = { memcpy(probs, logits, ceCount * MemoryLayout<Float>.size); return }
        let rows: [(String, Double, Double, () -> Void, () -> Void)] = [
            ("GELU erf forward \(N)x\(C)", bytes, bytes, small, {
                geluForward(out: y, inp: x, count: count, approximation: .erf)
            }),
            ("GELU tanh forward \(N)x\(C)", bytes, bytes, small, {
                geluForward(out: y, inp: x, count: count, approximation: .tanh)
            }),
            ("softmax forward \(N)x\(C)", bytes, bytes, small, { softmaxForward(out: y, inp: x, rows: N, cols: C) }),
            ("softmax forward \(count / 128)x128", bytes, bytes, small, {
                softmaxForward(out: y, inp: x, rows: count / 128, cols: 128)
            }),
            ("LayerNorm forward \(N)x\(C)", bytes + Double(2 * N * 4), bytes, small, {
                layerNormForward(out: y, mean: mean, rstd: rstd, inp: x, weight: weight, bias: bias, N: N, C: C, eps: 1e-12)
            }),
            ("cross-entropy forward \(ceN)x\(ceV)", ceBytes + Double(ceN * 8), ceBytes, large, {
                _ = crossEntropyForward(losses: losses, probs: probs, logits: logits, targets: targets, N: ceN, V: ceV,
                                        ignoreIndex: -100, labelSmoothing: 0)
            }),
        ]
        log(pad("kernel", 34) + pad("GB/s", 22) + pad("ms", 10) + "of memcpy")
        var copyLogged: Set<Double> = []
        for (label, kernelBytes, copyBytes, copy, body) in rows {
            let (c, k) = interleaved(repeats: repeats, copy, body)
            if copyLogged.insert(copyBytes).inserted {
                let size = copyBytes == bytes ? "\(N)x\(C)" : "\(ceN)x\(ceV)"
                log(pad("memcpy \(size)", 34) + pad(bandwidth(copyBytes, c), 22) + format(c.median * 1e3, 3))
            }
            let fraction = format((kernelBytes / k.median) / (copyBytes / c.median), 2)
                + " (" + format((kernelBytes / k.best) / (copyBytes / c.best), 2) + ")"
            log(pad(label, 34) + pad(bandwidth(kernelBytes, k), 22) + pad(format(k.median * 1e3, 3), 10) + fraction)
        }
    }

    // MARK: - Optimizer

    /// AdamW over BERT-small's 29M parameters (116 MB per buffer, far past the caches) as the training
    /// step's optimizer phase runs it: today's three passes (clipping's scale, the scalar update loop,
    /// zeroing the gradients) next to the one fused SIMD pass. GB/s counts the update's 4 floats read and 3
    /// written per parameter for both, so the ratio of the figures is the speed-up.
    static func benchmarkAdamW(repeats: Int, log: (String) -> Void) {
        let count = 29_058_876
        let w = filled(count, seed: 14), g = filled(count, seed: 15), m = filled(count, seed: 16)
        let v = filled(count, seed: 17)
        defer { [w, g, m, v].forEach(AlignedMemory.deallocate) }
        for i in 0..<count { v[i] = v[i] * v[i] }
        let bytes = Double(7 * count * MemoryLayout<Float>.size)
        let (threePasses, fused) = interleaved(repeats: repeats, {
            scale(g, count: count, by: 0.5)
            adamwUpdateReference(weight: w, grad: g, m: m, v: v, count: count, lr: 1e-4, beta1: 0.9, beta2: 0.999,
                                 eps: 1e-6, weightDecay: 0.01, bc1: 0.1, bc2: 0.001)
            g.update(repeating: 0, count: count)
        }, {
            adamwUpdate(weight: w, grad: g, m: m, v: v, count: count, lr: 1e-4, beta1: 0.9, beta2: 0.999,
                        eps: 1e-6, weightDecay: 0.01, bc1: 0.1, bc2: 0.001, gradScale: 0.5, zeroingGrad: true)
        })
        log("")
        log("AdamW with clipping and zeroing over \(count) parameters: GB/s (4 read + 3 written per parameter)")
        log("median (best) of \(repeats)")
        log(pad("kernel", 34) + pad("GB/s", 22) + pad("ms", 10) + "speed-up")
        log(pad("scale, scalar update, zero", 34) + pad(bandwidth(bytes, threePasses), 22)
            + format(threePasses.median * 1e3, 1))
        log(pad("adamwUpdate (fused, vector)", 34) + pad(bandwidth(bytes, fused), 22)
            + pad(format(fused.median * 1e3, 1), 10) + ratio(threePasses, fused))
        // The same three updates from the same state both ways (an odd count: a partial last vector).
        let n = 100_003
        let g0 = filled(n, seed: 18)
        let state = [filled(n, seed: 19), filled(n, seed: 18), filled(n, seed: 20), filled(n, seed: 21)]
        let copy = state.map { p -> UnsafeMutablePointer<Float> in
            let c = AlignedMemory.allocate(Float.self, count: n)
            c.update(from: p, count: n)
            return c
        }
        defer { ([g0] + state + copy).forEach(AlignedMemory.deallocate) }
        for i in 0..<n { state[3][i] *= state[3][i]; copy[3][i] = state[3][i] }
        for t in 1...3 {
            let bc1 = 1 - pow(0.9, Double(t)), bc2 = 1 - pow(0.999, Double(t))
            state[1].update(from: g0, count: n)
            scale(state[1], count: n, by: 0.7)
            adamwUpdateReference(weight: state[0], grad: state[1], m: state[2], v: state[3], count: n, lr: 1e-3,
                                 beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.01, bc1: bc1, bc2: bc2)
            copy[1].update(from: g0, count: n)
            adamwUpdate(weight: copy[0], grad: copy[1], m: copy[2], v: copy[3], count: n, lr: 1e-3, beta1: 0.9,
                        beta2: 0.999, eps: 1e-6, weightDecay: 0.01, bc1: bc1, bc2: bc2, gradScale: 0.7, zeroingGrad: true)
        }
        let same = [0, 2, 3].allSatisfy { k in (0..<n).allSatisfy { state[k][$0].bitPattern == copy[k][$0].bitPattern } }
            && (0..<n).allSatisfy { copy[1][$0] == 0 }
        log("3 fused updates identical to scale + scalar loop, bit for bit (weights, m, v), gradients zeroed: \(same ? "yes" : "NO")")
    }

    // MARK: - Recurrent layers

    /// The W_hh products of a recurrent layer's T steps (forward h W_hh^T, backward dgates W_hh) as
    /// `cblas_sgemm` runs them, repacking W_hh at every step, next to `panelGemm` on W_hh packed once
    /// (the packing counted), then one layer's whole `recurrentForward` + `recurrentBackward` both ways:
    /// the rnn_lm presets' LSTMs (Zaremba medium and large, 20 streams) and GRUs of seq2seq's sizes.
    static func benchmarkRecurrent(repeats: Int, log: (String) -> Void) {
        log("")
        guard PanelGemm.supported else {
            log("recurrent steps: skipped, panelGemm needs AVX-512")
            return
        }
        log("recurrent layers: the W_hh products of T steps, cblas_sgemm (packs W_hh every step) against panelGemm")
        log("(W_hh packed once per call, packing included); GFLOP/s median (best) of \(repeats); ratio = panelGemm / sgemm")
        log(pad("layer", 26) + pad("B x G H x H", 16) + pad("T", 5) + pad("product", 10) + pad("cblas_sgemm", 20)
            + pad("panelGemm", 20) + "ratio")
        let layers: [(cell: RecurrentCell, B: Int, H: Int, T: Int)] = [
            (.lstm, 20, 650, 35), (.lstm, 20, 1500, 35), (.gru, 32, 256, 20), (.gru, 64, 512, 20), (.gru, 64, 512, 1),
        ]
        for l in layers {
            let H = l.H, GH = l.cell.gates * H, B = l.B, T = l.T
            let w = filled(GH * H, seed: 31, scale: 0.05), a = filled(B * GH, seed: 32), c = filled(B * GH, seed: 33)
            let packed = AlignedMemory.allocate(Float.self, count: max(PanelGemm.packedCount(k: H, n: GH), PanelGemm.packedCount(k: GH, n: H)))
            defer { [w, a, c, packed].forEach(AlignedMemory.deallocate) }
            let flops = 2 * Double(B * GH * H * T)
            let label = "\(l.cell.rawValue) \(H)"
            // Forward C (B, GH) += A W^T (W (GH, H) transposed); backward C (B, H) += A W.
            for (direction, op, n, k) in [("forward", Transpose.transpose, GH, H), ("backward", Transpose.none, H, GH)] {
                let (raw, ours) = interleaved(repeats: repeats, {
                    for _ in 0..<T { BLAS.sgemm(.none, op, m: B, n: n, k: k, a: a, lda: k, b: w, ldb: H, beta: 1, c: c, ldc: n) }
                }, {
                    if T > 1 { panelPack(packed, op, w: w, ldw: H, k: k, n: n) }
                    for _ in 0..<T {
                        if T > 1 { panelGemm(c: c, ldc: n, a: a, lda: k, packed: packed, m: B, n: n, k: k) } else {
                            gemm(.none, op, m: B, n: n, k: k, alpha: 1, a: a, lda: k, b: w, ldb: H, beta: 1, c: c, ldc: n)
                        }
                    }
                })
                log(pad(label, 26) + pad("\(B)x\(n)x\(k)", 16) + pad("\(T)", 5) + pad(direction, 10)
                    + pad(rate(flops, raw), 20) + pad(rate(flops, ours), 20) + ratio(raw, ours))
            }
        }
        log("")
        log("one recurrent layer, recurrentForward + recurrentBackward (input I = H, every gradient): ms median (best)")
        log("of \(repeats); steps on gemm against steps on panelGemm; speed-up = gemm / panelGemm")
        log(pad("layer", 26) + pad("B x T x H", 16) + pad("steps on gemm", 20) + pad("on panelGemm", 20) + "speed-up")
        for l in [(cell: RecurrentCell.lstm, B: 20, H: 650, T: 35), (.gru, 32, 256, 20), (.gru, 64, 512, 20)] {
            let s = RecurrentShape(cell: l.cell, B: l.B, T: l.T, I: l.H, H: l.H, reverse: false)
            let GH = s.cell.gates * s.H, BT = s.B * s.T
            let x = filled(BT * s.I, seed: 41), out = filled(BT * s.H, seed: 42), dout = filled(BT * s.H, seed: 43)
            let hN = filled(s.B * s.H, seed: 44), cN = filled(s.B * s.H, seed: 45), dx = filled(BT * s.I, seed: 46)
            let wih = filled(GH * s.I, seed: 47, scale: 0.05), whh = filled(GH * s.H, seed: 48, scale: 0.05)
            let bih = filled(GH, seed: 49), bhh = filled(GH, seed: 50)
            let dwih = filled(GH * s.I, seed: 51), dwhh = filled(GH * s.H, seed: 52), dbih = filled(GH, seed: 53), dbhh = filled(GH, seed: 54)
            let saved = filled(s.savedCount, seed: 55), scratch = filled(s.backwardScratchCount, seed: 56)
            let packed = filled(max(1, s.packedWeightCount), seed: 57)
            defer {
                [x, out, dout, hN, cN, dx, wih, whh, bih, bhh, dwih, dwhh, dbih, dbhh, saved, scratch, packed]
                    .forEach(AlignedMemory.deallocate)
            }
            let weights = RecurrentWeights(inputWeight: wih, hiddenWeight: whh, inputBias: bih, hiddenBias: bhh)
            let grads = RecurrentWeightGradients(inputWeight: dwih, hiddenWeight: dwhh, inputBias: dbih, hiddenBias: dbhh)
            func layer(_ packed: UnsafeMutablePointer<Float>?) {
                recurrentForward(out: out, ldo: s.H, hN: hN, cN: s.cell.hasCellState ? cN : nil, saved: saved, inp: x,
                                 h0: nil, c0: nil, lengths: nil, weights: weights, shape: s, packed: packed)
                recurrentBackward(dinp: dx, dh0: nil, dc0: nil, dweights: grads, scratch: scratch, dout: dout, ldo: s.H,
                                  dhN: nil, dcN: nil, saved: saved, inp: x, lengths: nil, weights: weights, shape: s,
                                  packed: packed)
            }
            let (onGemm, onPanels) = interleaved(repeats: repeats, { layer(nil) }, { layer(packed) })
            log(pad("\(s.cell.rawValue) \(s.H)", 26) + pad("\(s.B)x\(s.T)x\(s.H)", 16)
                + pad(format(onGemm.median * 1e3, 2) + " (" + format(onGemm.best * 1e3, 2) + ")", 20)
                + pad(format(onPanels.median * 1e3, 2) + " (" + format(onPanels.best * 1e3, 2) + ")", 20)
                + ratio(onGemm, onPanels))
        }
    }

    // MARK: - Timing

    struct Timing {
        var seconds: [Double]
        var median: Double { let s = seconds.sorted(); return s[s.count / 2] }
        var best: Double { seconds.min()! }
    }

    /// Runs `a` and `b` alternately `repeats` times each after one warm-up of each.
    static func interleaved(repeats: Int, _ a: () -> Void, _ b: () -> Void) -> (Timing, Timing) {
        a()
        b()
        var ta = Timing(seconds: []), tb = Timing(seconds: [])
        for _ in 0..<repeats {
            ta.seconds.append(time(a))
            tb.seconds.append(time(b))
        }
        return (ta, tb)
    }

    static func time(_ body: () -> Void) -> Double {
        let start = monotonicSeconds()
        body()
        return monotonicSeconds() - start
    }

    /// `count` Floats, uniform in [-scale, scale) from a xorshift generator (fast enough for 60 MB).
    static func filled(_ count: Int, seed: UInt64, scale: Float = 1) -> UnsafeMutablePointer<Float> {
        let p = AlignedMemory.allocate(Float.self, count: count)
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<count {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            p[i] = scale * (Float(s >> 40) * (2.0 / 16_777_216.0) - 1)
        }
        return p
    }

    // MARK: - Formatting

    static func name(_ t: Transpose) -> String { t == .none ? "N" : "T" }

    static func rate(_ flops: Double, _ t: Timing) -> String {
        format(flops / t.median * 1e-9, 1) + " (" + format(flops / t.best * 1e-9, 1) + ")"
    }

    static func ratio(_ reference: Timing, _ ours: Timing) -> String {
        format(reference.median / ours.median, 3) + " (" + format(reference.best / ours.best, 3) + ")"
    }

    static func bandwidth(_ bytes: Double, _ t: Timing) -> String {
        format(bytes / t.median * 1e-9, 2) + " (" + format(bytes / t.best * 1e-9, 2) + ")"
    }

    static func format(_ value: Double, _ decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = "\(rounded)"
        let fraction = text.split(separator: ".").last.map(\.count) ?? 0
        if decimals > 0 && fraction < decimals { text += String(repeating: "0", count: decimals - fraction) }
        return text
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}
