import XCTest
@testable import TandemAutograd
import TandemKernels
import TandemNN
import TandemTestSupport

/// `Tape.recordGraph`: activation gradients that are never live together share memory. A planned graph must
/// give the same gradients, bit for bit, as the same graph recorded op by op (each gradient in its own
/// memory), with the shared memory filled with NaN before every backward pass (`poisonsGradientMemory`),
/// so that a gradient read outside its planned life shows.
final class GradientPlanTests: XCTestCase {
    /// Random sizes and lifetimes: buffers live at the same op never overlap, and the block is at least the
    /// most bytes live at one op and at most all the bytes.
    func testPlacementKeepsBuffersLiveTogetherApart() {
        let rng = Philox(seed: 4)
        for trial in 0..<20 {
            let n = 1 + trial * 7, ops = 3 + trial
            var bytes: [Int] = [], lifetimes: [ClosedRange<Int>] = []
            for k in 0..<n {
                let u = { (i: Int) in Int(rng.uniform(stream: UInt64(trial), step: UInt64(k), index: UInt64(i)) * Float(ops)) }
                bytes.append(GradientPlan.bytes(count: 1 + u(0) * 37 + u(1)))
                let a = u(2), b = u(3)
                lifetimes.append(min(a, b)...max(a, b))
            }
            let (offsets, total) = GradientPlan.place(bytes: bytes, lifetimes: lifetimes)
            for k in 0..<n {
                XCTAssertEqual(offsets[k] % 64, 0)
                XCTAssertLessThanOrEqual(offsets[k] + bytes[k], total)
                for l in 0..<k where lifetimes[k].overlaps(lifetimes[l]) {
                    XCTAssertTrue(offsets[k] + bytes[k] <= offsets[l] || offsets[l] + bytes[l] <= offsets[k],
                                  "trial \(trial): buffers \(k) and \(l) live together and overlap")
                }
            }
            let peak = (0..<ops).map { i in (0..<n).filter { lifetimes[$0].contains(i) }.map { bytes[$0] }.reduce(0, +) }.max()!
            XCTAssertGreaterThanOrEqual(total, peak)
            XCTAssertLessThanOrEqual(total, bytes.reduce(0, +))
        }
    }

    /// A graph to record on a tape: returns the input whose gradient is compared and the loss, and fills
    /// the inputs (after recording, since the second recording hands out zeroed memory).
    struct Built { let x: Tensor; let loss: Tensor; let fill: () -> Void }

    /// Runs `steps` forward/backward passes of the graph recorded op by op and planned, and compares every
    /// parameter gradient and x's gradient bit for bit; returns the planned tape.
    @discardableResult
    func assertPlannedEqualsOpByOp(_ name: String, steps: Int = 2, makeArena: () -> ParameterArena,
                                   before: ((Tape, Int) -> Void)? = nil,
                                   _ record: @escaping (Tape, ParameterArena) -> Built) -> Tape {
        var results: [[[Float]]] = []
        var planned: Tape!
        for plan in [false, true] {
            let arena = makeArena()
            let tape = Tape(rng: Philox(seed: 5), minimumBlockBytes: 1 << 16)
            let built: Built
            if plan {
                tape.poisonsGradientMemory = true
                built = tape.recordGraph { record(tape, arena) }
                planned = tape
            } else {
                built = record(tape, arena)
                tape.seal()
            }
            built.fill()
            var grads: [[Float]] = []
            for step in 0..<steps {
                arena.zeroGrads()
                tape.step = UInt64(step + 1)
                before?(tape, step)
                tape.forward()
                tape.backward(from: built.loss)
                grads = arena.parameters.map { Array($0.grads) } + [Array(UnsafeBufferPointer(start: built.x.grad!, count: built.x.count))]
            }
            results.append(grads)
        }
        XCTAssertEqual(results[0].count, results[1].count)
        for (i, (a, b)) in zip(results[0], results[1]).enumerated() {
            XCTAssertTrue(a.allSatisfy { $0.isFinite }, "\(name): tensor \(i) of the op-by-op graph is not finite")
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(name): tensor \(i) differs when planned")
        }
        return planned
    }

    /// Two transformer blocks with dropout and a padding mask (post-LN with attention dropout, then pre-LN
    /// and causal at the first two rows of each sequence, `leadingRows`), a head and cross-entropy with
    /// label smoothing.
    func testTransformerStackIsBitIdenticalAndSharesMemory() {
        let B = 3, T = 7, C = 12, V = 5
        var blocks: [TransformerBlock] = [], head: Linear!
        let makeArena = { () -> ParameterArena in
            let arena = ParameterArena()
            let scope = ParameterScope(arena: arena, rng: Philox(seed: 3))
            let w = ParameterInit.normal(std: 0.3)
            blocks = (0..<2).map { l in
                let s = scope("layer\(l)")
                return TransformerBlock(
                    attention: MultiHeadAttention(query: Linear(s("q"), inputs: C, outputs: C, initializer: w),
                                                  key: Linear(s("k"), inputs: C, outputs: C, initializer: w),
                                                  value: Linear(s("v"), inputs: C, outputs: C, initializer: w),
                                                  output: Linear(s("o"), inputs: C, outputs: C, initializer: w), heads: 3,
                                                  dropout: l == 0 ? 0.2 : 0),
                    attentionNorm: LayerNorm(s("ln1"), dimensions: C, eps: 1e-5),
                    feedForward: FeedForward(up: Linear(s("up"), inputs: C, outputs: 2 * C + 1, initializer: w),
                                             down: Linear(s("down"), inputs: 2 * C + 1, outputs: C, initializer: w),
                                             approximation: .erf),
                    feedForwardNorm: LayerNorm(s("ln2"), dimensions: C, eps: 1e-5),
                    norm: l == 0 ? .post : .pre, dropout: 0.1)
            }
            head = Linear(scope("head"), inputs: C, outputs: V, initializer: w)
            arena.seal()
            return arena
        }
        let tape = assertPlannedEqualsOpByOp("transformer", makeArena: makeArena) { tape, _ in
            let x = tape.tensor(Shape(B, T, C))
            let mask = tape.input(Shape(B, T))
            var h = blocks[0](x, keyMask: mask, causal: false, on: tape)
            h = blocks[1].leadingRows(h, count: 2, keyMask: mask, causal: true, on: tape)
            let targets = tape.intInput(count: B * 2)
            let loss = tape.crossEntropy(head(h, on: tape), targets: targets, labelSmoothing: 0.1)
            return Built(x: x, loss: loss, fill: {
                x.data.update(from: GradCheck.random(count: x.count, seed: 8), count: x.count)
                for i in 0..<B * T { mask.data[i] = i == B * T - 1 ? 0 : 1 }
                for i in 0..<B * 2 { targets[i] = Int32((i * 3) % V) }
            })
        }
        XCTAssertLessThan(tape.gradientBytes * 2, tape.unsharedGradientBytes,
                          "two layers' gradients should need well under half the memory of all of them")
        XCTAssertGreaterThan(tape.storedGradientCount, 5)
    }

    /// A two-layer bidirectional LSTM with lengths, whose per-step states are views into larger buffers,
    /// dropout between layers, and a loss over the outputs and the final hidden state.
    func testRecurrentViewsAreBitIdentical() {
        let B = 3, T = 5, I = 4, H = 6
        var rnn: Recurrent!, r: Parameter!, rFinal: Parameter!
        let makeArena = { () -> ParameterArena in
            let arena = ParameterArena()
            rnn = Recurrent(ParameterScope(arena: arena, rng: Philox(seed: 1))("rnn"), cell: .lstm, inputSize: I,
                            hiddenSize: H, layers: 2, bidirectional: true, dropout: 0.2)
            r = arena.register("r", Shape(1, B * T * 2 * H), initializer: .normal(std: 1))
            rFinal = arena.register("r_final", Shape(1, 4 * B * H), initializer: .normal(std: 1))
            arena.seal()
            arena.reinitialize(rng: Philox(seed: 2))
            return arena
        }
        assertPlannedEqualsOpByOp("lstm", makeArena: makeArena) { tape, _ in
            let x = tape.tensor(Shape(B, T, I))
            let lengths = tape.intInput(count: B)
            let (output, final) = rnn(x, lengths: lengths, on: tape)
            let a = tape.linear(output.reshaped(Shape(1, B * T * 2 * H)), weight: r, bias: nil)
            let b = tape.linear(final.hidden.reshaped(Shape(1, 4 * B * H)), weight: rFinal, bias: nil)
            let loss = tape.add(a, b)
            return Built(x: x, loss: loss, fill: {
                x.data.update(from: GradCheck.random(count: x.count, seed: 3), count: x.count)
                lengths[0] = 5; lengths[1] = 2; lengths[2] = 4
            })
        }
    }

    /// A LayerDrop region, kept in one step and skipped in the next: the skipped region's first writers do
    /// not run, so the gradients they would have zeroed or stored must still come out right.
    func testSkippedRegionsAreBitIdentical() {
        let C = 6, N = 4
        var w1: Parameter!, w2: Parameter!, r: Parameter!
        let makeArena = { () -> ParameterArena in
            let arena = ParameterArena()
            w1 = arena.register("w1", Shape(C, C), initializer: .normal(std: 0.5))
            w2 = arena.register("w2", Shape(C, C), initializer: .normal(std: 0.5))
            r = arena.register("r", Shape(1, N * C), initializer: .normal(std: 1))
            arena.seal()
            arena.reinitialize(rng: Philox(seed: 11))
            return arena
        }
        final class Flag { var skip = false }
        for pattern in [[false, true], [true, false], [true, true]] {
            let flag = Flag()
            assertPlannedEqualsOpByOp("layerdrop \(pattern)", makeArena: makeArena, before: { _, step in flag.skip = pattern[step] }) { tape, _ in
                let x = tape.tensor(Shape(N, C))
                let h = tape.gelu(tape.linear(x, weight: w1, bias: nil))
                let y = tape.skippable(h, skip: { flag.skip }) { h in
                    tape.add(h, tape.gelu(tape.linear(h, weight: w2, bias: nil)))
                }
                let loss = tape.linear(tape.add(y, h).reshaped(Shape(1, N * C)), weight: r, bias: nil)
                return Built(x: x, loss: loss, fill: { x.data.update(from: GradCheck.random(count: x.count, seed: 5), count: x.count) })
            }
        }
    }

    /// A second recording that differs from the first is refused rather than planned wrongly.
    func testPlannedTapeResetsAndRecordsAnotherGraph() {
        let arena = ParameterArena()
        let w = arena.register("w", Shape(3, 3), initializer: .normal(std: 0.5))
        arena.seal()
        arena.reinitialize(rng: Philox(seed: 1))
        let tape = Tape()
        for n in [4, 9, 2] {
            tape.reset()
            var x: Tensor!
            let loss = tape.recordGraph { () -> Tensor in
                x = tape.tensor(Shape(n, 3))
                return tape.crossEntropy(tape.linear(tape.gelu(tape.linear(x, weight: w, bias: nil)), weight: w, bias: nil),
                                         targets: tape.intInput(count: n), labelSmoothing: 0)
            }
            x.data.update(from: GradCheck.random(count: x.count, seed: 2), count: x.count)
            tape.forward()
            tape.backward(from: loss)
            XCTAssertTrue(UnsafeBufferPointer(start: x.grad!, count: x.count).allSatisfy { $0.isFinite && $0 != 0 }, "n = \(n)")
            XCTAssertLessThanOrEqual(tape.gradientBytes, tape.unsharedGradientBytes)
        }
    }
}
