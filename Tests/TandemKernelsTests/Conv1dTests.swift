import XCTest
import TandemKernels
import TandemTestSupport

/// The channels-last conv1d against its naive reference and finite differences, on small odd shapes that
/// reach every path: taps merged `stride` at a time (K > stride, K == stride, K < stride, K not a
/// multiple of stride, one input channel as wav2vec 2.0's first layer), one product per tap (padding,
/// groups 2 and 3, rows that no tap reaches), and outputs dropped from the end.
final class Conv1dTests: KernelTestCase {
    struct Case: CustomStringConvertible {
        let B: Int, T: Int, CIn: Int, COut: Int, K: Int, stride: Int, padding: Int, groups: Int
        /// Outputs dropped from the end of the full length.
        var drop = 0
        var TOut: Int { conv1dOutputLength(T: T, K: K, stride: stride, padding: padding) - drop }
        var description: String {
            "B \(B) T \(T) CIn \(CIn) COut \(COut) K \(K) stride \(stride) padding \(padding) groups \(groups) TOut \(TOut)"
        }
        var xCount: Int { B * T * CIn }
        var wCount: Int { COut * (CIn / groups) * K }
        var yCount: Int { B * TOut * COut }
    }

    let cases = [
        Case(B: 2, T: 11, CIn: 3, COut: 4, K: 3, stride: 2, padding: 0, groups: 1),   // K > stride
        Case(B: 2, T: 10, CIn: 3, COut: 4, K: 2, stride: 2, padding: 0, groups: 1),   // K == stride
        Case(B: 2, T: 12, CIn: 3, COut: 4, K: 2, stride: 3, padding: 0, groups: 1),   // K < stride, input left over
        Case(B: 1, T: 13, CIn: 2, COut: 3, K: 5, stride: 2, padding: 0, groups: 1),   // taps 2 + 2 + 1
        Case(B: 2, T: 15, CIn: 1, COut: 5, K: 5, stride: 2, padding: 0, groups: 1),   // one input channel
        Case(B: 2, T: 7, CIn: 3, COut: 4, K: 3, stride: 1, padding: 0, groups: 1, drop: 1),
        Case(B: 2, T: 9, CIn: 3, COut: 4, K: 4, stride: 1, padding: 2, groups: 1, drop: 1),  // wav2vec2's SamePad
        Case(B: 2, T: 9, CIn: 4, COut: 6, K: 3, stride: 1, padding: 1, groups: 2),
        Case(B: 1, T: 10, CIn: 6, COut: 3, K: 3, stride: 2, padding: 1, groups: 3),
        Case(B: 2, T: 8, CIn: 6, COut: 9, K: 4, stride: 1, padding: 0, groups: 3),    // groups without padding
        Case(B: 1, T: 5, CIn: 2, COut: 2, K: 2, stride: 2, padding: 3, groups: 1),    // edge rows no tap reaches
        Case(B: 2, T: 9, CIn: 4, COut: 2, K: 2, stride: 3, padding: 1, groups: 2, drop: 1),
    ]

    func forward(_ c: Case, x: [Float], w: [Float], bias: [Float]?) -> [Float] {
        let out = Buffer(zeros: c.yCount)
        let scratch = Buffer(random: conv1dScratchCount(CIn: c.CIn, COut: c.COut, K: c.K, groups: c.groups), seed: 99)
        conv1dForward(out: out.p, inp: Buffer(x).c, weight: Buffer(w).c, bias: bias.map { Buffer($0).c }, B: c.B, T: c.T,
                      CIn: c.CIn, COut: c.COut, K: c.K, stride: c.stride, padding: c.padding, groups: c.groups,
                      TOut: c.TOut, scratch: scratch.p)
        return out.array
    }

    func backward(_ c: Case, x: [Float], w: [Float], dout: [Float], dx: Buffer?, dw: Buffer?, db: Buffer?) {
        let scratch = Buffer(random: conv1dScratchCount(CIn: c.CIn, COut: c.COut, K: c.K, groups: c.groups), seed: 98)
        conv1dBackward(dinp: dx?.p, dweight: dw?.p, dbias: db?.p, dout: Buffer(dout).c, inp: Buffer(x).c,
                       weight: Buffer(w).c, B: c.B, T: c.T, CIn: c.CIn, COut: c.COut, K: c.K, stride: c.stride,
                       padding: c.padding, groups: c.groups, TOut: c.TOut, scratch: scratch.p)
    }

    func testOutputLength() {
        XCTAssertEqual(conv1dOutputLength(T: 16000, K: 10, stride: 5, padding: 0), 3199)
        XCTAssertEqual(conv1dOutputLength(T: 49, K: 128, stride: 1, padding: 64), 50)
    }

    func testMatchesReference() {
        for c in cases {
            let x = GradCheck.random(count: c.xCount, seed: 1), w = GradCheck.random(count: c.wCount, seed: 2)
            let bias = GradCheck.random(count: c.COut, seed: 3)
            for b in [bias, nil] {
                let reference = Buffer(zeros: c.yCount)
                conv1dForwardReference(out: reference.p, inp: Buffer(x).c, weight: Buffer(w).c, bias: b.map { Buffer($0).c },
                                       B: c.B, T: c.T, CIn: c.CIn, COut: c.COut, K: c.K, stride: c.stride,
                                       padding: c.padding, groups: c.groups, TOut: c.TOut)
                assertClose(forward(c, x: x, w: w, bias: b), reference.array, atol: 1e-5, rtol: 1e-5,
                            "forward \(c) bias \(b != nil)")
            }
            let dout = GradCheck.random(count: c.yCount, seed: 4)
            let g0 = [GradCheck.random(count: c.xCount, seed: 5), GradCheck.random(count: c.wCount, seed: 6),
                      GradCheck.random(count: c.COut, seed: 7)]
            let fast = g0.map(Buffer.init), reference = g0.map(Buffer.init)
            backward(c, x: x, w: w, dout: dout, dx: fast[0], dw: fast[1], db: fast[2])
            conv1dBackwardReference(dinp: reference[0].p, dweight: reference[1].p, dbias: reference[2].p,
                                    dout: Buffer(dout).c, inp: Buffer(x).c, weight: Buffer(w).c, B: c.B, T: c.T,
                                    CIn: c.CIn, COut: c.COut, K: c.K, stride: c.stride, padding: c.padding,
                                    groups: c.groups, TOut: c.TOut)
            for (i, name) in ["dinp", "dweight", "dbias"].enumerated() {
                assertClose(fast[i].array, reference[i].array, atol: 1e-5, rtol: 1e-5, "\(name) \(c)")
            }
        }
    }

    /// Each gradient alone (the others nil) is the same as with all three.
    func testNilGradientsAreSkipped() {
        let c = cases[7]
        let x = GradCheck.random(count: c.xCount, seed: 1), w = GradCheck.random(count: c.wCount, seed: 2)
        let dout = GradCheck.random(count: c.yCount, seed: 4)
        let all = [Buffer(zeros: c.xCount), Buffer(zeros: c.wCount), Buffer(zeros: c.COut)]
        backward(c, x: x, w: w, dout: dout, dx: all[0], dw: all[1], db: all[2])
        let dx = Buffer(zeros: c.xCount), dw = Buffer(zeros: c.wCount), db = Buffer(zeros: c.COut)
        backward(c, x: x, w: w, dout: dout, dx: dx, dw: nil, db: nil)
        backward(c, x: x, w: w, dout: dout, dx: nil, dw: dw, db: nil)
        backward(c, x: x, w: w, dout: dout, dx: nil, dw: nil, db: db)
        XCTAssertEqual(dx.array, all[0].array)
        XCTAssertEqual(dw.array, all[1].array)
        XCTAssertEqual(db.array, all[2].array)
    }

    /// Sizes of 32 and more, where `gemm` sends the per-tap products to libxsmm: a scaled-down positional
    /// convolution (groups 2 of 32 channels, even K with SamePad) and a feature-encoder layer.
    func testLargerShapesMatchReference() {
        for c in [Case(B: 2, T: 40, CIn: 64, COut: 64, K: 8, stride: 1, padding: 4, groups: 2, drop: 1),
                  Case(B: 1, T: 81, CIn: 48, COut: 40, K: 3, stride: 2, padding: 0, groups: 1)] {
            let x = GradCheck.random(count: c.xCount, seed: 1), w = GradCheck.random(count: c.wCount, seed: 2)
            let bias = GradCheck.random(count: c.COut, seed: 3)
            let reference = Buffer(zeros: c.yCount)
            conv1dForwardReference(out: reference.p, inp: Buffer(x).c, weight: Buffer(w).c, bias: Buffer(bias).c,
                                   B: c.B, T: c.T, CIn: c.CIn, COut: c.COut, K: c.K, stride: c.stride,
                                   padding: c.padding, groups: c.groups, TOut: c.TOut)
            assertClose(forward(c, x: x, w: w, bias: bias), reference.array, atol: 1e-4, rtol: 1e-4, "forward \(c)")
            let dout = GradCheck.random(count: c.yCount, seed: 4)
            let fast = [Buffer(zeros: c.xCount), Buffer(zeros: c.wCount), Buffer(zeros: c.COut)]
            let slow = [Buffer(zeros: c.xCount), Buffer(zeros: c.wCount), Buffer(zeros: c.COut)]
            backward(c, x: x, w: w, dout: dout, dx: fast[0], dw: fast[1], db: fast[2])
            conv1dBackwardReference(dinp: slow[0].p, dweight: slow[1].p, dbias: slow[2].p, dout: Buffer(dout).c,
                                    inp: Buffer(x).c, weight: Buffer(w).c, B: c.B, T: c.T, CIn: c.CIn, COut: c.COut,
                                    K: c.K, stride: c.stride, padding: c.padding, groups: c.groups, TOut: c.TOut)
            for (i, name) in ["dinp", "dweight", "dbias"].enumerated() {
                assertClose(fast[i].array, slow[i].array, atol: 1e-4, rtol: 1e-4, "\(name) \(c)")
            }
        }
    }

    /// `precision` reaches the products: bf16 inputs move the output off the fp32 result, by about bf16's
    /// rounding (2^-8 relative per input), forward and backward.
    func testBF16PrecisionReachesTheProducts() throws {
        try XCTSkipUnless(MatmulPrecision.bf16Supported, "no AVX512_BF16 on this CPU")
        let c = Case(B: 1, T: 40, CIn: 64, COut: 64, K: 8, stride: 1, padding: 4, groups: 2, drop: 1)
        let x = Buffer(random: c.xCount, seed: 1), w = Buffer(random: c.wCount, seed: 2), dout = Buffer(random: c.yCount, seed: 3)
        let scratch = Buffer(zeros: conv1dScratchCount(CIn: c.CIn, COut: c.COut, K: c.K, groups: c.groups))
        var outs: [[Float]] = [], dxs: [[Float]] = []
        for precision in [MatmulPrecision.fp32, .bf16] {
            let out = Buffer(zeros: c.yCount), dx = Buffer(zeros: c.xCount)
            conv1dForward(out: out.p, inp: x.c, weight: w.c, bias: nil, B: c.B, T: c.T, CIn: c.CIn, COut: c.COut, K: c.K,
                          stride: c.stride, padding: c.padding, groups: c.groups, TOut: c.TOut, scratch: scratch.p,
                          precision: precision)
            conv1dBackward(dinp: dx.p, dweight: nil, dbias: nil, dout: dout.c, inp: x.c, weight: w.c, B: c.B, T: c.T,
                           CIn: c.CIn, COut: c.COut, K: c.K, stride: c.stride, padding: c.padding, groups: c.groups,
                           TOut: c.TOut, scratch: scratch.p, precision: precision)
            outs.append(out.array)
            dxs.append(dx.array)
        }
        for (name, pair) in [("out", outs), ("dinp", dxs)] {
            let error = relativeError(pair[1], pair[0])
            XCTAssertGreaterThan(error, 1e-5, "\(name): bf16 did not reach the products")
            XCTAssertLessThan(error, 1e-2, "\(name): bf16 error \(error)")
        }
    }

    func testGradients() {
        for c in cases {
            let x0 = GradCheck.random(count: c.xCount, seed: 1), w0 = GradCheck.random(count: c.wCount, seed: 2)
            let b0 = GradCheck.random(count: c.COut, seed: 3)
            gradCheck("conv1d dinp \(c)", x: x0, outputCount: c.yCount, forward: { self.forward(c, x: $0, w: w0, bias: b0) }) { x, dout, dx in
                let g = Buffer(dx)
                self.backward(c, x: x, w: w0, dout: dout, dx: g, dw: nil, db: nil)
                dx = g.array
            }
            gradCheck("conv1d dweight \(c)", x: w0, outputCount: c.yCount, forward: { self.forward(c, x: x0, w: $0, bias: b0) }) { w, dout, dw in
                let g = Buffer(dw)
                self.backward(c, x: x0, w: w, dout: dout, dx: nil, dw: g, db: nil)
                dw = g.array
            }
            gradCheck("conv1d dbias \(c)", x: b0, outputCount: c.yCount, forward: { self.forward(c, x: x0, w: w0, bias: $0) }) { _, dout, db in
                let g = Buffer(db)
                self.backward(c, x: x0, w: w0, dout: dout, dx: nil, dw: nil, db: g)
                db = g.array
            }
        }
    }
}
