import XCTest
import TandemKernels
import TandemTestSupport

final class MaskTokensTests: KernelTestCase {
    let N = 6, C = 5
    let mask: [Float] = [0, 1, 0, 0, 1, 1]

    func testMatchesReference() {
        let inp = Buffer(random: N * C, seed: 1), token = Buffer(random: C, seed: 2), m = Buffer(mask)
        let out = Buffer(zeros: N * C), outRef = Buffer(zeros: N * C)
        maskTokensForward(out: out.p, inp: inp.c, mask: m.c, token: token.c, N: N, C: C)
        maskTokensForwardReference(out: outRef.p, inp: inp.c, mask: m.c, token: token.c, N: N, C: C)
        XCTAssertEqual(out.array, outRef.array)
        for n in 0..<N { for c in 0..<C {
            XCTAssertEqual(out.array[n * C + c], mask[n] == 1 ? token.array[c] : inp.array[n * C + c])
        } }

        let dout = Buffer(random: N * C, seed: 3)
        let dinp0 = GradCheck.random(count: N * C, seed: 4), dtoken0 = GradCheck.random(count: C, seed: 5)
        let dinp = Buffer(dinp0), dtoken = Buffer(dtoken0), dinpRef = Buffer(dinp0), dtokenRef = Buffer(dtoken0)
        maskTokensBackward(dinp: dinp.p, dtoken: dtoken.p, dout: dout.c, mask: m.c, N: N, C: C)
        maskTokensBackwardReference(dinp: dinpRef.p, dtoken: dtokenRef.p, dout: dout.c, mask: m.c, N: N, C: C)
        assertClose(dinp.array, dinpRef.array, atol: 1e-6, rtol: 1e-6, "dinp")
        assertClose(dtoken.array, dtokenRef.array, atol: 1e-6, rtol: 1e-6, "dtoken")
    }

    func testGradients() {
        let m = Buffer(mask), token0 = GradCheck.random(count: C, seed: 6), inp0 = GradCheck.random(count: N * C, seed: 7)
        for (checked, start) in [("input", inp0), ("token", token0)] {
            let isInput = checked == "input"
            gradCheck("maskTokens \(checked)", x: start, outputCount: N * C, forward: { x in
                let out = Buffer(zeros: self.N * self.C)
                maskTokensForward(out: out.p, inp: Buffer(isInput ? x : inp0).c, mask: m.c,
                                  token: Buffer(isInput ? token0 : x).c, N: self.N, C: self.C)
                return out.array
            }) { _, dout, dx in
                let g = Buffer(dx)
                maskTokensBackward(dinp: isInput ? g.p : nil, dtoken: isInput ? nil : g.p, dout: Buffer(dout).c, mask: m.c,
                                   N: self.N, C: self.C)
                dx = g.array
            }
        }
    }
}
