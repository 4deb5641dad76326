import XCTest
import TandemAutograd
import TandemKernels
import TandemTestSupport

/// LayerDrop's skippable regions (`Tape.skippable`, `Tape.layerDropSkips`) and wav2vec 2.0's feature
/// masking op (`Tape.keepChannels`).
final class LayerDropTests: XCTestCase {
    static let B = 2, T = 3, C = 4, hidden = 5

    /// A residual block y = x + W2 gelu(W1 x + b1) + W3 z on (B, T, C), reading `z` (B, T, C), a tensor made
    /// outside the block whose only consumer is the block; the loss is Σ out R.
    private final class Flag { var value = false }

    private final class Graph {
        let arena: ParameterArena
        let tape: Tape
        let w1: Parameter, b1: Parameter, w2: Parameter, w3: Parameter, r: Parameter, zScale: Parameter
        let x: Tensor, z: Tensor, out: Tensor, loss: Tensor
        private let flag: Flag
        var skip: Bool { get { flag.value } set { flag.value = newValue } }
        var finals: [String] = []

        init(skippable: Bool) {
            let (B, T, C, H) = (LayerDropTests.B, LayerDropTests.T, LayerDropTests.C, LayerDropTests.hidden)
            let arena = ParameterArena(), flag = Flag()
            let w1 = arena.register("w1", Shape(H, C), initializer: .normal(std: 0.5))
            let b1 = arena.register("b1", Shape(H), initializer: .normal(std: 0.5))
            let w2 = arena.register("w2", Shape(C, H), initializer: .normal(std: 0.5))
            let w3 = arena.register("w3", Shape(C, C), initializer: .normal(std: 0.5))
            let zScale = arena.register("z_scale", Shape(C, C), initializer: .normal(std: 0.5))
            let r = arena.register("r", Shape(1, B * T * C), initializer: .normal(std: 1))
            arena.seal()
            arena.reinitialize(rng: Philox(seed: 11))
            let tape = Tape(minimumBlockBytes: 1 << 16)
            let x = tape.tensor(Shape(B, T, C))
            x.data.update(from: GradCheck.random(count: x.count, seed: 1), count: x.count)
            let z = tape.linear(x, weight: zScale, bias: nil)
            let body = { (h: Tensor) -> Tensor in
                let inner = tape.linear(tape.gelu(tape.linear(h, weight: w1, bias: b1)), weight: w2, bias: nil)
                return tape.add(tape.add(h, inner), tape.linear(z, weight: w3, bias: nil))
            }
            let out = skippable ? tape.skippable(x, skip: { flag.value }, body) : body(x)
            loss = tape.linear(out.reshaped(Shape(1, B * T * C)), weight: r, bias: nil)
            self.tape = tape
            self.arena = arena; self.flag = flag
            self.w1 = w1; self.b1 = b1; self.w2 = w2; self.w3 = w3; self.zScale = zScale; self.r = r
            self.x = x; self.z = z; self.out = out
            tape.onGradientFinal = { [unowned self] in finals.append($0.name) }
        }

        func run() {
            arena.zeroGrads()
            finals = []
            tape.forward()
            x.grad!.update(repeating: .nan, count: x.count)  // backward must write x's gradient whole
            tape.backward(from: loss)
        }

        func gradient(_ p: Parameter) -> [Float] { Array(p.grads) }
    }

    func testSkippedRegionIsTheIdentityWithNoParameterGradient() {
        let g = Graph(skippable: true), reference = Graph(skippable: false)
        // Not skipped, skipped, not skipped again on the same tape: each replay as if recorded alone.
        for skip in [false, true, false, true] {
            g.skip = skip
            g.run()
            if skip {
                XCTAssertEqual(Array(g.out.values), Array(g.x.values), "a skipped region passes its input through")
                // dL/dx = R (through the identity) + z's path, which the skipped region no longer feeds.
                XCTAssertEqual(Array(UnsafeBufferPointer(start: g.x.grad!, count: g.x.count)), Array(g.r.values))
                for p in [g.w1, g.b1, g.w2, g.w3, g.zScale] {
                    XCTAssertEqual(g.gradient(p), [Float](repeating: 0, count: p.count), "\(p.name) skipped")
                }
                XCTAssertEqual(Array(UnsafeBufferPointer(start: g.z.grad!, count: g.z.count)), [Float](repeating: 0, count: g.z.count),
                               "a tensor read only inside the skipped region gets no gradient (and no stale one)")
            } else {
                reference.run()
                XCTAssertEqual(Array(g.out.values), Array(reference.out.values))
                XCTAssertEqual(Array(UnsafeBufferPointer(start: g.x.grad!, count: g.x.count)),
                               Array(UnsafeBufferPointer(start: reference.x.grad!, count: reference.x.count)))
                for (p, q) in zip([g.w1, g.b1, g.w2, g.w3, g.zScale, g.r], [reference.w1, reference.b1, reference.w2, reference.w3,
                                                                           reference.zScale, reference.r]) {
                    XCTAssertEqual(g.gradient(p), reference.gradient(q), "\(p.name) not skipped")
                    XCTAssertNotEqual(g.gradient(p), [Float](repeating: 0, count: p.count), p.name)
                }
            }
            // Every parameter's gradient is announced final once, skipped or not (gradient buckets wait on it).
            XCTAssertEqual(g.finals.sorted(), ["b1", "r", "w1", "w2", "w3", "z_scale"], "skip \(skip)")
        }
    }

    func testRegionGradientMatchesFiniteDifferencesWhenKeptAndIdentityWhenSkipped() {
        for skip in [false, true] {
            let g = Graph(skippable: true)
            g.skip = skip
            let start = Array(g.x.values), n = g.x.count
            gradCheck("skippable region, skip \(skip)", x: start, outputCount: n, forward: { values in
                g.x.data.update(from: values, count: n)
                g.tape.forward()
                return Array(g.out.values)
            }, backward: { values, dout, dx in
                g.x.data.update(from: values, count: n)
                g.r.values.baseAddress!.update(from: dout, count: n)
                g.run()
                for i in 0..<n { dx[i] += g.x.grad![i] }
            })
        }
    }

    func testLayerDropDecisionIsAFunctionOfSeedStepAndLayer() {
        let p: Float = 0.2, stream: UInt64 = 77
        let a = Tape(rng: Philox(seed: 5)), b = Tape(rng: Philox(seed: 5)), other = Tape(rng: Philox(seed: 6))
        _ = b.newStream()  // other ops' streams do not move the decision
        var skipped = 0, differ = 0
        let steps = 20_000
        for step in 0..<steps {
            a.step = UInt64(step)
            b.step = UInt64(step)
            other.step = UInt64(step)
            for layer in 0..<2 {
                let s = a.layerDropSkips(layer: layer, p: p, stream: stream)
                XCTAssertEqual(s, b.layerDropSkips(layer: layer, p: p, stream: stream))
                XCTAssertEqual(s, Philox(seed: 5).uniform(stream: stream, step: UInt64(step), index: UInt64(layer)) < p)
                if s { skipped += 1 }
                if s != other.layerDropSkips(layer: layer, p: p, stream: stream) { differ += 1 }
            }
        }
        // Binomial(40000, 0.2): standard deviation 0.002 of the rate.
        let rate = Double(skipped) / Double(2 * steps)
        XCTAssertEqual(rate, Double(p), accuracy: 0.01, "LayerDrop rate \(rate)")
        XCTAssertGreaterThan(differ, 2 * steps / 5, "another seed draws other decisions")
        a.training = false
        for step in 0..<1000 {
            a.step = UInt64(step)
            XCTAssertFalse(a.layerDropSkips(layer: 0, p: 0.9, stream: stream), "no LayerDrop in evaluation")
        }
        a.training = true
        XCTAssertFalse((0..<1000).contains { a.step = UInt64($0); return a.layerDropSkips(layer: 0, p: 0, stream: stream) })
    }

    // MARK: - Feature masking

    func testKeepChannelsZeroesMaskedChannelsOnEveryFrame() {
        let (B, T, C) = (2, 5, 6)
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let x = tape.tensor(Shape(B, T, C))
        x.data.update(from: GradCheck.random(count: x.count, seed: 3), count: x.count)
        let keep = tape.input(Shape(B, C))
        let masked: [[Int]] = [[1, 2], [0, 5]]
        keep.data.update(repeating: 1, count: B * C)
        for b in 0..<B { for c in masked[b] { keep.data[b * C + c] = 0 } }
        let y = tape.keepChannels(x, keep: keep)
        let arena = ParameterArena()
        let r = arena.register("r", Shape(1, B * T * C), initializer: .normal(std: 1))
        arena.seal()
        arena.reinitialize(rng: Philox(seed: 4))
        let loss = tape.linear(y.reshaped(Shape(1, B * T * C)), weight: r, bias: nil)
        tape.forward()
        tape.backward(from: loss)
        for b in 0..<B {
            for t in 0..<T {
                for c in 0..<C {
                    let i = (b * T + t) * C + c
                    if masked[b].contains(c) {
                        XCTAssertEqual(y.data[i], 0, "utterance \(b) frame \(t) channel \(c)")
                        XCTAssertEqual(x.grad![i], 0, "no gradient through a masked channel")
                    } else {
                        XCTAssertEqual(y.data[i], x.data[i])
                        XCTAssertEqual(x.grad![i], r.value[i])
                    }
                }
            }
        }
        // Evaluation: an identity, whatever `keep` holds.
        tape.training = false
        tape.forward()
        tape.backward(from: loss)
        XCTAssertEqual(Array(y.values), Array(x.values))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: x.grad!, count: x.count)), Array(r.values))
    }

    func testKeepChannelsGradientMatchesFiniteDifferences() {
        let (B, T, C) = (2, 3, 5)
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let x = tape.tensor(Shape(B, T, C))
        let keep = tape.input(Shape(B, C))
        for i in 0..<(B * C) { keep.data[i] = i % 3 == 1 ? 0 : 1 }
        // A GELU after the mask, so that the check is of more than a copy.
        let y = tape.gelu(tape.keepChannels(x, keep: keep))
        let arena = ParameterArena()
        let r = arena.register("r", Shape(1, B * T * C), initializer: .zeros)
        arena.seal()
        let loss = tape.linear(y.reshaped(Shape(1, B * T * C)), weight: r, bias: nil)
        let n = x.count
        gradCheck("keepChannels", x: GradCheck.random(count: n, seed: 9), outputCount: n, forward: { values in
            x.data.update(from: values, count: n)
            tape.forward()
            return Array(y.values)
        }, backward: { values, dout, dx in
            x.data.update(from: values, count: n)
            r.values.baseAddress!.update(from: dout, count: n)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: loss)
            for i in 0..<n { dx[i] += x.grad![i] }
        })
    }
}
