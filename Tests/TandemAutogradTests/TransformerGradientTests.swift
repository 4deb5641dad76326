import XCTest
import TandemAutograd
import TandemKernels
import TandemNN
import TandemTestSupport

/// End-to-end gradient check of the tape: a transformer block (both norm placements) with a padding mask,
/// dropout, a classification head and cross-entropy, against central finite differences of the loss.
final class TransformerGradientTests: XCTestCase {
    struct Net {
        let arena: ParameterArena
        let tape: Tape
        let x: Tensor
        let targets: UnsafeMutablePointer<Int32>
        let loss: Tensor
    }

    /// B=2, T=5, C=12, NH=3, V=7: small odd shapes, one padded key in the second sequence.
    /// With `leading` L, the block runs as `leadingRows` and the head scores the first L positions only.
    /// `attentionDropout` drops out the attention probabilities.
    func makeNet(norm: TransformerBlock.Norm, causal: Bool, dropout: Float, leading: Int? = nil,
                 attentionDropout: Float = 0) -> Net {
        let B = 2, T = 5, C = 12, V = 7
        let arena = ParameterArena()
        let scope = ParameterScope(arena: arena, rng: Philox(seed: 3))
        let w = ParameterInit.normal(std: 0.3)
        let block = TransformerBlock(
            attention: MultiHeadAttention(query: Linear(scope("q"), inputs: C, outputs: C, initializer: w),
                                          key: Linear(scope("k"), inputs: C, outputs: C, initializer: w),
                                          value: Linear(scope("v"), inputs: C, outputs: C, initializer: w),
                                          output: Linear(scope("o"), inputs: C, outputs: C, initializer: w),
                                          heads: 3, dropout: attentionDropout),
            attentionNorm: LayerNorm(scope("ln1"), dimensions: C, eps: 1e-5),
            feedForward: FeedForward(up: Linear(scope("up"), inputs: C, outputs: 2 * C + 1, initializer: w),
                                     down: Linear(scope("down"), inputs: 2 * C + 1, outputs: C, initializer: w),
                                     approximation: .erf),
            feedForwardNorm: LayerNorm(scope("ln2"), dimensions: C, eps: 1e-5),
            norm: norm, dropout: dropout)
        let head = Linear(scope("head"), inputs: C, outputs: V, initializer: w)
        arena.seal()
        // Non-trivial LayerNorm parameters and biases, so their gradients are tested too.
        let rng = Philox(seed: 9)
        for p in arena.parameters where p.initializer == .zeros || p.initializer == .ones {
            for i in 0..<p.count { p.value[i] += 0.2 * rng.normal(stream: UInt64(p.index), step: 1, index: UInt64(i)) }
        }
        let tape = Tape(rng: Philox(seed: 5), minimumBlockBytes: 1 << 16)
        let x = tape.tensor(Shape(B, T, C))
        for i in 0..<x.count { x.data[i] = rng.normal(stream: 99, step: 0, index: UInt64(i)) }
        let mask = tape.input(Shape(B, T))
        for i in 0..<B * T { mask.data[i] = i == B * T - 1 ? 0 : 1 }
        let h = leading.map { block.leadingRows(x, count: $0, keyMask: mask, causal: causal, on: tape) }
            ?? block(x, keyMask: mask, causal: causal, on: tape)
        let logits = head(h, on: tape)
        let rows = B * (leading ?? T)
        let targets = tape.intInput(count: rows)
        for i in 0..<rows { targets[i] = Int32((i * 3) % V) }
        targets[2] = -100
        let loss = tape.crossEntropy(logits, targets: targets, labelSmoothing: 0.1)
        tape.seal()
        return Net(arena: arena, tape: tape, x: x, targets: targets, loss: loss)
    }

    func lossValue(_ net: Net) -> Double {
        net.tape.forward()
        return Double(net.loss.data[0])
    }

    /// Central differences with step 1e-2 in Float. The tolerance (relative norm error below 1e-2 per
    /// tensor) covers Float rounding of the loss (about 1e-7 / 2e-2 = 5e-6 absolute per difference) and
    /// the O(h^2) truncation term; a wrong backward gives errors of order 1.
    func check(norm: TransformerBlock.Norm, causal: Bool, dropout: Float, leading: Int? = nil, attentionDropout: Float = 0) {
        let net = makeNet(norm: norm, causal: causal, dropout: dropout, leading: leading, attentionDropout: attentionDropout)
        net.tape.step = 17
        net.arena.zeroGrads()
        net.tape.forward()
        net.tape.backward(from: net.loss)
        var tensors: [(String, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int)] =
            net.arena.parameters.map { ($0.name, $0.value, $0.grad, $0.count) }
        tensors.append(("x", net.x.data, net.x.grad!, net.x.count))
        for (name, value, grad, count) in tensors {
            let analytic = Array(UnsafeBufferPointer(start: grad, count: count))
            var numeric = [Float](repeating: 0, count: count)
            let h: Float = 1e-2
            for i in 0..<count {
                let saved = value[i]
                value[i] = saved + h; let up = lossValue(net)
                value[i] = saved - h; let down = lossValue(net)
                value[i] = saved
                numeric[i] = Float((up - down) / Double(2 * h))
            }
            // The key bias provably gets no gradient (softmax ignores a shift shared by all keys): there the
            // relative error is meaningless and both sides must simply be (numerically) zero.
            if numeric.map(abs).max()! < 1e-3 {
                XCTAssertLessThan(analytic.map(abs).max()!, 1e-4, "\(name): expected a zero gradient")
                continue
            }
            let err = relativeError(analytic, numeric)
            XCTAssertLessThan(err, 1e-2, "\(name) (\(norm), causal \(causal)): relative error \(err)")
        }
    }

    func testPostLNBlockWithPaddingAndDropout() { check(norm: .post, causal: false, dropout: 0.1) }
    func testPreLNCausalBlock() { check(norm: .pre, causal: true, dropout: 0) }
    func testPreLNBlockAtLeadingRowsWithPaddingAndDropout() { check(norm: .pre, causal: false, dropout: 0.1, leading: 2) }
    func testPostLNBlockWithAttentionDropout() { check(norm: .post, causal: false, dropout: 0.1, attentionDropout: 0.3) }
    func testPreLNCausalBlockAtLeadingRowsWithAttentionDropout() {
        check(norm: .pre, causal: true, dropout: 0, leading: 3, attentionDropout: 0.3)
    }

    /// Attention dropout is keyed on the step like every dropout, and off in eval, where the model gives
    /// exactly the bits of the same model without it.
    func testAttentionDropoutIsKeyedOnTheStepAndOffInEval() {
        let net = makeNet(norm: .post, causal: false, dropout: 0, attentionDropout: 0.5)
        let plain = makeNet(norm: .post, causal: false, dropout: 0)
        net.tape.step = 1; plain.tape.step = 1
        let a = lossValue(net)
        XCTAssertEqual(lossValue(net), a)
        XCTAssertNotEqual(a, lossValue(plain))
        net.tape.step = 2
        XCTAssertNotEqual(lossValue(net), a)
        net.tape.training = false; plain.tape.training = false
        XCTAssertEqual(lossValue(net), lossValue(plain))
    }

    /// `leadingRows` gives the first L rows of the full block, and the same loss and gradients as the
    /// full block with the other rows' targets ignored.
    func testLeadingRowsEqualTheFullBlocksFirstRows() {
        let L = 2, T = 5
        let full = makeNet(norm: .pre, causal: false, dropout: 0)
        let leading = makeNet(norm: .pre, causal: false, dropout: 0, leading: L)
        for b in 0..<2 { for t in 0..<T where t >= L { full.targets[b * T + t] = -100 } }
        for b in 0..<2 { for t in 0..<L { full.targets[b * T + t] = leading.targets[b * L + t] } }
        var results: [(Float, [Float])] = []
        for net in [full, leading] {
            net.arena.zeroGrads()
            net.tape.forward()
            net.tape.backward(from: net.loss)
            results.append((net.loss.data[0], Array(net.arena.grads) + Array(UnsafeBufferPointer(start: net.x.grad!, count: net.x.count))))
        }
        XCTAssertEqual(results[1].0, results[0].0, accuracy: 1e-6 * abs(results[0].0))
        XCTAssertLessThanOrEqual(relativeError(results[1].1, results[0].1), 1e-5)
    }

    /// A dropout that consumes its input (`consumingInput`, as FeedForward's activation dropout and the
    /// block's dropouts are) gives the bits of one with memory of its own, in training and eval, forward
    /// and backward, and holds no activation memory.
    func testDropoutConsumingItsInputGivesTheSameBitsWithoutMemory() {
        let N = 6, C = 10, H = 23
        var results: [[Float]] = [], bytes: [Int] = []
        for consuming in [false, true] {
            let arena = ParameterArena()
            let scope = ParameterScope(arena: arena, rng: Philox(seed: 3))
            let up = Linear(scope("up"), inputs: C, outputs: H, initializer: .normal(std: 0.3))
            let down = Linear(scope("down"), inputs: H, outputs: 4, initializer: .normal(std: 0.3))
            arena.seal()
            let tape = Tape(rng: Philox(seed: 5), minimumBlockBytes: 1 << 16)
            let x = tape.tensor(Shape(N, C))
            for i in 0..<x.count { x.data[i] = Float(i % 7) * 0.3 - 0.9 }
            let hidden = tape.gelu(up(x, on: tape))
            let before = tape.values.bytesInUse
            let dropped = tape.dropout(hidden, p: 0.4, consumingInput: consuming)
            bytes.append(tape.values.bytesInUse - before)
            let targets = tape.intInput(count: N)
            for i in 0..<N { targets[i] = Int32(i % 4) }
            let loss = tape.crossEntropy(down(dropped, on: tape), targets: targets, labelSmoothing: 0)
            tape.seal()
            var out: [Float] = []
            for training in [true, false] {
                tape.training = training
                tape.step = 7
                arena.zeroGrads()
                tape.forward()
                tape.backward(from: loss)
                out += [loss.data[0]] + Array(arena.grads) + Array(UnsafeBufferPointer(start: x.grad!, count: x.count))
            }
            results.append(out)
        }
        XCTAssertEqual(results[1], results[0])
        XCTAssertEqual(bytes[1], 0)
        XCTAssertGreaterThanOrEqual(bytes[0], 6 * 23 * MemoryLayout<Float>.size)
    }

    func testHooksFireOncePerParameterAfterItsLastContribution() {
        let net = makeNet(norm: .post, causal: false, dropout: 0)
        var fired: [String] = []
        net.tape.onGradientFinal = { fired.append($0.name) }
        net.tape.forward()
        net.tape.backward(from: net.loss)
        XCTAssertEqual(fired.sorted(), net.arena.parameters.map(\.name).sorted())
        // The head is used last in forward, so its gradient is final first; the first projections last.
        XCTAssertEqual(fired.first.map { $0.hasPrefix("head") }, true)
        XCTAssertEqual(Set(fired.suffix(6)), Set(["q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias"]))
    }

    func testReplayIsDeterministicAndStepKeysDropout() {
        let net = makeNet(norm: .pre, causal: false, dropout: 0.5)
        net.tape.step = 1
        let a = lossValue(net), b = lossValue(net)
        XCTAssertEqual(a, b)
        net.tape.step = 2
        XCTAssertNotEqual(lossValue(net), a)
        net.tape.training = false
        let eval1 = lossValue(net)
        net.tape.step = 3
        XCTAssertEqual(lossValue(net), eval1)
    }

    /// Most activation gradients are stored by their first writer in backward and never zeroed. A second
    /// backward pass must then give exactly what a fresh tape's first pass gives: a buffer left unzeroed
    /// but added to would still hold the previous pass's values.
    func testSecondBackwardPassEqualsAFreshTapes() {
        for norm in [TransformerBlock.Norm.pre, .post] {
            let used = makeNet(norm: norm, causal: false, dropout: 0.1), fresh = makeNet(norm: norm, causal: false, dropout: 0.1)
            XCTAssertGreaterThan(used.tape.storedGradientCount, 5)
            for step: UInt64 in [1, 2] {
                used.arena.zeroGrads()
                used.tape.step = step
                used.tape.forward()
                used.tape.backward(from: used.loss)
            }
            fresh.arena.zeroGrads()
            fresh.tape.step = 2
            fresh.tape.forward()
            fresh.tape.backward(from: fresh.loss)
            for (p, q) in zip(used.arena.parameters, fresh.arena.parameters) {
                XCTAssertEqual(Array(UnsafeBufferPointer(start: p.grad, count: p.count)),
                               Array(UnsafeBufferPointer(start: q.grad, count: q.count)), "\(norm): \(p.name)")
            }
            XCTAssertEqual(Array(UnsafeBufferPointer(start: used.x.grad!, count: used.x.count)),
                           Array(UnsafeBufferPointer(start: fresh.x.grad!, count: fresh.x.count)), "\(norm): x")
        }
    }
}
