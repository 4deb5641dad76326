import XCTest
import TandemKernels
import TandemTestSupport

final class LayerNormTests: KernelTestCase {
    let N = 3, C = 21
    let eps: Float = 1e-5

    func testForwardAndBackwardMatchReference() {
        let inp = Buffer(random: N * C, seed: 1, scale: 2), weight = Buffer(random: C, seed: 2), bias = Buffer(random: C, seed: 3)
        let out = Buffer(zeros: N * C), mean = Buffer(zeros: N), rstd = Buffer(zeros: N)
        let outRef = Buffer(zeros: N * C), meanRef = Buffer(zeros: N), rstdRef = Buffer(zeros: N)
        layerNormForward(out: out.p, mean: mean.p, rstd: rstd.p, inp: inp.c, weight: weight.c, bias: bias.c,
                         N: N, C: C, eps: eps)
        layerNormForwardReference(out: outRef.p, mean: meanRef.p, rstd: rstdRef.p, inp: inp.c, weight: weight.c,
                                  bias: bias.c, N: N, C: C, eps: eps)
        assertClose(out.array, outRef.array, atol: 1e-5, rtol: 1e-5, "out")
        assertClose(mean.array, meanRef.array, atol: 1e-6, rtol: 1e-5, "mean")
        assertClose(rstd.array, rstdRef.array, atol: 1e-6, rtol: 1e-5, "rstd")

        let dout = Buffer(random: N * C, seed: 4)
        let g0 = [GradCheck.random(count: N * C, seed: 5), GradCheck.random(count: C, seed: 6), GradCheck.random(count: C, seed: 7)]
        let fast = g0.map(Buffer.init), reference = g0.map(Buffer.init)
        layerNormBackward(dinp: fast[0].p, dweight: fast[1].p, dbias: fast[2].p, dout: dout.c, inp: inp.c,
                          weight: weight.c, mean: mean.c, rstd: rstd.c, N: N, C: C)
        layerNormBackwardReference(dinp: reference[0].p, dweight: reference[1].p, dbias: reference[2].p, dout: dout.c,
                                   inp: inp.c, weight: weight.c, mean: mean.c, rstd: rstd.c, N: N, C: C)
        for i in 0..<3 { assertClose(fast[i].array, reference[i].array, atol: 1e-5, rtol: 1e-4, "gradient \(i)") }
    }

    func testGradients() {
        let inp0 = GradCheck.random(count: N * C, seed: 1, scale: 2)
        let w0 = GradCheck.random(count: C, seed: 2), b0 = GradCheck.random(count: C, seed: 3)
        func forward(_ inp: [Float], _ w: [Float], _ b: [Float]) -> (Buffer, Buffer, Buffer) {
            let out = Buffer(zeros: N * C), mean = Buffer(zeros: N), rstd = Buffer(zeros: N)
            layerNormForward(out: out.p, mean: mean.p, rstd: rstd.p, inp: Buffer(inp).c, weight: Buffer(w).c,
                             bias: Buffer(b).c, N: N, C: C, eps: eps)
            return (out, mean, rstd)
        }
        func backward(_ inp: [Float], _ w: [Float], _ dout: [Float], dinp: Buffer?, dweight: Buffer?, dbias: Buffer?) {
            let (_, mean, rstd) = forward(inp, w, b0)
            layerNormBackward(dinp: dinp?.p, dweight: dweight?.p, dbias: dbias?.p, dout: Buffer(dout).c,
                              inp: Buffer(inp).c, weight: Buffer(w).c, mean: mean.c, rstd: rstd.c, N: N, C: C)
        }
        gradCheck("layernorm dinp", x: inp0, outputCount: N * C, forward: { forward($0, w0, b0).0.array }) { x, dout, dx in
            let g = Buffer(dx)
            backward(x, w0, dout, dinp: g, dweight: nil, dbias: nil)
            dx = g.array
        }
        gradCheck("layernorm dweight", x: w0, outputCount: N * C, forward: { forward(inp0, $0, b0).0.array }) { w, dout, dw in
            let g = Buffer(dw)
            backward(inp0, w, dout, dinp: nil, dweight: g, dbias: nil)
            dw = g.array
        }
        gradCheck("layernorm dbias", x: b0, outputCount: N * C, forward: { forward(inp0, w0, $0).0.array }) { _, dout, db in
            let g = Buffer(db)
            backward(inp0, w0, dout, dinp: nil, dweight: nil, dbias: g)
            db = g.array
        }
    }
}
