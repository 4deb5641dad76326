import XCTest
import TandemAutograd
import TandemKernels
import TandemTestSupport

/// The convolutional front-end ops on a tape, in wav2vec 2.0's order at small sizes: a grouped, padded
/// conv1d whose weight is weightNorm(g, v) (the positional convolution, SamePad dropping the last output)
/// and GELU, GroupNorm with one group per channel, then a strided conv1d with a Parameter weight (a feature-encoder
/// layer), read out by a Linear into a scalar loss. Every gradient is checked against finite
/// differences of that loss, replayed by the tape.
final class ConvolutionOpTests: XCTestCase {
    let B = 2, T = 10, C = 6, groups = 3, K = 4, COut = 4, K2 = 3, stride2 = 2
    var TOut2: Int { (T - K2) / stride2 + 1 }

    struct Model {
        let arena: ParameterArena
        let g, v, posBias, normWeight, normBias, weight2, bias2, readout: Parameter
        let tape: Tape
        let x, w, pos, loss: Tensor
    }

    /// Records the graph; the parameters come from `seed`, x from seed + 1.
    func makeModel(seed: UInt64 = 5) -> Model {
        let arena = ParameterArena()
        let g = arena.register("pos_conv.weight_g", Shape(1, 1, K), initializer: .normal(std: 1))
        let v = arena.register("pos_conv.weight_v", Shape(C, C / groups, K), initializer: .normal(std: 1))
        let posBias = arena.register("pos_conv.bias", Shape(C), initializer: .normal(std: 1))
        let normWeight = arena.register("layer_norm.weight", Shape(C), initializer: .normal(std: 1))
        let normBias = arena.register("layer_norm.bias", Shape(C), initializer: .normal(std: 1))
        let weight2 = arena.register("conv.weight", Shape(COut, C, K2), initializer: .normal(std: 1))
        let bias2 = arena.register("conv.bias", Shape(COut), initializer: .normal(std: 1))
        let readout = arena.register("readout", Shape(1, B * TOut2 * COut), initializer: .normal(std: 1))
        arena.seal()
        arena.reinitialize(rng: Philox(seed: seed))
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let x = tape.tensor(Shape(B, T, C))
        x.data.update(from: GradCheck.random(count: x.count, seed: seed + 1), count: x.count)
        let w = tape.weightNorm(g: g, v: v, dim: 2)
        let pos = tape.conv1d(x, weight: w, bias: posBias, padding: K / 2, groups: groups, outputLength: T)
        // GELU as after wav2vec 2.0's positional convolution; without it the normalisation would cancel
        // pos_conv.bias (a constant per channel over T), whose gradient would be exactly 0.
        let normed = tape.channelNormOverTime(tape.gelu(pos), weight: normWeight, bias: normBias, eps: 1e-5)
        let y = tape.conv1d(normed, weight: weight2, bias: bias2, stride: stride2)
        let loss = tape.linear(y.reshaped(Shape(1, B * TOut2 * COut)), weight: readout, bias: nil)
        return Model(arena: arena, g: g, v: v, posBias: posBias, normWeight: normWeight, normBias: normBias,
                     weight2: weight2, bias2: bias2, readout: readout, tape: tape, x: x, w: w, pos: pos, loss: loss)
    }

    func testShapesAndForwardMatchReferences() {
        let m = makeModel()
        m.tape.forward()
        XCTAssertEqual(m.w.shape, m.v.shape)
        XCTAssertEqual(m.pos.shape, Shape(B, T, C))
        XCTAssertEqual(m.loss.shape, Shape(1, 1))
        var wRef = [Float](repeating: 0, count: m.v.count), normRef = [Float](repeating: 0, count: K)
        weightNormForwardReference(out: &wRef, norm: &normRef, g: m.g.value, v: m.v.value, outer: m.v.count / K, D: K, inner: 1)
        assertClose(Array(m.w.values), wRef, atol: 1e-6, rtol: 1e-5, "weight norm")
        var posRef = [Float](repeating: 0, count: m.pos.count)
        conv1dForwardReference(out: &posRef, inp: m.x.data, weight: wRef, bias: m.posBias.value, B: B, T: T, CIn: C,
                               COut: C, K: K, stride: 1, padding: K / 2, groups: groups, TOut: T)
        assertClose(Array(m.pos.values), posRef, atol: 1e-5, rtol: 1e-5, "positional convolution")
    }

    /// d(loss)/d(every parameter and x) against central differences of the tape's loss.
    func testGradientsOfTheTapeLoss() {
        let m = makeModel()
        let tensors: [(String, Tensor)] = [("x", m.x)] + [m.g, m.v, m.posBias, m.normWeight, m.normBias, m.weight2, m.bias2]
            .map { ($0.name, Tensor($0)) }
        gradCheckTapeLoss(m.tape, loss: m.loss, arena: m.arena, tensors: tensors)
    }

    /// Every parameter's gradient-ready hook fires once per backward, g and v included (they are the
    /// weightNorm op's parameters, not the conv1d's).
    func testGradientHooksFireForEveryParameter() {
        let m = makeModel()
        assertGradientHooksFireOncePerParameter(m.tape, loss: m.loss, arena: m.arena)
    }

    /// conv1d with the weight as a tape tensor computes what it computes with the same values in a
    /// Parameter, and the tensor's gradient is exactly the Parameter's gradient.
    func testWeightTensorOverloadMatchesParameterOverload() {
        let m = makeModel()
        m.tape.forward()
        m.tape.backward(from: m.loss)

        let arena = ParameterArena()
        let weight = arena.register("pos_conv.weight", m.v.shape, initializer: .zeros)
        arena.seal()
        weight.value.update(from: m.w.data, count: weight.count)
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let x = tape.tensor(Shape(B, T, C))
        x.data.update(from: m.x.data, count: x.count)
        let pos = tape.conv1d(x, weight: weight, bias: m.posBias, padding: K / 2, groups: groups, outputLength: T)
        let normed = tape.channelNormOverTime(tape.gelu(pos), weight: m.normWeight, bias: m.normBias, eps: 1e-5)
        let y = tape.conv1d(normed, weight: m.weight2, bias: m.bias2, stride: stride2)
        let loss = tape.linear(y.reshaped(Shape(1, B * TOut2 * COut)), weight: m.readout, bias: nil)
        tape.forward()
        tape.backward(from: loss)
        XCTAssertEqual(Array(pos.values), Array(m.pos.values))
        XCTAssertEqual(Array(weight.grads), Array(UnsafeBufferPointer(start: m.w.grad!, count: m.w.count)))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: x.grad!, count: x.count)),
                       Array(UnsafeBufferPointer(start: m.x.grad!, count: x.count)))
        XCTAssertNotEqual(Array(weight.grads), [Float](repeating: 0, count: weight.count))
    }

    /// geluConv1d(x) gives the bits of conv1d(gelu(x)), output and every gradient (x's included, which
    /// it stores), in training and over a second step, and holds no activation for gelu(x).
    func testGELUConv1dMatchesGELUThenConv1d() {
        var results: [[Float]] = [], bytes: [Int] = []
        for fused in [false, true] {
            let m = makeModel()  // its parameters; a graph of its own below
            let tape = Tape(minimumBlockBytes: 1 << 16)
            let x = tape.tensor(Shape(B, T, C))
            x.data.update(from: m.x.data, count: x.count)
            // x's own producer, so that its gradient flows on to the input.
            let z = tape.channelNormOverTime(x, weight: m.normWeight, bias: m.normBias, eps: 1e-5)
            let before = tape.values.bytesInUse
            let y = fused ? tape.geluConv1d(z, weight: m.weight2, bias: m.bias2, stride: stride2)
                : tape.conv1d(tape.gelu(z), weight: m.weight2, bias: m.bias2, stride: stride2)
            bytes.append(tape.values.bytesInUse - before)
            let loss = tape.linear(y.reshaped(Shape(1, B * TOut2 * COut)), weight: m.readout, bias: nil)
            tape.seal()
            var out: [Float] = []
            for _ in 0..<2 {
                m.arena.zeroGrads()
                tape.forward()
                tape.backward(from: loss)
                out += Array(y.values) + Array(m.arena.grads) + Array(UnsafeBufferPointer(start: x.grad!, count: x.count))
                    + Array(UnsafeBufferPointer(start: z.grad!, count: z.count))
            }
            results.append(out)
        }
        XCTAssertEqual(results[1], results[0])
        XCTAssertGreaterThanOrEqual(bytes[0] - bytes[1], B * T * C * MemoryLayout<Float>.size)
    }
}
