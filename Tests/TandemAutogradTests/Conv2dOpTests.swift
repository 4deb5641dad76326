import XCTest
import TandemAutograd
import TandemKernels
import TandemTestSupport

/// The image ops on a tape, in a VQ-VAE's order at small sizes: pixels (B, C, H, W) made channels-last,
/// a kernel 4 stride 2 padding 1 conv2d down and ReLU (the encoder), a 1x1 conv2d, nearest-neighbour
/// upsampling and a kernel 3 padding 1 conv2d (the decoder), read out by a Linear into a scalar loss.
/// Every gradient is checked against finite differences of that loss, replayed by the tape.
final class Conv2dOpTests: XCTestCase {
    let B = 2, C = 3, H = 8, W = 8, C1 = 4, C2 = 5
    var outputCount: Int { B * H * W * C }

    struct Model {
        let arena: ParameterArena
        let down, downBias, mix, mixBias, up, upBias, readout: Parameter
        let tape: Tape
        let pixels, x, h1, h2, u, h3, loss: Tensor
    }

    /// Records the graph; the parameters come from `seed`, the pixels from seed + 1. Scales keep the
    /// loss near 1, so that its Float rounding stays far below the finite differences.
    func makeModel(seed: UInt64 = 33, pixelsNeedGradient: Bool = true) -> Model {
        let arena = ParameterArena()
        let down = arena.register("encoder.conv.weight", Shape(C1, C, 4, 4), initializer: .normal(std: 0.3))
        let downBias = arena.register("encoder.conv.bias", Shape(C1), initializer: .normal(std: 0.3))
        let mix = arena.register("encoder.proj.weight", Shape(C2, C1, 1, 1), initializer: .normal(std: 0.5))
        let mixBias = arena.register("encoder.proj.bias", Shape(C2), initializer: .normal(std: 0.5))
        let up = arena.register("decoder.conv.weight", Shape(C, C2, 3, 3), initializer: .normal(std: 0.3))
        let upBias = arena.register("decoder.conv.bias", Shape(C), initializer: .normal(std: 0.3))
        let readout = arena.register("readout", Shape(1, B * H * W * C), initializer: .normal(std: 0.1))
        arena.seal()
        arena.reinitialize(rng: Philox(seed: seed))
        let tape = Tape(minimumBlockBytes: 1 << 16)
        let pixels = pixelsNeedGradient ? tape.tensor(Shape(B, C, H, W)) : tape.input(Shape(B, C, H, W))
        pixels.data.update(from: GradCheck.random(count: pixels.count, seed: seed + 1), count: pixels.count)
        let x = tape.channelsLast(pixels)
        let h1 = tape.conv2d(x, weight: down, bias: downBias, stride: 2, padding: 1)
        let h2 = tape.conv2d(tape.activation(h1, .relu), weight: mix, bias: mixBias)
        let u = tape.upsampleNearest2x(h2)
        let h3 = tape.conv2d(u, weight: up, bias: upBias, padding: 1)
        let loss = tape.linear(h3.reshaped(Shape(1, B * H * W * C)), weight: readout, bias: nil)
        return Model(arena: arena, down: down, downBias: downBias, mix: mix, mixBias: mixBias, up: up, upBias: upBias,
                     readout: readout, tape: tape, pixels: pixels, x: x, h1: h1, h2: h2, u: u, h3: h3, loss: loss)
    }

    func testShapesAndForwardMatchReferences() {
        let m = makeModel()
        m.tape.forward()
        XCTAssertEqual(m.x.shape, Shape(B, H, W, C))
        XCTAssertEqual(m.h1.shape, Shape(B, H / 2, W / 2, C1))
        XCTAssertEqual(m.h2.shape, Shape(B, H / 2, W / 2, C2))
        XCTAssertEqual(m.u.shape, Shape(B, H, W, C2))
        XCTAssertEqual(m.h3.shape, Shape(B, H, W, C))
        var x = [Float](repeating: 0, count: m.x.count)
        for b in 0..<B {
            for c in 0..<C {
                for s in 0..<H * W { x[(b * H * W + s) * C + c] = m.pixels.data[(b * C + c) * H * W + s] }
            }
        }
        XCTAssertEqual(Array(m.x.values), x)
        var h1 = [Float](repeating: 0, count: m.h1.count)
        conv2dForwardReference(out: &h1, inp: x, weight: m.down.value, bias: m.downBias.value, B: B, H: H, W: W,
                               CIn: C, COut: C1, KH: 4, KW: 4, stride: 2, padding: 1)
        assertClose(Array(m.h1.values), h1, atol: 1e-5, rtol: 1e-5, "encoder conv")
        var h2 = [Float](repeating: 0, count: m.h2.count)
        conv2dForwardReference(out: &h2, inp: h1.map { max($0, 0) }, weight: m.mix.value, bias: m.mixBias.value, B: B,
                               H: H / 2, W: W / 2, CIn: C1, COut: C2, KH: 1, KW: 1, stride: 1, padding: 0)
        assertClose(Array(m.h2.values), h2, atol: 1e-5, rtol: 1e-5, "1x1 conv")
        var u = [Float](repeating: 0, count: m.u.count)
        upsampleNearest2xForwardReference(out: &u, inp: h2, B: B, H: H / 2, W: W / 2, C: C2)
        assertClose(Array(m.u.values), u, atol: 1e-5, rtol: 1e-5, "upsample")
        var h3 = [Float](repeating: 0, count: m.h3.count)
        conv2dForwardReference(out: &h3, inp: u, weight: m.up.value, bias: m.upBias.value, B: B, H: H, W: W,
                               CIn: C2, COut: C, KH: 3, KW: 3, stride: 1, padding: 1)
        assertClose(Array(m.h3.values), h3, atol: 1e-5, rtol: 1e-5, "decoder conv")
    }

    /// d(loss)/d(every parameter and the pixels) against central differences of the tape's loss. ReLU
    /// has a kink at 0, which a difference across it would straddle: a step of 1e-2 in one pixel, weight
    /// or bias of the encoder conv moves its outputs by at most 1e-2 max(|w|, |x|, 1), so the test first
    /// checks that no pre-activation lies that close to 0 (the seed is chosen so; most seeds have one).
    func testGradientsOfTheTapeLoss() {
        let m = makeModel()
        m.tape.forward()
        let margin = m.h1.values.map(abs).min()!
        let reach = 1e-2 * max(m.pixels.values.map(abs).max()!, m.down.values.map(abs).max()!, 1)
        XCTAssertGreaterThan(margin, reach, "a ReLU input near its kink: pick another seed")
        let tensors: [(String, Tensor)] = [("pixels", m.pixels)]
            + [m.down, m.downBias, m.mix, m.mixBias, m.up, m.upBias].map { ($0.name, Tensor($0)) }
        gradCheckTapeLoss(m.tape, loss: m.loss, arena: m.arena, tensors: tensors)
    }

    /// Pixels that need no gradient (a tape input, as a batch's pixel_values) leave the parameters'
    /// gradients as they are with pixels that do.
    func testPixelsWithoutGradient() {
        let m = makeModel(), n = makeModel(pixelsNeedGradient: false)
        XCTAssertNil(n.x.grad)
        for model in [m, n] {
            model.tape.forward()
            model.tape.backward(from: model.loss)
        }
        XCTAssertEqual(m.loss.data[0], n.loss.data[0])
        for (p, q) in zip(m.arena.parameters, n.arena.parameters) {
            XCTAssertEqual(Array(p.grads), Array(q.grads), p.name)
        }
    }

    /// Every parameter's gradient-ready hook fires once per backward.
    func testGradientHooksFireForEveryParameter() {
        let m = makeModel()
        assertGradientHooksFireOncePerParameter(m.tape, loss: m.loss, arena: m.arena)
    }
}
