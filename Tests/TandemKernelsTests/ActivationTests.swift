import XCTest
import TandemKernels
import TandemTestSupport

final class ActivationTests: KernelTestCase {
    /// 37 values spread over [-6, 6]: a full vector, a second one and a tail.
    private let x0 = GradCheck.random(count: 37, seed: 1, scale: 2.5)

    func testGELUMatchesReference() {
        for approximation in [GELUApproximation.erf, .tanh] {
            let inp = Buffer(x0 + [-30, -8, 0, 8, 30]), n = x0.count + 5
            let fast = Buffer(zeros: n), reference = Buffer(zeros: n)
            geluForward(out: fast.p, inp: inp.c, count: n, approximation: approximation)
            geluForwardReference(out: reference.p, inp: inp.c, count: n, approximation: approximation)
            assertClose(fast.array, reference.array, atol: 1e-6, rtol: 1e-5, "gelu \(approximation)")

            let dout = Buffer(random: n, seed: 2), d0 = GradCheck.random(count: n, seed: 3)
            let dinp = Buffer(d0), dinpRef = Buffer(d0)
            geluBackward(dinp: dinp.p, inp: inp.c, dout: dout.c, count: n, approximation: approximation)
            geluBackwardReference(dinp: dinpRef.p, inp: inp.c, dout: dout.c, count: n, approximation: approximation)
            assertClose(dinp.array, dinpRef.array, atol: 1e-6, rtol: 1e-5, "gelu backward \(approximation)")
        }
    }

    func testGELUGradients() {
        for approximation in [GELUApproximation.erf, .tanh] {
            gradCheck("gelu \(approximation)", x: x0, outputCount: x0.count, forward: { x in
                let out = Buffer(zeros: x.count)
                geluForward(out: out.p, inp: Buffer(x).c, count: x.count, approximation: approximation)
                return out.array
            }) { x, dout, dx in
                let g = Buffer(dx)
                geluBackward(dinp: g.p, inp: Buffer(x).c, dout: Buffer(dout).c, count: x.count, approximation: approximation)
                dx = g.array
            }
        }
    }

    /// SiLU against Double libm, including where exp overflows (x = -100 gives -0 and a zero gradient), and
    /// its gradient by finite differences; ReLU exactly, with no gradient at 0 (PyTorch's).
    func testSiLUAndReLU() {
        let inp = Buffer(x0 + [-100, -30, 0, 30]), n = x0.count + 4
        let fast = Buffer(zeros: n), dout = Buffer(random: n, seed: 2), dinp = Buffer(zeros: n)
        siluForward(out: fast.p, inp: inp.c, count: n)
        siluBackward(dinp: dinp.p, inp: inp.c, dout: dout.c, count: n)
        let reference = inp.array.map { siluReference(Double($0)) }
        assertClose(fast.array, reference.map { Float($0.value) }, atol: 1e-6, rtol: 1e-5, "silu")
        assertClose(dinp.array, zip(reference, dout.array).map { Float($0.derivative * Double($1)) }, atol: 1e-6, rtol: 1e-5,
                    "silu backward")
        gradCheck("silu", x: x0, outputCount: x0.count, forward: { x in
            let out = Buffer(zeros: x.count)
            siluForward(out: out.p, inp: Buffer(x).c, count: x.count)
            return out.array
        }) { x, dout, dx in
            let g = Buffer(dx)
            siluBackward(dinp: g.p, inp: Buffer(x).c, dout: Buffer(dout).c, count: x.count)
            dx = g.array
        }

        let relu = Buffer(zeros: n), drelu = Buffer([Float](repeating: 1, count: n))
        reluForward(out: relu.p, inp: inp.c, count: n)
        reluBackward(dinp: drelu.p, inp: inp.c, dout: dout.c, count: n)
        XCTAssertEqual(relu.array, inp.array.map { max($0, 0) })
        XCTAssertEqual(drelu.array, zip(inp.array, dout.array).map { $0 > 0 ? 1 + $1 : 1 })
    }

    func testTanh() {
        let n = x0.count
        let inp = Buffer(x0)
        let fast = Buffer(zeros: n), reference = Buffer(zeros: n)
        tanhForward(out: fast.p, inp: inp.c, count: n)
        tanhForwardReference(out: reference.p, inp: inp.c, count: n)
        assertClose(fast.array, reference.array, atol: 1e-7, rtol: 3e-7, "tanh")

        let out = Buffer(fast.array), dout = Buffer(random: n, seed: 9), d0 = GradCheck.random(count: n, seed: 10)
        let dinp = Buffer(d0), dinpRef = Buffer(d0)
        tanhBackward(dinp: dinp.p, out: out.c, dout: dout.c, count: n)
        tanhBackwardReference(dinp: dinpRef.p, out: out.c, dout: dout.c, count: n)
        assertClose(dinp.array, dinpRef.array, atol: 1e-6, rtol: 1e-5, "tanh backward")

        gradCheck("tanh", x: x0, outputCount: n, forward: { x in
            let y = Buffer(zeros: n)
            tanhForward(out: y.p, inp: Buffer(x).c, count: n)
            return y.array
        }) { x, dout, dx in
            let y = Buffer(zeros: n), g = Buffer(dx)
            tanhForward(out: y.p, inp: Buffer(x).c, count: n)
            tanhBackward(dinp: g.p, out: y.c, dout: Buffer(dout).c, count: n)
            dx = g.array
        }
    }
}
