import XCTest
import TandemKernels
import TandemTestSupport

final class Conv1dTests: KernelTestCase {
    let B = 2, CIn = 3, TIn = 9, COut = 4, K = 3

    func testMatchesReference() {
        for (stride, padding) in [(1, 0), (2, 1), (3, 2)] {
            let TOut = conv1dOutputLength(TIn: TIn, K: K, stride: stride, padding: padding)
            let scratch = Buffer(zeros: conv1dScratchCount(CIn: CIn, TIn: TIn, K: K, stride: stride, padding: padding))
            let inp = Buffer(random: B * CIn * TIn, seed: 1), weight = Buffer(random: COut * CIn * K, seed: 2)
            let bias = Buffer(random: COut, seed: 3)
            for b in [bias, nil] {
                let out = Buffer(zeros: B * COut * TOut), outRef = Buffer(zeros: B * COut * TOut)
                conv1dForward(out: out.p, inp: inp.c, weight: weight.c, bias: b?.c, B: B, CIn: CIn, TIn: TIn, COut: COut,
                              K: K, stride: stride, padding: padding, scratch: scratch.p)
                conv1dForwardReference(out: outRef.p, inp: inp.c, weight: weight.c, bias: b?.c, B: B, CIn: CIn, TIn: TIn,
                                       COut: COut, K: K, stride: stride, padding: padding, scratch: scratch.p)
                assertClose(out.array, outRef.array, atol: 1e-5, rtol: 1e-5, "conv1d stride \(stride) padding \(padding)")
            }
            let dout = Buffer(random: B * COut * TOut, seed: 4)
            let g0 = [GradCheck.random(count: B * CIn * TIn, seed: 5), GradCheck.random(count: COut * CIn * K, seed: 6),
                      GradCheck.random(count: COut, seed: 7)]
            let fast = g0.map(Buffer.init), reference = g0.map(Buffer.init)
            conv1dBackward(dinp: fast[0].p, dweight: fast[1].p, dbias: fast[2].p, dout: dout.c, inp: inp.c,
                           weight: weight.c, B: B, CIn: CIn, TIn: TIn, COut: COut, K: K, stride: stride,
                           padding: padding, scratch: scratch.p)
            conv1dBackwardReference(dinp: reference[0].p, dweight: reference[1].p, dbias: reference[2].p, dout: dout.c,
                                    inp: inp.c, weight: weight.c, B: B, CIn: CIn, TIn: TIn, COut: COut, K: K,
                                    stride: stride, padding: padding, scratch: scratch.p)
            for i in 0..<3 { assertClose(fast[i].array, reference[i].array, atol: 1e-5, rtol: 1e-5, "gradient \(i)") }
        }
    }

    func testGradients() {
        let stride = 2, padding = 1
        let TOut = conv1dOutputLength(TIn: TIn, K: K, stride: stride, padding: padding)
        let scratch = Buffer(zeros: conv1dScratchCount(CIn: CIn, TIn: TIn, K: K, stride: stride, padding: padding))
        let inputs = [GradCheck.random(count: B * CIn * TIn, seed: 1), GradCheck.random(count: COut * CIn * K, seed: 2),
                      GradCheck.random(count: COut, seed: 3)]
        for (index, name) in ["dinp", "dweight", "dbias"].enumerated() {
            func with(_ x: [Float]) -> [Buffer] { var all = inputs; all[index] = x; return all.map(Buffer.init) }
            gradCheck("conv1d \(name)", x: inputs[index], outputCount: B * COut * TOut, forward: { x in
                let a = with(x), out = Buffer(zeros: self.B * self.COut * TOut)
                conv1dForward(out: out.p, inp: a[0].c, weight: a[1].c, bias: a[2].c, B: self.B, CIn: self.CIn,
                              TIn: self.TIn, COut: self.COut, K: self.K, stride: stride, padding: padding,
                              scratch: scratch.p)
                return out.array
            }) { x, dout, dx in
                let a = with(x), g = Buffer(dx)
                conv1dBackward(dinp: index == 0 ? g.p : nil, dweight: index == 1 ? g.p : nil,
                               dbias: index == 2 ? g.p : nil, dout: Buffer(dout).c, inp: a[0].c, weight: a[1].c,
                               B: self.B, CIn: self.CIn, TIn: self.TIn, COut: self.COut, K: self.K, stride: stride,
                               padding: padding, scratch: scratch.p)
                dx = g.array
            }
        }
    }
}
