import XCTest
import TandemAutograd
import TandemKernels
import TandemTestSupport

/// BEiT's tape ops by finite differences through `backward(from:)`: a relative position table shared by
/// two attention ops (its gradient is the sum of both), LayerScale, mean pooling, [CLS] without positions,
/// and stochastic depth (an identity in eval mode, whole samples in training).
final class RelativePositionOpTests: XCTestCase {
    /// d(Σ output R)/d(x) through the tape, x a parameter registered in `arena` (R is a Linear's weight).
    private func check(_ name: String, outputCount: Int, arena: ParameterArena, x: Parameter,
                       record: (Tape) -> Tensor, file: StaticString = #filePath, line: UInt = #line) {
        let r = arena.register("r", Shape(1, outputCount), initializer: .zeros)
        arena.seal()
        arena.reinitialize(rng: Philox(seed: 3))
        let tape = Tape(minimumBlockBytes: 1 << 16)
        tape.training = false
        let output = record(tape)
        let loss = tape.linear(output.reshaped(Shape(1, outputCount)), weight: r, bias: nil)
        gradCheck(name, x: Array(x.values), outputCount: outputCount, forward: { values in
            x.values.baseAddress!.update(from: values, count: values.count)
            tape.forward()
            return Array(output.values)
        }, backward: { values, dout, dx in
            x.values.baseAddress!.update(from: values, count: values.count)
            r.values.baseAddress!.update(from: dout, count: outputCount)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: loss)
            for i in 0..<dx.count { dx[i] += x.grad[i] }
        }, file: file, line: line)
    }

    func testSharedRelativePositionTableGetsBothLayersGradients() {
        let B = 2, G = 2, T = G * G + 1, NH = 2, C = 6, R = (2 * G - 1) * (2 * G - 1) + 3
        let index = relativePositionIndex(height: G, width: G)
        for checked in ["table", "x"] {
            let arena = ParameterArena()
            let table = arena.register("table", Shape(R, NH), initializer: .normal(std: 1))
            let x = arena.register("x", Shape(B, T, C), initializer: .normal(std: 1))
            check("shared bias, d\(checked)", outputCount: B * T * C, arena: arena, x: checked == "table" ? table : x) { tape in
                let bias = tape.relativePositionBias(table: table, index: index)
                let h = tape.attention(q: Tensor(x), k: Tensor(x), v: Tensor(x), heads: NH, keyMask: nil, causal: false, scoreBias: bias)
                return tape.attention(q: h, k: h, v: Tensor(x), heads: NH, keyMask: nil, causal: false, scoreBias: bias)
            }
        }
    }

    func testLayerScaleMeanRowsAndClassToken() {
        let B = 2, NP = 3, C = 5
        for checked in ["scale", "x", "token"] {
            let arena = ParameterArena()
            let x = arena.register("x", Shape(B, NP, C), initializer: .normal(std: 1))
            let token = arena.register("cls", Shape(1, 1, C), initializer: .normal(std: 1))
            let scale = arena.register("lambda", Shape(C), initializer: .normal(std: 1))
            let target = checked == "scale" ? scale : checked == "x" ? x : token
            check("layer scale, mean rows, [CLS]: d\(checked)", outputCount: B * C, arena: arena, x: target) { tape in
                let y = tape.layerScale(tape.prependTokens(Tensor(x), tokens: [token]), scale: scale)
                return tape.meanRows(y, from: checked == "token" ? 0 : 1)
            }
        }
    }

    func testDropPathIsIdentityInEvalAndDropsSamplesInTraining() {
        let B = 64, count = 14, p: Float = 0.25
        let tape = Tape(rng: Philox(seed: 5), minimumBlockBytes: 1 << 16)
        let x = tape.tensor(Shape(B, 2, 7))
        x.data.update(from: GradCheck.random(count: B * count, seed: 1), count: B * count)
        let y = tape.dropPath(x, p: p)
        XCTAssertEqual(tape.dropPath(x, p: 0).data, x.data, "p = 0 records nothing")
        tape.training = false
        tape.forward()
        XCTAssertEqual(Array(y.values), Array(x.values), "eval mode")
        tape.training = true
        var samples: [[Bool]] = []
        for step: UInt64 in 0..<3 {
            tape.step = step
            tape.forward()
            samples.append((0..<B).map { b in
                let row = (0..<count).map { y.data[b * count + $0] }, input = (0..<count).map { x.data[b * count + $0] }
                if row.allSatisfy({ $0 == 0 }) { return false }
                XCTAssertEqual(row, input.map { $0 * (1 / (1 - p)) }, "sample \(b) step \(step)")
                return true
            })
        }
        XCTAssertNotEqual(samples[0], samples[1], "each step draws again")
        XCTAssertEqual(Double(samples.joined().filter { $0 }.count) / Double(3 * B), 0.75, accuracy: 0.1)
    }
}
