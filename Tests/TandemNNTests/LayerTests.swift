import XCTest
import TandemAutograd
import TandemNN
import TandemTestSupport

final class LayerTests: XCTestCase {
    func testScopesNameParametersInRegistrationOrder() {
        let arena = ParameterArena()
        let root = ParameterScope(arena: arena, rng: Philox(seed: 0))("encoder")
        _ = Linear(root("layer")("0")("query"), inputs: 4, outputs: 3, initializer: .normal(std: 0.02))
        _ = LayerNorm(root("LayerNorm"), dimensions: 3, eps: 1e-12)
        _ = Linear(root("head"), inputs: 3, outputs: 2, bias: false, initializer: .zeros)
        XCTAssertEqual(arena.parameters.map(\.name), [
            "encoder.layer.0.query.weight", "encoder.layer.0.query.bias",
            "encoder.LayerNorm.weight", "encoder.LayerNorm.bias", "encoder.head.weight"])
        XCTAssertEqual(arena.parameters.map(\.shape), [Shape(3, 4), Shape(3), Shape(3), Shape(3), Shape(2, 3)])
        // Weight decay skips biases and LayerNorm parameters (BERT; Loshchilov & Hutter's AdamW).
        XCTAssertEqual(arena.parameters.map(\.decays), [true, false, false, false, true])
    }

    func testLinearIsXTimesWeightTransposedPlusBias() {
        let arena = ParameterArena()
        let lin = Linear(ParameterScope(arena: arena, rng: Philox(seed: 2))("l"), inputs: 3, outputs: 2,
                         initializer: .uniform(bound: 1))
        arena.seal()
        lin.bias!.value[0] = 0.5; lin.bias!.value[1] = -0.25
        let tape = Tape()
        let x = tape.input(Shape(2, 3))
        for i in 0..<6 { x.data[i] = Float(i) - 2 }
        let y = lin(x, on: tape)
        tape.forward()
        XCTAssertEqual(y.shape, Shape(2, 2))
        var expected = [Float](repeating: 0, count: 4)
        for n in 0..<2 { for o in 0..<2 {
            var acc = lin.bias!.value[o]
            for c in 0..<3 { acc += x.data[n * 3 + c] * lin.weight.value[o * 3 + c] }
            expected[n * 2 + o] = acc
        } }
        assertClose(Array(y.values), expected, atol: 1e-6, rtol: 1e-6)
    }
}
