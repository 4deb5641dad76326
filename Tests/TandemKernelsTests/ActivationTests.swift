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

    func testBiasGELU() {
        let N = 3, C = 21
        let inp0 = GradCheck.random(count: N * C, seed: 4), bias0 = GradCheck.random(count: C, seed: 5)
        for approximation in [GELUApproximation.erf, .tanh] {
            let fast = Buffer(zeros: N * C), reference = Buffer(zeros: N * C)
            biasGeluForward(out: fast.p, inp: Buffer(inp0).c, bias: Buffer(bias0).c, N: N, C: C, approximation: approximation)
            biasGeluForwardReference(out: reference.p, inp: Buffer(inp0).c, bias: Buffer(bias0).c, N: N, C: C,
                                     approximation: approximation)
            assertClose(fast.array, reference.array, atol: 1e-6, rtol: 1e-5, "bias gelu \(approximation)")

            let dout = Buffer(random: N * C, seed: 6)
            let d0 = GradCheck.random(count: N * C, seed: 7), db0 = GradCheck.random(count: C, seed: 8)
            let dinp = Buffer(d0), dbias = Buffer(db0), dinpRef = Buffer(d0), dbiasRef = Buffer(db0)
            biasGeluBackward(dinp: dinp.p, dbias: dbias.p, inp: Buffer(inp0).c, bias: Buffer(bias0).c, dout: dout.c,
                             N: N, C: C, approximation: approximation)
            biasGeluBackwardReference(dinp: dinpRef.p, dbias: dbiasRef.p, inp: Buffer(inp0).c, bias: Buffer(bias0).c,
                                      dout: dout.c, N: N, C: C, approximation: approximation)
            assertClose(dinp.array, dinpRef.array, atol: 1e-6, rtol: 1e-5, "bias gelu dinp \(approximation)")
            assertClose(dbias.array, dbiasRef.array, atol: 1e-5, rtol: 1e-5, "bias gelu dbias \(approximation)")

            func forward(_ inp: [Float], _ bias: [Float]) -> [Float] {
                let out = Buffer(zeros: N * C)
                biasGeluForward(out: out.p, inp: Buffer(inp).c, bias: Buffer(bias).c, N: N, C: C, approximation: approximation)
                return out.array
            }
            gradCheck("bias gelu dinp", x: inp0, outputCount: N * C, forward: { forward($0, bias0) }) { x, dout, dx in
                let g = Buffer(dx)
                biasGeluBackward(dinp: g.p, dbias: nil, inp: Buffer(x).c, bias: Buffer(bias0).c, dout: Buffer(dout).c,
                                 N: N, C: C, approximation: approximation)
                dx = g.array
            }
            gradCheck("bias gelu dbias", x: bias0, outputCount: N * C, forward: { forward(inp0, $0) }) { b, dout, db in
                let g = Buffer(db)
                biasGeluBackward(dinp: nil, dbias: g.p, inp: Buffer(inp0).c, bias: Buffer(b).c, dout: Buffer(dout).c,
                                 N: N, C: C, approximation: approximation)
                db = g.array
            }
        }
    }

    func testTanhAndSigmoid() {
        let n = x0.count
        let inp = Buffer(x0)
        let fast = Buffer(zeros: n), reference = Buffer(zeros: n)
        tanhForward(out: fast.p, inp: inp.c, count: n)
        tanhForwardReference(out: reference.p, inp: inp.c, count: n)
        assertClose(fast.array, reference.array, atol: 1e-7, rtol: 3e-7, "tanh")
        sigmoidForward(out: fast.p, inp: inp.c, count: n)
        sigmoidForwardReference(out: reference.p, inp: inp.c, count: n)
        assertClose(fast.array, reference.array, atol: 1e-7, rtol: 4e-7, "sigmoid")

        let out = Buffer(fast.array), dout = Buffer(random: n, seed: 9), d0 = GradCheck.random(count: n, seed: 10)
        let dinp = Buffer(d0), dinpRef = Buffer(d0)
        sigmoidBackward(dinp: dinp.p, out: out.c, dout: dout.c, count: n)
        sigmoidBackwardReference(dinp: dinpRef.p, out: out.c, dout: dout.c, count: n)
        assertClose(dinp.array, dinpRef.array, atol: 1e-6, rtol: 1e-5, "sigmoid backward")
        let dinp2 = Buffer(d0), dinpRef2 = Buffer(d0)
        tanhBackward(dinp: dinp2.p, out: out.c, dout: dout.c, count: n)
        tanhBackwardReference(dinp: dinpRef2.p, out: out.c, dout: dout.c, count: n)
        assertClose(dinp2.array, dinpRef2.array, atol: 1e-6, rtol: 1e-5, "tanh backward")

        let cases: [(String, (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void,
                     (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void)] = [
            ("tanh", { tanhForward(out: $0, inp: $1, count: $2) }, { tanhBackward(dinp: $0, out: $1, dout: $2, count: $3) }),
            ("sigmoid", { sigmoidForward(out: $0, inp: $1, count: $2) }, { sigmoidBackward(dinp: $0, out: $1, dout: $2, count: $3) }),
        ]
        for (name, forward, backward) in cases {
            gradCheck(name, x: x0, outputCount: n, forward: { x in
                let y = Buffer(zeros: n)
                forward(y.p, Buffer(x).c, n)
                return y.array
            }) { x, dout, dx in
                let y = Buffer(zeros: n), g = Buffer(dx)
                forward(y.p, Buffer(x).c, n)
                backward(g.p, y.c, Buffer(dout).c, n)
                dx = g.array
            }
        }
    }
}
