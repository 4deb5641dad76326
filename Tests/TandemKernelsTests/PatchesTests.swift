import XCTest
import TandemKernels
import TandemTestSupport

final class PatchesTests: KernelTestCase {
    let B = 2, C = 3, H = 4, W = 6, P = 2
    var NP: Int { (H / P) * (W / P) }
    var K: Int { C * P * P }

    func testMatchesReferenceAndConv2d() {
        let pixels = Buffer(random: B * C * H * W, seed: 1)
        let out = Buffer(zeros: B * NP * K), outRef = Buffer(zeros: B * NP * K)
        patchesForward(out: out.p, pixels: pixels.c, B: B, C: C, H: H, W: W, P: P)
        patchesForwardReference(out: outRef.p, pixels: pixels.c, B: B, C: C, H: H, W: W, P: P)
        XCTAssertEqual(out.array, outRef.array)

        // patches · weightᵀ + bias must equal a Conv2d with kernel = stride = P, computed directly,
        // with the conv output (B, OC, H/P, W/P) read in (B, NP, OC) order as ViT flattens it.
        let OC = 5
        let weight = Buffer(random: OC * K, seed: 2), bias = Buffer(random: OC, seed: 3)
        let embedded = Buffer(zeros: B * NP * OC)
        linearForward(out: embedded.p, inp: out.c, weight: weight.c, bias: bias.c, N: B * NP, C: K, OC: OC)
        var conv = [Float](repeating: 0, count: B * NP * OC)
        for b in 0..<B {
            for o in 0..<OC {
                for py in 0..<H / P {
                    for px in 0..<W / P {
                        var acc = Double(bias.array[o])
                        for c in 0..<C {
                            for ky in 0..<P {
                                for kx in 0..<P {
                                    let w = weight.array[((o * C + c) * P + ky) * P + kx]
                                    let x = pixels.array[((b * C + c) * H + py * P + ky) * W + px * P + kx]
                                    acc += Double(w) * Double(x)
                                }
                            }
                        }
                        conv[(b * NP + py * (W / P) + px) * OC + o] = Float(acc)
                    }
                }
            }
        }
        assertClose(embedded.array, conv, atol: 1e-5, rtol: 1e-5, "patch embedding vs conv2d")
    }

    func testBackward() {
        let dout = Buffer(random: B * NP * K, seed: 4), d0 = GradCheck.random(count: B * C * H * W, seed: 5)
        let d = Buffer(d0), dRef = Buffer(d0)
        patchesBackward(dpixels: d.p, dout: dout.c, B: B, C: C, H: H, W: W, P: P)
        patchesBackwardReference(dpixels: dRef.p, dout: dout.c, B: B, C: C, H: H, W: W, P: P)
        assertClose(d.array, dRef.array, atol: 1e-6, rtol: 1e-6, "dpixels")

        gradCheck("patches", x: GradCheck.random(count: B * C * H * W, seed: 6), outputCount: B * NP * K, forward: { x in
            let out = Buffer(zeros: self.B * self.NP * self.K)
            patchesForward(out: out.p, pixels: Buffer(x).c, B: self.B, C: self.C, H: self.H, W: self.W, P: self.P)
            return out.array
        }) { _, dout, dx in
            let g = Buffer(dx)
            patchesBackward(dpixels: g.p, dout: Buffer(dout).c, B: self.B, C: self.C, H: self.H, W: self.W, P: self.P)
            dx = g.array
        }
    }
}
