import XCTest
import TandemKernels
import TandemTestSupport

/// The channels-last conv2d against its naive reference and finite differences, on small odd shapes that
/// reach every path: a VQ-VAE's kernel 4 stride 2 padding 1 and kernel 3 padding 1, the 1x1 product
/// without im2col, a 1x1 kernel with stride 2 (through im2col), a non-square kernel, kernel rows wholly
/// in the padding, channel counts that are not multiples of 4; each with the default chunk and with
/// chunks of one and of three im2col rows, which cut across images.
final class Conv2dTests: KernelTestCase {
    struct Case: CustomStringConvertible {
        let B: Int, H: Int, W: Int, CIn: Int, COut: Int, KH: Int, KW: Int, stride: Int, padding: Int
        var HOut: Int { conv2dOutputSize(H: H, W: W, KH: KH, KW: KW, stride: stride, padding: padding).HOut }
        var WOut: Int { conv2dOutputSize(H: H, W: W, KH: KH, KW: KW, stride: stride, padding: padding).WOut }
        var description: String {
            "B \(B) H \(H) W \(W) CIn \(CIn) COut \(COut) K \(KH)x\(KW) stride \(stride) padding \(padding)"
        }
        var xCount: Int { B * H * W * CIn }
        var wCount: Int { COut * CIn * KH * KW }
        var yCount: Int { B * HOut * WOut * COut }
        /// Floats of one im2col row.
        var rowLength: Int { KH * KW * CIn }
    }

    let cases = [
        Case(B: 2, H: 7, W: 6, CIn: 3, COut: 5, KH: 4, KW: 4, stride: 2, padding: 1),   // VQ-VAE downsampling, H odd
        Case(B: 2, H: 5, W: 4, CIn: 5, COut: 3, KH: 3, KW: 3, stride: 1, padding: 1),   // VQ-VAE resolution block
        Case(B: 2, H: 3, W: 5, CIn: 7, COut: 6, KH: 1, KW: 1, stride: 1, padding: 0),   // 1x1: no im2col
        Case(B: 1, H: 5, W: 5, CIn: 3, COut: 2, KH: 1, KW: 1, stride: 2, padding: 0),   // 1x1 strided: im2col
        Case(B: 1, H: 4, W: 6, CIn: 2, COut: 3, KH: 2, KW: 3, stride: 1, padding: 0),   // non-square kernel
        Case(B: 3, H: 4, W: 3, CIn: 1, COut: 3, KH: 3, KW: 2, stride: 3, padding: 2),   // kernel rows in the padding
    ]

    /// The default chunk, then one and three im2col rows per chunk.
    func columnFloats(_ c: Case) -> [Int] { [conv2dColumnFloats, 1, 3 * c.rowLength] }

    func scratch(_ c: Case, columnFloats: Int, seed: UInt64) -> Buffer {
        Buffer(random: conv2dScratchCount(B: c.B, H: c.H, W: c.W, CIn: c.CIn, COut: c.COut, KH: c.KH, KW: c.KW,
                                          stride: c.stride, padding: c.padding, columnFloats: columnFloats), seed: seed)
    }

    func forward(_ c: Case, x: [Float], w: [Float], bias: [Float]?, columnFloats: Int = conv2dColumnFloats,
                 precision: MatmulPrecision = .fp32) -> [Float] {
        let out = Buffer(zeros: c.yCount)
        conv2dForward(out: out.p, inp: Buffer(x).c, weight: Buffer(w).c, bias: bias.map { Buffer($0).c }, B: c.B, H: c.H,
                      W: c.W, CIn: c.CIn, COut: c.COut, KH: c.KH, KW: c.KW, stride: c.stride, padding: c.padding,
                      scratch: scratch(c, columnFloats: columnFloats, seed: 99).p, columnFloats: columnFloats,
                      precision: precision)
        return out.array
    }

    func backward(_ c: Case, x: [Float], w: [Float], dout: [Float], dx: Buffer?, dw: Buffer?, db: Buffer?,
                  columnFloats: Int = conv2dColumnFloats, precision: MatmulPrecision = .fp32) {
        conv2dBackward(dinp: dx?.p, dweight: dw?.p, dbias: db?.p, dout: Buffer(dout).c, inp: Buffer(x).c,
                       weight: Buffer(w).c, B: c.B, H: c.H, W: c.W, CIn: c.CIn, COut: c.COut, KH: c.KH, KW: c.KW,
                       stride: c.stride, padding: c.padding, scratch: scratch(c, columnFloats: columnFloats, seed: 98).p,
                       columnFloats: columnFloats, precision: precision)
    }

    func referenceForward(_ c: Case, x: [Float], w: [Float], bias: [Float]?) -> [Float] {
        let out = Buffer(zeros: c.yCount)
        conv2dForwardReference(out: out.p, inp: Buffer(x).c, weight: Buffer(w).c, bias: bias.map { Buffer($0).c },
                               B: c.B, H: c.H, W: c.W, CIn: c.CIn, COut: c.COut, KH: c.KH, KW: c.KW, stride: c.stride,
                               padding: c.padding)
        return out.array
    }

    /// dinp, dweight, dbias of `conv2dBackward` (or the reference) added to the same random starting values.
    func gradients(_ c: Case, x: [Float], w: [Float], dout: [Float], columnFloats: Int?) -> [[Float]] {
        let g = [GradCheck.random(count: c.xCount, seed: 5), GradCheck.random(count: c.wCount, seed: 6),
                 GradCheck.random(count: c.COut, seed: 7)].map(Buffer.init)
        if let columnFloats {
            backward(c, x: x, w: w, dout: dout, dx: g[0], dw: g[1], db: g[2], columnFloats: columnFloats)
        } else {
            conv2dBackwardReference(dinp: g[0].p, dweight: g[1].p, dbias: g[2].p, dout: Buffer(dout).c, inp: Buffer(x).c,
                                    weight: Buffer(w).c, B: c.B, H: c.H, W: c.W, CIn: c.CIn, COut: c.COut, KH: c.KH,
                                    KW: c.KW, stride: c.stride, padding: c.padding)
        }
        return g.map(\.array)
    }

    func testOutputSizeAndScratch() {
        XCTAssertTrue(conv2dOutputSize(H: 28, W: 28, KH: 4, KW: 4, stride: 2, padding: 1) == (14, 14))
        XCTAssertTrue(conv2dOutputSize(H: 7, W: 6, KH: 4, KW: 4, stride: 2, padding: 1) == (3, 3))
        XCTAssertTrue(conv2dOutputSize(H: 4, W: 3, KH: 3, KW: 2, stride: 3, padding: 2) == (2, 2))
        XCTAssertEqual(conv2dScratchCount(B: 2, H: 3, W: 5, CIn: 7, COut: 6, KH: 1, KW: 1, stride: 1, padding: 0), 0)
        // (64, 28, 28, 32) -> (64, 14, 14, 64): 12544 rows of 512 floats, 512 of them per 1 MiB chunk.
        XCTAssertEqual(conv2dScratchCount(B: 64, H: 28, W: 28, CIn: 32, COut: 64, KH: 4, KW: 4, stride: 2, padding: 1),
                       2 * 64 * 512 + 512 * 512)
        // A chunk never holds more rows than there are output pixels, and always one.
        XCTAssertEqual(conv2dScratchCount(B: 1, H: 4, W: 4, CIn: 2, COut: 3, KH: 3, KW: 3, stride: 1, padding: 1),
                       2 * 3 * 18 + 16 * 18)
        XCTAssertEqual(conv2dScratchCount(B: 1, H: 4, W: 4, CIn: 2, COut: 3, KH: 3, KW: 3, stride: 1, padding: 1,
                                          columnFloats: 1), 2 * 3 * 18 + 18)
    }

    func testMatchesReference() {
        for c in cases {
            let x = GradCheck.random(count: c.xCount, seed: 1), w = GradCheck.random(count: c.wCount, seed: 2)
            let bias = GradCheck.random(count: c.COut, seed: 3), dout = GradCheck.random(count: c.yCount, seed: 4)
            let reference = gradients(c, x: x, w: w, dout: dout, columnFloats: nil)
            for columns in columnFloats(c) {
                for b in [bias, nil] {
                    assertClose(forward(c, x: x, w: w, bias: b, columnFloats: columns), referenceForward(c, x: x, w: w, bias: b),
                                atol: 1e-5, rtol: 1e-5, "forward \(c) columns \(columns) bias \(b != nil)")
                }
                let fast = gradients(c, x: x, w: w, dout: dout, columnFloats: columns)
                for (i, name) in ["dinp", "dweight", "dbias"].enumerated() {
                    assertClose(fast[i], reference[i], atol: 1e-5, rtol: 1e-5, "\(name) \(c) columns \(columns)")
                }
            }
        }
    }

    /// Each gradient alone (the others nil) is the same as with all three, on the im2col path and the 1x1 one.
    func testNilGradientsAreSkipped() {
        for c in [cases[0], cases[2]] {
            let x = GradCheck.random(count: c.xCount, seed: 1), w = GradCheck.random(count: c.wCount, seed: 2)
            let dout = GradCheck.random(count: c.yCount, seed: 4)
            let all = [Buffer(zeros: c.xCount), Buffer(zeros: c.wCount), Buffer(zeros: c.COut)]
            backward(c, x: x, w: w, dout: dout, dx: all[0], dw: all[1], db: all[2])
            let dx = Buffer(zeros: c.xCount), dw = Buffer(zeros: c.wCount), db = Buffer(zeros: c.COut)
            backward(c, x: x, w: w, dout: dout, dx: dx, dw: nil, db: nil)
            backward(c, x: x, w: w, dout: dout, dx: nil, dw: dw, db: nil)
            backward(c, x: x, w: w, dout: dout, dx: nil, dw: nil, db: db)
            XCTAssertEqual(dx.array, all[0].array, "\(c)")
            XCTAssertEqual(dw.array, all[1].array, "\(c)")
            XCTAssertEqual(db.array, all[2].array, "\(c)")
        }
    }

    /// Sizes of 32 and more, where `gemm` may send the products to libxsmm: a VQ-VAE's downsampling and
    /// resolution convolutions at a small batch, and a 1x1 between them.
    func testLargerShapesMatchReference() {
        for c in [Case(B: 2, H: 12, W: 10, CIn: 32, COut: 40, KH: 4, KW: 4, stride: 2, padding: 1),
                  Case(B: 1, H: 9, W: 8, CIn: 36, COut: 32, KH: 3, KW: 3, stride: 1, padding: 1),
                  Case(B: 2, H: 6, W: 6, CIn: 48, COut: 64, KH: 1, KW: 1, stride: 1, padding: 0)] {
            let x = GradCheck.random(count: c.xCount, seed: 1), w = GradCheck.random(count: c.wCount, seed: 2)
            let bias = GradCheck.random(count: c.COut, seed: 3), dout = GradCheck.random(count: c.yCount, seed: 4)
            assertClose(forward(c, x: x, w: w, bias: bias), referenceForward(c, x: x, w: w, bias: bias),
                        atol: 1e-4, rtol: 1e-4, "forward \(c)")
            let fast = gradients(c, x: x, w: w, dout: dout, columnFloats: 40 * c.rowLength)
            let reference = gradients(c, x: x, w: w, dout: dout, columnFloats: nil)
            for (i, name) in ["dinp", "dweight", "dbias"].enumerated() {
                assertClose(fast[i], reference[i], atol: 1e-4, rtol: 1e-4, "\(name) \(c)")
            }
        }
    }

    /// `precision` reaches the products, on the im2col path and the 1x1 one: bf16 inputs move the output
    /// off the fp32 result by about bf16's rounding, forward and backward.
    func testBF16PrecisionReachesTheProducts() throws {
        try XCTSkipUnless(MatmulPrecision.bf16Supported, "no AVX512_BF16 on this CPU")
        for c in [Case(B: 2, H: 8, W: 8, CIn: 32, COut: 32, KH: 3, KW: 3, stride: 1, padding: 1),
                  Case(B: 2, H: 8, W: 8, CIn: 32, COut: 32, KH: 1, KW: 1, stride: 1, padding: 0)] {
            let x = GradCheck.random(count: c.xCount, seed: 1), w = GradCheck.random(count: c.wCount, seed: 2)
            let dout = GradCheck.random(count: c.yCount, seed: 3)
            var outs: [[Float]] = [], dxs: [[Float]] = [], dws: [[Float]] = []
            for precision in [MatmulPrecision.fp32, .bf16] {
                let dx = Buffer(zeros: c.xCount), dw = Buffer(zeros: c.wCount)
                outs.append(forward(c, x: x, w: w, bias: nil, precision: precision))
                backward(c, x: x, w: w, dout: dout, dx: dx, dw: dw, db: nil, precision: precision)
                dxs.append(dx.array)
                dws.append(dw.array)
            }
            for (name, pair) in [("out", outs), ("dinp", dxs), ("dweight", dws)] {
                let error = relativeError(pair[1], pair[0])
                XCTAssertGreaterThan(error, 1e-5, "\(name) \(c): bf16 did not reach the products")
                XCTAssertLessThan(error, 1e-2, "\(name) \(c): bf16 error \(error)")
            }
        }
    }

    /// Every gradient of the kernel against central differences, in chunks of three im2col rows.
    func testGradients() {
        for c in cases {
            let columns = 3 * c.rowLength
            let x0 = GradCheck.random(count: c.xCount, seed: 1), w0 = GradCheck.random(count: c.wCount, seed: 2)
            let b0 = GradCheck.random(count: c.COut, seed: 3)
            gradCheck("conv2d dinp \(c)", x: x0, outputCount: c.yCount,
                      forward: { self.forward(c, x: $0, w: w0, bias: b0, columnFloats: columns) }) { x, dout, dx in
                let g = Buffer(dx)
                self.backward(c, x: x, w: w0, dout: dout, dx: g, dw: nil, db: nil, columnFloats: columns)
                dx = g.array
            }
            gradCheck("conv2d dweight \(c)", x: w0, outputCount: c.yCount,
                      forward: { self.forward(c, x: x0, w: $0, bias: b0, columnFloats: columns) }) { w, dout, dw in
                let g = Buffer(dw)
                self.backward(c, x: x0, w: w, dout: dout, dx: nil, dw: g, db: nil, columnFloats: columns)
                dw = g.array
            }
            gradCheck("conv2d dbias \(c)", x: b0, outputCount: c.yCount,
                      forward: { self.forward(c, x: x0, w: w0, bias: $0, columnFloats: columns) }) { _, dout, db in
                let g = Buffer(db)
                self.backward(c, x: x0, w: w0, dout: dout, dx: nil, dw: nil, db: g, columnFloats: columns)
                db = g.array
            }
        }
    }
}
