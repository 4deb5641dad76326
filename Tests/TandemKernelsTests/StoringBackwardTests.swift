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

    func testLinearInputGradient() {
        let N = 13, C = 7, OC = 11
        let dout = Buffer(random: N * OC, seed: 1), inp = Buffer(random: N * C, seed: 2), w = Buffer(random: OC * C, seed: 3)
        assertStoringEqualsAddingToZeros(N * C, "linear dinp") { d, adding in
            linearBackward(dinp: d, dweight: nil, dbias: nil, dout: dout.c, inp: inp.c, weight: w.c, N: N, C: C, OC: OC,
                           accumulate: adding)
        }
    }

    func testAttentionGradients() {
        let B = 2, T = 5, Tq = 3, NH = 3, HS = 4, C = NH * HS
        let q = Buffer(random: B * Tq * C, seed: 1), k = Buffer(random: B * T * C, seed: 2), v = Buffer(random: B * T * C, seed: 3)
        let dout = Buffer(random: B * Tq * C, seed: 4), out = Buffer(zeros: B * Tq * C), probs = Buffer(zeros: B * NH * Tq * T)
        attentionForward(out: out.p, probs: probs.p, q: q.c, k: k.c, v: v.c, keyMask: nil, B: B, T: T, queries: Tq,
                         NH: NH, HS: HS, causal: false)
        for which in 0..<3 {
            assertStoringEqualsAddingToZeros(which == 0 ? B * Tq * C : B * T * C, "attention input \(which)") { d, adding in
                let others = [Buffer(zeros: B * Tq * C), Buffer(zeros: B * T * C), Buffer(zeros: B * T * C)]
                let scratch = Buffer(zeros: B * NH * Tq * T)
                attentionBackward(dq: which == 0 ? d : others[0].p, dk: which == 1 ? d : others[1].p,
                                  dv: which == 2 ? d : others[2].p, dprobs: scratch.p, dout: dout.c, probs: probs.c,
                                  q: q.c, k: k.c, v: v.c, B: B, T: T, queries: Tq, NH: NH, HS: HS,
                                  accumulateQ: which != 0 || adding, accumulateK: which != 1 || adding,
                                  accumulateV: which != 2 || adding)
            }
        }
    }
}
