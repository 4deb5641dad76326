import XCTest
import TandemAutograd
import TandemKernels
import TandemTestSupport

/// Finite-difference checks of tape ops through `backward(from:)` (patches, linear with a convolution's
/// weight, mask tokens, [CLS] and positions, unpatch / pixel shuffle, the losses, weighted sums), their
/// forward values against direct formulas, and the tape's matrix-product precision reaching the kernels.
final class OpTests: XCTestCase {
    /// Checks d(Σ output R)/d(x) through the tape: the output is reduced by a Linear with weight R, so
    /// that `backward(from:)` delivers dout = R to the op under test. `record` registers nothing new in
    /// `arena` and returns the op's output, the tensor (a tape tensor or a parameter) under test, and a
    /// check of the forward values that runs after the first forward pass.
    private func check(_ name: String, outputCount: Int, arena: ParameterArena = ParameterArena(),
                       step: Float = 1e-2, record: (Tape) -> (output: Tensor, x: Tensor, verify: () -> Void),
                       file: StaticString = #filePath, line: UInt = #line) {
        let r = arena.register("r", Shape(1, outputCount), initializer: .zeros)
        arena.seal()
        arena.reinitialize(rng: Philox(seed: 3))
        let tape = Tape(minimumBlockBytes: 1 << 16)
        tape.training = false
        let (output, x, verify) = record(tape)
        let loss = tape.linear(output.reshaped(Shape(1, outputCount)), weight: r, bias: nil)
        tape.forward()
        verify()
        let start = Array(x.values)
        gradCheck(name, x: start, outputCount: outputCount, step: step, forward: { values in
            x.data.update(from: values, count: values.count)
            tape.forward()
            return Array(output.values)
        }, backward: { values, dout, dx in
            x.data.update(from: values, count: values.count)
            r.values.baseAddress!.update(from: dout, count: outputCount)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: loss)
            for i in 0..<dx.count { dx[i] += x.grad![i] }
        }, file: file, line: line)
    }

    private func fill(_ t: Tensor, seed: UInt64, scale: Float = 1) {
        t.data.update(from: GradCheck.random(count: t.count, seed: seed, scale: scale), count: t.count)
    }

    func testPatchesMatchesIndexFormulaAndGradient() {
        let B = 2, C = 3, H = 6, W = 9, P = 3
        check("patches", outputCount: B * C * H * W) { tape in
            let pixels = tape.tensor(Shape(B, C, H, W))
            self.fill(pixels, seed: 1)
            let y = tape.patches(pixels, size: P)
            return (y, pixels, { XCTAssertEqual(y.shape, Shape(B, 6, C * P * P)) })
        }
    }

    func testPackedCausalSelfAttentionGradientWithDocuments() {
        let B = 2, T = 5, NH = 2, C = 6
        check("causal self-attention, packed q k v", outputCount: B * T * C, step: 1e-2) { tape in
            let qkv = tape.tensor(Shape(B, T, 3 * C))
            self.fill(qkv, seed: 4)
            let first = tape.intInput(count: B * T)
            first.update(from: [0, 0, 2, 2, 2, 0, 1, 1, 3, 3], count: B * T)
            let y = tape.causalSelfAttention(packed: qkv, heads: NH, firstKeys: first)
            return (y, qkv, { XCTAssertEqual(y.shape, Shape(B, T, C)) })
        }
    }

    func testLinearWithConvolutionWeightIsTheConvolutionOnPatches() {
        // A Conv2d (OC, C, P, P) with stride P, computed directly, equals linear(patches) with the weight viewed as (OC, C*P*P).
        let B = 2, C = 2, S = 6, P = 3, OC = 5
        let arena = ParameterArena()
        let weight = arena.register("w", Shape(OC, C, P, P), initializer: .normal(std: 1))
        let bias = arena.register("b", Shape(OC), initializer: .normal(std: 1))
        arena.seal()
        arena.reinitialize(rng: Philox(seed: 5))
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let pixels = tape.input(Shape(B, C, S, S))
        fill(pixels, seed: 2)
        let y = tape.linear(tape.patches(pixels, size: P), weight: weight, bias: bias)
        tape.forward()
        let G = S / P
        for b in 0..<B { for o in 0..<OC { for gy in 0..<G { for gx in 0..<G {
            var sum = bias.value[o]
            for c in 0..<C { for ky in 0..<P { for kx in 0..<P {
                sum += weight.value[((o * C + c) * P + ky) * P + kx] * pixels.data[((b * C + c) * S + gy * P + ky) * S + gx * P + kx]
            } } }
            XCTAssertEqual(y.data[(b * G * G + gy * G + gx) * OC + o], sum, accuracy: 1e-4)
        } } } }
    }

    func testLinearWithConvolutionWeightGradients() {
        let arena = ParameterArena()
        let weight = arena.register("w", Shape(4, 3, 2, 2), initializer: .normal(std: 1))
        let bias = arena.register("b", Shape(4), initializer: .normal(std: 1))
        check("linear 4-d weight", outputCount: 5 * 4, arena: arena) { tape in
            let x = tape.tensor(Shape(5, 12))
            self.fill(x, seed: 4)
            return (tape.linear(x, weight: weight, bias: bias), Tensor(weight), {})
        }
    }

    func testMaskTokensReplaceMaskedRowsAndPassGradients() {
        let N = 6, C = 5
        let mask: [Float] = [0, 1, 0, 0, 1, 1]
        for checked in ["input", "token"] {
            let arena = ParameterArena()
            let token = arena.register("token", Shape(1, 1, C), initializer: .normal(std: 1))
            check("maskTokens \(checked)", outputCount: N * C, arena: arena) { tape in
                let x = tape.tensor(Shape(2, 3, C))
                self.fill(x, seed: 6)
                let m = tape.input(Shape(2, 3))
                m.data.update(from: mask, count: N)
                let y = tape.maskTokens(x, mask: m, token: token)
                return (y, checked == "input" ? x : Tensor(token), {
                    for n in 0..<N { for c in 0..<C {
                        XCTAssertEqual(y.data[n * C + c], mask[n] == 1 ? token.value[c] : x.data[n * C + c])
                    } }
                })
            }
        }
    }

    func testClassTokenAndPositions() {
        let B = 3, NP = 4, C = 5
        for checked in ["input", "token", "positions"] {
            let arena = ParameterArena()
            let token = arena.register("cls", Shape(1, 1, C), initializer: .normal(std: 1))
            let positions = arena.register("pos", Shape(1, NP + 1, C), initializer: .normal(std: 1))
            check("prependClassToken \(checked)", outputCount: B * (NP + 1) * C, arena: arena) { tape in
                let x = tape.tensor(Shape(B, NP, C))
                self.fill(x, seed: 8)
                let y = tape.prependClassToken(x, token: token, positions: positions)
                return (y, checked == "input" ? x : checked == "token" ? Tensor(token) : Tensor(positions), {
                    for b in 0..<B { for t in 0...NP { for c in 0..<C {
                        let source = t == 0 ? token.value[c] : x.data[(b * NP + t - 1) * C + c]
                        XCTAssertEqual(y.data[(b * (NP + 1) + t) * C + c], source + positions.value[t * C + c])
                    } } }
                })
            }
        }
    }

    func testUnpatchIsPixelShuffleOfChannelsLastPositions() {
        // PyTorch's PixelShuffle(r) on (B, C r², G, G): out[b, c, h r + i, w r + j] = in[b, c r² + i r + j, h, w].
        let B = 2, C = 3, G = 2, r = 3, S = G * r
        check("unpatch", outputCount: B * C * S * S) { tape in
            let x = tape.tensor(Shape(B, G * G, C * r * r))
            self.fill(x, seed: 10)
            let y = tape.unpatch(x, channels: C, height: S, width: S, patch: r)
            return (y, x, {
                for b in 0..<B { for c in 0..<C { for h in 0..<G { for w in 0..<G { for i in 0..<r { for j in 0..<r {
                    XCTAssertEqual(y.data[((b * C + c) * S + h * r + i) * S + w * r + j],
                                   x.data[(b * G * G + h * G + w) * C * r * r + c * r * r + i * r + j])
                } } } } } }
            })
        }
    }

    func testMaskedL1LossValueAndGradient() {
        let B = 2, C = 3, S = 6, P = 3, NP = 4
        let mask: [Float] = [1, 0, 0, 1, 0, 1, 1, 1]
        check("maskedL1Loss", outputCount: 1) { tape in
            let prediction = tape.tensor(Shape(B, C, S, S))
            self.fill(prediction, seed: 12)
            let target = tape.input(Shape(B, C, S, S))
            // Targets at least 0.2 away from the prediction, so that no finite-difference step crosses a kink.
            let offsets = GradCheck.random(count: target.count, seed: 13)
            for i in 0..<target.count { target.data[i] = prediction.data[i] + (offsets[i] < 0 ? -0.2 : 0.2) + offsets[i] }
            let m = tape.input(Shape(B, NP))
            m.data.update(from: mask, count: B * NP)
            let loss = tape.maskedL1Loss(prediction, target: target, mask: m, patch: P)
            return (loss, prediction, {
                var total = 0.0
                for b in 0..<B { for c in 0..<C { for y in 0..<S { for x in 0..<S {
                    let i = ((b * C + c) * S + y) * S + x
                    total += Double(abs(prediction.data[i] - target.data[i])) * Double(mask[b * NP + (y / P) * 2 + x / P])
                } } } }
                let expected = total / (Double(mask.reduce(0, +)) * Double(P * P) + 1e-5) / Double(C)
                XCTAssertEqual(Double(loss.data[0]), expected, accuracy: 1e-6 * expected)
            })
        }
    }

    func testDistillationAndClassTokensWithPositions() {
        // DeiT: [CLS] then the distillation token in front of the patches.
        let B = 2, NP = 3, C = 4
        for checked in ["input", "cls", "distillation", "positions"] {
            let arena = ParameterArena()
            let cls = arena.register("cls", Shape(1, 1, C), initializer: .normal(std: 1))
            let dist = arena.register("dist", Shape(1, 1, C), initializer: .normal(std: 1))
            let positions = arena.register("pos", Shape(1, NP + 2, C), initializer: .normal(std: 1))
            check("prependTokens \(checked)", outputCount: B * (NP + 2) * C, arena: arena) { tape in
                let x = tape.tensor(Shape(B, NP, C))
                self.fill(x, seed: 18)
                let y = tape.prependTokens(x, tokens: [cls, dist], positions: positions)
                let tested = checked == "input" ? x : checked == "cls" ? Tensor(cls)
                    : checked == "distillation" ? Tensor(dist) : Tensor(positions)
                return (y, tested, {
                    for b in 0..<B { for t in 0..<(NP + 2) { for c in 0..<C {
                        let source = t == 0 ? cls.value[c] : t == 1 ? dist.value[c] : x.data[(b * NP + t - 2) * C + c]
                        XCTAssertEqual(y.data[(b * (NP + 2) + t) * C + c], source + positions.value[t * C + c])
                    } } }
                })
            }
        }
    }

    func testSoftTargetCrossEntropyValueAndGradient() {
        let N = 3, V = 5
        // Rows of mixed, smoothed targets (each sums to 1) and one that sums to 0.7 (the formula holds for any mass).
        let targets: [Float] = [0.7, 0.3, 0, 0, 0,  0.02, 0.02, 0.42, 0.52, 0.02,  0, 0, 0.7, 0, 0]
        check("softTargetCrossEntropy", outputCount: 1) { tape in
            let logits = tape.tensor(Shape(N, V))
            self.fill(logits, seed: 21, scale: 2)
            let t = tape.input(Shape(N, V))
            t.data.update(from: targets, count: N * V)
            let loss = tape.softTargetCrossEntropy(logits, targets: t)
            return (loss, logits, {
                var expected = 0.0
                for n in 0..<N {
                    let row = (0..<V).map { Double(logits.data[n * V + $0]) }
                    let logZ = log(row.map { exp($0) }.reduce(0, +))
                    for v in 0..<V { expected -= Double(targets[n * V + v]) * (row[v] - logZ) }
                }
                XCTAssertEqual(Double(loss.data[0]), expected / Double(N), accuracy: 1e-5)
            })
        }
    }

    func testSoftTargetsOfOneHotRowsEqualHardCrossEntropy() {
        let N = 4, V = 6
        let labels: [Int32] = [2, 0, 5, 3]
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let logits = tape.tensor(Shape(N, V))
        fill(logits, seed: 22, scale: 3)
        let t = tape.input(Shape(N, V))
        t.data.update(repeating: 0, count: N * V)
        for n in 0..<N { t.data[n * V + Int(labels[n])] = 1 }
        let hardTargets = tape.intInput(count: N)
        hardTargets.update(from: labels, count: N)
        let soft = tape.softTargetCrossEntropy(logits, targets: t)
        let hard = tape.crossEntropy(logits, targets: hardTargets)
        tape.forward()
        XCTAssertEqual(soft.data[0], hard.data[0], accuracy: 1e-5)
    }

    /// Label smoothing is a training term: an evaluation replay of the same tape gives the plain
    /// cross-entropy (the held-out negative log-likelihood), and training replays smooth again.
    func testEvaluationReplayDropsLabelSmoothing() {
        let N = 5, V = 7
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let logits = tape.tensor(Shape(N, V))
        fill(logits, seed: 31, scale: 2)
        let targets = tape.intInput(count: N)
        targets.update(from: [3, 0, -100, 6, 2], count: N)
        let smoothed = tape.crossEntropy(logits, targets: targets, labelSmoothing: 0.1)
        let plain = tape.crossEntropy(logits, targets: targets)
        tape.forward()
        let trainingValue = smoothed.data[0]
        var nll = 0.0, uniform = 0.0  // sums over the 4 labelled rows of -log p[target] and mean_v -log p[v]
        for n in 0..<N where targets[n] != -100 {
            let row = (0..<V).map { Double(logits.data[n * V + $0]) }
            let m = row.max()!
            let logZ = m + log(row.reduce(0) { $0 + exp($1 - m) })
            nll += logZ - row[Int(targets[n])]
            uniform += row.reduce(0) { $0 + logZ - $1 } / Double(V)
        }
        XCTAssertEqual(Double(plain.data[0]), nll / 4, accuracy: 1e-5)
        XCTAssertEqual(Double(trainingValue), (0.9 * nll + 0.1 * uniform) / 4, accuracy: 1e-5)
        tape.evaluation = true
        tape.forward()
        XCTAssertEqual(smoothed.data[0], plain.data[0])
        tape.evaluation = false
        tape.forward()
        XCTAssertEqual(smoothed.data[0], trainingValue)
    }

    func testWeightedSumOfScalars() {
        for checked in 0..<2 {
            check("weightedSum term \(checked)", outputCount: 1) { tape in
                let a = tape.tensor(Shape(1)), b = tape.tensor(Shape(1))
                a.data[0] = 1.5
                b.data[0] = -0.25
                let y = tape.weightedSum([(a, 0.5), (b, 0.25)])
                return (y, checked == 0 ? a : b, { XCTAssertEqual(y.data[0], 0.5 * 1.5 + 0.25 * -0.25) })
            }
        }
    }

    /// Linear and attention recorded on a tape whose `precision` is bf16 give the bits of their kernels
    /// called with bf16, forward and backward, and other bits than in fp32 (the products are large enough
    /// for `MatmulPrecision.usesBF16`).
    func testTapePrecisionReachesTheProducts() throws {
        try XCTSkipUnless(MatmulPrecision.bf16Supported, "this CPU has no AVX512_BF16")
        let B = 2, T = 32, C = 64, NH = 2, HS = C / NH, N = B * T
        let arena = ParameterArena()
        let weight = arena.register("w", Shape(C, C), initializer: .normal(std: 1))
        arena.seal()
        arena.reinitialize(rng: Philox(seed: 9))
        let x0 = GradCheck.random(count: N * C, seed: 30)
        /// Bits of h = linear(x), y = attention(h, h, h), dx and dw (from dy = 1) through a tape.
        func viaTape(_ precision: MatmulPrecision) -> [[UInt32]] {
            let tape = Tape(minimumBlockBytes: 1 << 16)
            tape.precision = precision
            let x = tape.tensor(Shape(B, T, C))
            x.data.update(from: x0, count: x0.count)
            let h = tape.linear(x, weight: weight, bias: nil)
            let y = tape.attention(q: h, k: h, v: h, heads: NH, keyMask: nil, causal: false)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: y)
            let arrays: [[Float]] = [Array(h.values), Array(y.values), Array(UnsafeBufferPointer(start: x.grad!, count: x.count)),
                                     Array(weight.grads)]
            return arrays.map { $0.map(\.bitPattern) }
        }
        /// The same through the kernels, each given `precision`.
        func viaKernels(_ precision: MatmulPrecision) -> [[UInt32]] {
            func buffer(_ n: Int, _ value: Float = 0) -> UnsafeMutablePointer<Float> {
                let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
                p.initialize(repeating: value, count: n)
                return p
            }
            let x = buffer(N * C), h = buffer(N * C), y = buffer(N * C), ones = buffer(N * C, 1)
            let dh = buffer(N * C), dx = buffer(N * C), dw = buffer(C * C)
            let probs = buffer(B * NH * T * T), dprobs = buffer(B * NH * T * T)
            defer { [x, h, y, ones, dh, dx, dw, probs, dprobs].forEach { $0.deallocate() } }
            x.update(from: x0, count: x0.count)
            linearForward(out: h, inp: x, weight: weight.value, bias: nil, N: N, C: C, OC: C, precision: precision)
            attentionForward(out: y, probs: probs, q: h, k: h, v: h, keyMask: nil, B: B, T: T, NH: NH, HS: HS,
                             causal: false, precision: precision)
            attentionBackward(dq: dh, dk: dh, dv: dh, dprobs: dprobs, dout: ones, probs: probs, q: h, k: h, v: h,
                              B: B, T: T, NH: NH, HS: HS, precision: precision)
            linearBackward(dinp: dx, dweight: dw, dbias: nil, dout: dh, inp: x, weight: weight.value, N: N, C: C, OC: C,
                           precision: precision)
            func bits(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> [UInt32] { (0..<n).map { p[$0].bitPattern } }
            return [bits(h, N * C), bits(y, N * C), bits(dx, N * C), bits(dw, C * C)]
        }
        let bf16 = viaTape(.bf16), fp32 = viaTape(.fp32)
        XCTAssertEqual(bf16, viaKernels(.bf16), "a bf16 tape runs its products in bf16")
        XCTAssertEqual(fp32, viaKernels(.fp32), "an fp32 tape runs its products in fp32")
        XCTAssertNotEqual(bf16[0], fp32[0], "bf16 products change the linear's output")
    }
}
