import XCTest
import TandemKernels
import TandemTestSupport

final class MaskedL1Tests: KernelTestCase {
    let B = 2, C = 3, H = 6, W = 9, P = 3
    var NP: Int { (H / P) * (W / P) }
    let mask: [Float] = [1, 0, 0, 1, 0, 1,  1, 1, 0, 0, 0, 1]

    /// A prediction and a target at least 0.2 apart everywhere, so no finite-difference step crosses |0|.
    func pair(seed: UInt64) -> (prediction: [Float], target: [Float]) {
        let prediction = GradCheck.random(count: B * C * H * W, seed: seed)
        let offsets = GradCheck.random(count: B * C * H * W, seed: seed + 1)
        return (prediction, (0..<prediction.count).map { prediction[$0] + (offsets[$0] < 0 ? -0.2 : 0.2) + offsets[$0] })
    }

    func testMatchesReference() {
        let (p, t) = pair(seed: 1)
        let prediction = Buffer(p), target = Buffer(t), m = Buffer(mask)
        let denominator = Buffer(zeros: 1), denominatorRef = Buffer(zeros: 1)
        let loss = maskedL1Forward(denominator: denominator.p, prediction: prediction.c, target: target.c, mask: m.c,
                                   B: B, C: C, H: H, W: W, P: P)
        let lossRef = maskedL1ForwardReference(denominator: denominatorRef.p, prediction: prediction.c, target: target.c,
                                               mask: m.c, B: B, C: C, H: H, W: W, P: P)
        XCTAssertEqual(loss, lossRef, accuracy: 1e-6 * lossRef)
        XCTAssertEqual(denominator.array, denominatorRef.array)
        XCTAssertEqual(denominator.array[0], Float((6 * 9 + 1e-5) * 3))

        let d0 = GradCheck.random(count: B * C * H * W, seed: 3)
        let d = Buffer(d0), dRef = Buffer(d0)
        maskedL1Backward(dprediction: d.p, prediction: prediction.c, target: target.c, mask: m.c,
                         denominator: denominator.array[0], dloss: 0.7, B: B, C: C, H: H, W: W, P: P)
        maskedL1BackwardReference(dprediction: dRef.p, prediction: prediction.c, target: target.c, mask: m.c,
                                  denominator: denominator.array[0], dloss: 0.7, B: B, C: C, H: H, W: W, P: P)
        assertClose(d.array, dRef.array, atol: 1e-6, rtol: 1e-5, "dprediction")
    }

    func testGradients() {
        let (p, t) = pair(seed: 4)
        let target = Buffer(t), m = Buffer(mask)
        gradCheck("maskedL1", x: p, outputCount: 1, forward: { x in
            [maskedL1Forward(denominator: Buffer(zeros: 1).p, prediction: Buffer(x).c, target: target.c, mask: m.c,
                             B: self.B, C: self.C, H: self.H, W: self.W, P: self.P)]
        }) { x, dout, dx in
            let denominator = Buffer(zeros: 1), g = Buffer(dx), prediction = Buffer(x)
            _ = maskedL1Forward(denominator: denominator.p, prediction: prediction.c, target: target.c, mask: m.c,
                                B: self.B, C: self.C, H: self.H, W: self.W, P: self.P)
            maskedL1Backward(dprediction: g.p, prediction: prediction.c, target: target.c, mask: m.c,
                             denominator: denominator.array[0], dloss: dout[0],
                             B: self.B, C: self.C, H: self.H, W: self.W, P: self.P)
            dx = g.array
        }
    }
}
