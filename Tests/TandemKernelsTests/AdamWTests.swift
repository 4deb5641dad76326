import XCTest
import TandemKernels
import TandemTestSupport

final class AdamWTests: KernelTestCase {
    /// The fused SIMD update equals the naive loop bit for bit: an odd count (a partial last vector),
    /// clipping's scale, weight decay, late-step bias corrections, and the gradient zeroed as it is read.
    func testFusedUpdateEqualsReferenceBitForBit() {
        let n = 1037
        for (scale, zeroing) in [(Float(1), false), (Float(0.37), true)] {
            let w1 = Buffer(random: n, seed: 1), g1 = Buffer(random: n, seed: 2, scale: 3)
            let m1 = Buffer(random: n, seed: 3, scale: 0.1), v1 = Buffer(random: n, seed: 4, scale: 0.1)
            for i in 0..<n { v1.p[i] = abs(v1.p[i]) }
            let w2 = Buffer(w1.array), g2 = Buffer(g1.array), m2 = Buffer(m1.array), v2 = Buffer(v1.array)
            let bc1 = 1 - pow(0.9, 7.0), bc2 = 1 - pow(0.999, 7.0)
            adamwUpdate(weight: w1.p, grad: g1.p, m: m1.p, v: v1.p, count: n, lr: 3e-3, beta1: 0.9, beta2: 0.999,
                        eps: 1e-6, weightDecay: 0.05, bc1: bc1, bc2: bc2, gradScale: scale, zeroingGrad: zeroing)
            adamwUpdateReference(weight: w2.p, grad: g2.p, m: m2.p, v: v2.p, count: n, lr: 3e-3, beta1: 0.9,
                                 beta2: 0.999, eps: 1e-6, weightDecay: 0.05, bc1: bc1, bc2: bc2, gradScale: scale,
                                 zeroingGrad: zeroing)
            XCTAssertEqual(w1.array, w2.array)
            XCTAssertEqual(m1.array, m2.array)
            XCTAssertEqual(v1.array, v2.array)
            XCTAssertEqual(g1.array, g2.array)
            if zeroing { XCTAssertTrue(g1.array.allSatisfy { $0 == 0 }) }
        }
    }
}
