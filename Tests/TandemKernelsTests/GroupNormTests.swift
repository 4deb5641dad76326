import XCTest
import TandemKernels
import TandemTestSupport

/// GroupNorm with one group per channel over channels-last (B, T, C): 19 channels (one full 16-lane chunk
/// and a tail), against the Double reference and finite differences.
final class GroupNormTests: KernelTestCase {
    let B = 2, T = 7, C = 19
    let eps: Float = 1e-5

    func testForwardAndBackwardMatchReference() {
        let inp = Buffer(random: B * T * C, seed: 1, scale: 2), weight = Buffer(random: C, seed: 2), bias = Buffer(random: C, seed: 3)
        let out = Buffer(zeros: B * T * C), mean = Buffer(zeros: B * C), rstd = Buffer(zeros: B * C)
        let outRef = Buffer(zeros: B * T * C), meanRef = Buffer(zeros: B * C), rstdRef = Buffer(zeros: B * C)
        channelNormOverTimeForward(out: out.p, mean: mean.p, rstd: rstd.p, inp: inp.c, weight: weight.c, bias: bias.c,
                                   B: B, T: T, C: C, eps: eps)
        channelNormOverTimeForwardReference(out: outRef.p, mean: meanRef.p, rstd: rstdRef.p, inp: inp.c, weight: weight.c,
                                            bias: bias.c, B: B, T: T, C: C, eps: eps)
        assertClose(out.array, outRef.array, atol: 1e-5, rtol: 1e-5, "out")
        assertClose(mean.array, meanRef.array, atol: 1e-6, rtol: 1e-5, "mean")
        assertClose(rstd.array, rstdRef.array, atol: 1e-6, rtol: 1e-5, "rstd")

        let dout = Buffer(random: B * T * C, seed: 4)
        let g0 = [GradCheck.random(count: B * T * C, seed: 5), GradCheck.random(count: C, seed: 6), GradCheck.random(count: C, seed: 7)]
        let fast = g0.map(Buffer.init), reference = g0.map(Buffer.init)
        channelNormOverTimeBackward(dinp: fast[0].p, dweight: fast[1].p, dbias: fast[2].p, dout: dout.c, inp: inp.c,
                                    weight: weight.c, mean: mean.c, rstd: rstd.c, B: B, T: T, C: C)
        channelNormOverTimeBackwardReference(dinp: reference[0].p, dweight: reference[1].p, dbias: reference[2].p,
                                             dout: dout.c, inp: inp.c, weight: weight.c, mean: mean.c, rstd: rstd.c,
                                             B: B, T: T, C: C)
        for i in 0..<3 { assertClose(fast[i].array, reference[i].array, atol: 1e-5, rtol: 1e-4, "gradient \(i)") }
    }

    /// Each (b, c) is normalised on its own: a channel shifted and scaled in one batch element leaves the
    /// normalised output unchanged there and everywhere else.
    func testStatisticsArePerBatchElementAndChannel() {
        let x = GradCheck.random(count: B * T * C, seed: 1)
        var moved = x
        for t in 0..<T { moved[(1 * T + t) * C + 5] = 3 * moved[(1 * T + t) * C + 5] + 100 }
        let ones = Buffer([Float](repeating: 1, count: C)), zeros = Buffer(zeros: C)
        func normalise(_ v: [Float]) -> [Float] {
            let out = Buffer(zeros: B * T * C), mean = Buffer(zeros: B * C), rstd = Buffer(zeros: B * C)
            channelNormOverTimeForward(out: out.p, mean: mean.p, rstd: rstd.p, inp: Buffer(v).c, weight: ones.c,
                                       bias: zeros.c, B: B, T: T, C: C, eps: 0)
            return out.array
        }
        assertClose(normalise(moved), normalise(x), atol: 1e-4, rtol: 1e-4, "shifted and scaled channel")
    }

    /// 48,000 rows (3 s of 16 kHz audio after the first stride of 5) around a large offset: the Double
    /// sums keep mean and rstd to Float precision.
    func testLongSequenceStatistics() {
        let T = 48_000, C = 3
        let noise = GradCheck.random(count: T * C, seed: 8)
        let inp = Buffer((0..<T * C).map { 300 + noise[$0] })
        let ones = Buffer([Float](repeating: 1, count: C)), zeros = Buffer(zeros: C)
        let out = Buffer(zeros: T * C), mean = Buffer(zeros: C), rstd = Buffer(zeros: C)
        let outRef = Buffer(zeros: T * C), meanRef = Buffer(zeros: C), rstdRef = Buffer(zeros: C)
        channelNormOverTimeForward(out: out.p, mean: mean.p, rstd: rstd.p, inp: inp.c, weight: ones.c, bias: zeros.c,
                                   B: 1, T: T, C: C, eps: 1e-5)
        channelNormOverTimeForwardReference(out: outRef.p, mean: meanRef.p, rstd: rstdRef.p, inp: inp.c, weight: ones.c,
                                            bias: zeros.c, B: 1, T: T, C: C, eps: 1e-5)
        assertClose(mean.array, meanRef.array, atol: 0, rtol: 2e-7, "mean")
        assertClose(rstd.array, rstdRef.array, atol: 0, rtol: 1e-6, "rstd")
        assertClose(out.array, outRef.array, atol: 1e-4, rtol: 1e-4, "out")
    }

    func testGradients() {
        let inp0 = GradCheck.random(count: B * T * C, seed: 1, scale: 2)
        let w0 = GradCheck.random(count: C, seed: 2), b0 = GradCheck.random(count: C, seed: 3)
        func forward(_ inp: [Float], _ w: [Float], _ b: [Float]) -> (Buffer, Buffer, Buffer) {
            let out = Buffer(zeros: B * T * C), mean = Buffer(zeros: B * C), rstd = Buffer(zeros: B * C)
            channelNormOverTimeForward(out: out.p, mean: mean.p, rstd: rstd.p, inp: Buffer(inp).c, weight: Buffer(w).c,
                                       bias: Buffer(b).c, B: B, T: T, C: C, eps: eps)
            return (out, mean, rstd)
        }
        func backward(_ inp: [Float], _ w: [Float], _ dout: [Float], dinp: Buffer?, dweight: Buffer?, dbias: Buffer?) {
            let (_, mean, rstd) = forward(inp, w, b0)
            channelNormOverTimeBackward(dinp: dinp?.p, dweight: dweight?.p, dbias: dbias?.p, dout: Buffer(dout).c,
                                        inp: Buffer(inp).c, weight: Buffer(w).c, mean: mean.c, rstd: rstd.c,
                                        B: B, T: T, C: C)
        }
        gradCheck("channel norm dinp", x: inp0, outputCount: B * T * C, forward: { forward($0, w0, b0).0.array }) { x, dout, dx in
            let g = Buffer(dx)
            backward(x, w0, dout, dinp: g, dweight: nil, dbias: nil)
            dx = g.array
        }
        gradCheck("channel norm dweight", x: w0, outputCount: B * T * C, forward: { forward(inp0, $0, b0).0.array }) { w, dout, dw in
            let g = Buffer(dw)
            backward(inp0, w, dout, dinp: nil, dweight: g, dbias: nil)
            dw = g.array
        }
        gradCheck("channel norm dbias", x: b0, outputCount: B * T * C, forward: { forward(inp0, w0, $0).0.array }) { _, dout, db in
            let g = Buffer(db)
            backward(inp0, w0, dout, dinp: nil, dweight: nil, dbias: g)
            db = g.array
        }
    }
}
