import XCTest
import TandemKernels
import TandemTensor
import TandemTestSupport

/// The backward kernels' storing mode (`accumulate: false`, used by the tape for a gradient's first
/// writer) writes exactly what adding into a zeroed buffer writes, over every element, whatever the
/// buffer held before (here NaN).
final class StoringBackwardTests: KernelTestCase {
    /// Runs `kernel` once adding into zeros and once storing over NaN; both results must have the same bits.
    private func assertStoringEqualsAddingToZeros(_ count: Int, _ name: String,
                                                  _ kernel: (UnsafeMutablePointer<Float>, Bool) -> Void) {
        let added = Buffer(zeros: count), stored = Buffer([Float](repeating: .nan, count: count))
        kernel(added.p, true)
        kernel(stored.p, false)
        XCTAssertEqual(stored.array.map(\.bitPattern), added.array.map(\.bitPattern), name)
    }

    func testElementwiseKernels() {
        let n = 1037
        let dout = Buffer(random: n, seed: 1), inp = Buffer(random: n, seed: 2, scale: 3)
        assertStoringEqualsAddingToZeros(n, "residual a") { d, adding in
            residualBackward(da: d, db: nil, dout: dout.c, count: n, accumulateA: adding)
        }
        assertStoringEqualsAddingToZeros(n, "residual b") { d, adding in
            let other = Buffer(zeros: n)
            residualBackward(da: other.p, db: d, dout: dout.c, count: n, accumulateB: adding)
        }
        for approximation in [GELUApproximation.erf, .tanh] {
            assertStoringEqualsAddingToZeros(n, "GELU \(approximation)") { d, adding in
                geluBackward(dinp: d, inp: inp.c, dout: dout.c, count: n, approximation: approximation, accumulate: adding)
            }
        }
        for p: Float in [0, 0.3] {
            assertStoringEqualsAddingToZeros(n, "dropout \(p)") { d, adding in
                dropoutBackward(dinp: d, dout: dout.c, count: n, p: p, rng: Philox(seed: 4), stream: 2, step: 7,
                                accumulate: adding)
            }
        }
    }
}
