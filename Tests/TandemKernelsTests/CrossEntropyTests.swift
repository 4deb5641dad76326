import XCTest
import TandemKernels
import TandemTestSupport

final class CrossEntropyTests: KernelTestCase {
    func testHandComputedLossWithIgnoreIndexAndLabelSmoothing() {
        // Row 0: logits (1, 2, 3), target 2: log Z = 3 + log(1 + e^-1 + e^-2) = 3.40760596,
        //   nll = 0.40760596, smooth = log Z - mean(x) = 1.40760596, loss = 0.9 nll + 0.1 smooth = 0.50760596.
        // Row 1: ignored. Row 2: logits (0, 0, 0), target 0: nll = smooth = log 3 = 1.09861229.
        // Mean over the two counted rows: 0.80310913.
        let logits = Buffer([1, 2, 3, 5, -5, 0, 0, 0, 0]), targets = IntBuffer([2, -100, 0])
        let losses = Buffer(zeros: 3), probs = Buffer(zeros: 9)
        let loss = crossEntropyForward(losses: losses.p, probs: probs.p, logits: logits.c, targets: targets.c, N: 3, V: 3,
                                       ignoreIndex: -100, labelSmoothing: 0.1)
        XCTAssertEqual(loss, 0.80310913, accuracy: 1e-6)
        assertClose(losses.array, [0.50760596, 0, 1.09861229], atol: 1e-6, rtol: 1e-6, "losses")
        assertClose(probs.array, [0.09003057, 0.24472847, 0.66524096, 0, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3],
                    atol: 1e-7, rtol: 1e-6, "probs")

        let unsmoothed = crossEntropyForward(losses: losses.p, probs: probs.p, logits: logits.c, targets: targets.c,
                                             N: 3, V: 3, ignoreIndex: -100, labelSmoothing: 0)
        XCTAssertEqual(unsmoothed, (0.40760596 + 1.09861229) / 2, accuracy: 1e-6)

        // Gradient of the mean loss for row 0: (p - 0.9 onehot - 0.1 / 3) / 2.
        let dlogits = Buffer(zeros: 9)
        crossEntropyBackward(dlogits: dlogits.p, probs: probs.c, targets: targets.c, N: 3, V: 3, ignoreIndex: -100,
                             labelSmoothing: 0, dloss: 1)
        assertClose(Array(dlogits.array[0..<3]), [0.09003057 / 2, 0.24472847 / 2, (0.66524096 - 1) / 2],
                    atol: 1e-7, rtol: 1e-6, "dlogits")
        XCTAssertEqual(Array(dlogits.array[3..<6]), [0, 0, 0])
    }

    func testAllIgnoredGivesZeroLossAndGradient() {
        let logits = Buffer(random: 6, seed: 1), targets = IntBuffer([-100, -100])
        let losses = Buffer(zeros: 2), probs = Buffer(zeros: 6), dlogits = Buffer(zeros: 6)
        let loss = crossEntropyForward(losses: losses.p, probs: probs.p, logits: logits.c, targets: targets.c, N: 2, V: 3,
                                       ignoreIndex: -100, labelSmoothing: 0.1)
        XCTAssertEqual(loss, 0)
        crossEntropyBackward(dlogits: dlogits.p, probs: probs.c, targets: targets.c, N: 2, V: 3, ignoreIndex: -100,
                             labelSmoothing: 0.1, dloss: 1)
        XCTAssertEqual(dlogits.array, [Float](repeating: 0, count: 6))
    }

    let N = 5, V = 23
    let targets: [Int32] = [3, -100, 22, 0, 7]

    func testMatchesReference() {
        let logits = Buffer(random: N * V, seed: 2, scale: 4), t = IntBuffer(targets)
        for smoothing: Float in [0, 0.1] {
            let losses = Buffer(zeros: N), probs = Buffer(zeros: N * V)
            let lossesRef = Buffer(zeros: N), probsRef = Buffer(zeros: N * V)
            let loss = crossEntropyForward(losses: losses.p, probs: probs.p, logits: logits.c, targets: t.c, N: N, V: V,
                                           ignoreIndex: -100, labelSmoothing: smoothing)
            let lossRef = crossEntropyForwardReference(losses: lossesRef.p, probs: probsRef.p, logits: logits.c,
                                                       targets: t.c, N: N, V: V, ignoreIndex: -100,
                                                       labelSmoothing: smoothing)
            XCTAssertEqual(loss, lossRef, accuracy: 1e-5)
            assertClose(losses.array, lossesRef.array, atol: 1e-5, rtol: 1e-5, "losses")
            assertClose(probs.array, probsRef.array, atol: 1e-7, rtol: 1e-5, "probs")

            let d0 = GradCheck.random(count: N * V, seed: 3)
            let d = Buffer(d0), dRef = Buffer(d0)
            crossEntropyBackward(dlogits: d.p, probs: probs.c, targets: t.c, N: N, V: V, ignoreIndex: -100,
                                 labelSmoothing: smoothing, dloss: 0.7)
            crossEntropyBackwardReference(dlogits: dRef.p, probs: probs.c, targets: t.c, N: N, V: V, ignoreIndex: -100,
                                          labelSmoothing: smoothing, dloss: 0.7)
            assertClose(d.array, dRef.array, atol: 1e-6, rtol: 1e-5, "dlogits smoothing \(smoothing)")
        }
    }

    func testGradients() {
        let t = IntBuffer(targets)
        for smoothing: Float in [0, 0.1] {
            // The "output" is the scalar mean loss; gradCheck weights it by its own R.
            gradCheck("cross-entropy smoothing \(smoothing)", x: GradCheck.random(count: N * V, seed: 4, scale: 2),
                      outputCount: 1, forward: { x in
                let losses = Buffer(zeros: self.N), probs = Buffer(zeros: self.N * self.V)
                return [crossEntropyForward(losses: losses.p, probs: probs.p, logits: Buffer(x).c, targets: t.c,
                                            N: self.N, V: self.V, ignoreIndex: -100, labelSmoothing: smoothing)]
            }) { x, dout, dx in
                let losses = Buffer(zeros: self.N), probs = Buffer(zeros: self.N * self.V), g = Buffer(dx)
                _ = crossEntropyForward(losses: losses.p, probs: probs.p, logits: Buffer(x).c, targets: t.c,
                                        N: self.N, V: self.V, ignoreIndex: -100, labelSmoothing: smoothing)
                crossEntropyBackward(dlogits: g.p, probs: probs.c, targets: t.c, N: self.N, V: self.V,
                                     ignoreIndex: -100, labelSmoothing: smoothing, dloss: dout[0])
                dx = g.array
            }
        }
    }
}
