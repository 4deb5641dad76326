import XCTest
import TandemKernels
import TandemTestSupport

final class PrependTokensTests: KernelTestCase {
    let B = 3, NP = 4, C = 5, K = 2
    var T: Int { NP + K }

    func testMatchesReference() {
        let inp = Buffer(random: B * NP * C, seed: 1), positions = Buffer(random: T * C, seed: 2)
        let tokens = (0..<K).map { Buffer(random: C, seed: 3 + UInt64($0)).c }
        let out = Buffer(zeros: B * T * C), outRef = Buffer(zeros: B * T * C)
        prependTokensForward(out: out.p, inp: inp.c, tokens: tokens, positions: positions.c, B: B, NP: NP, C: C)
        prependTokensForwardReference(out: outRef.p, inp: inp.c, tokens: tokens, positions: positions.c, B: B, NP: NP, C: C)
        XCTAssertEqual(out.array, outRef.array)

        let dout = Buffer(random: B * T * C, seed: 5)
        let dinp0 = GradCheck.random(count: B * NP * C, seed: 6), dpos0 = GradCheck.random(count: T * C, seed: 7)
        let dtok0 = (0..<K).map { GradCheck.random(count: C, seed: 8 + UInt64($0)) }
        let dinp = Buffer(dinp0), dpos = Buffer(dpos0), dtok = dtok0.map { Buffer($0) }
        let dinpRef = Buffer(dinp0), dposRef = Buffer(dpos0), dtokRef = dtok0.map { Buffer($0) }
        prependTokensBackward(dinp: dinp.p, dtokens: dtok.map(\.p), dpositions: dpos.p, dout: dout.c, B: B, NP: NP, C: C)
        prependTokensBackwardReference(dinp: dinpRef.p, dtokens: dtokRef.map(\.p), dpositions: dposRef.p, dout: dout.c,
                                       B: B, NP: NP, C: C)
        assertClose(dinp.array, dinpRef.array, atol: 1e-6, rtol: 1e-6, "dinp")
        assertClose(dpos.array, dposRef.array, atol: 1e-6, rtol: 1e-6, "dpositions")
        for k in 0..<K { assertClose(dtok[k].array, dtokRef[k].array, atol: 1e-6, rtol: 1e-6, "dtokens[\(k)]") }
    }

    func testGradients() {
        let inp0 = GradCheck.random(count: B * NP * C, seed: 11), pos0 = GradCheck.random(count: T * C, seed: 12)
        let tok0 = (0..<K).map { GradCheck.random(count: C, seed: 13 + UInt64($0)) }
        /// Forward with one of input, token 0, token 1 or positions replaced by `x`.
        func forward(_ which: Int, _ x: [Float]) -> [Float] {
            let out = Buffer(zeros: B * T * C)
            let tokens = (0..<K).map { Buffer(which == 1 + $0 ? x : tok0[$0]).c }
            prependTokensForward(out: out.p, inp: Buffer(which == 0 ? x : inp0).c, tokens: tokens,
                                 positions: Buffer(which == 3 ? x : pos0).c, B: B, NP: NP, C: C)
            return out.array
        }
        for (which, name, start) in [(0, "input", inp0), (1, "token 0", tok0[0]), (2, "token 1", tok0[1]), (3, "positions", pos0)] {
            gradCheck("prependTokens \(name)", x: start, outputCount: B * T * C, forward: { forward(which, $0) }) { _, dout, dx in
                let g = Buffer(dx)
                prependTokensBackward(dinp: which == 0 ? g.p : nil,
                                      dtokens: (0..<self.K).map { which == 1 + $0 ? g.p : nil },
                                      dpositions: which == 3 ? g.p : nil, dout: Buffer(dout).c,
                                      B: self.B, NP: self.NP, C: self.C)
                dx = g.array
            }
        }
    }
}
