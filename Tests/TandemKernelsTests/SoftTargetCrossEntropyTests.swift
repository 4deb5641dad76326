import XCTest
import TandemKernels
import TandemTestSupport

final class SoftTargetCrossEntropyTests: KernelTestCase {
    let N = 3, V = 5
    // Mixed, smoothed rows (each sums to 1) and one that sums to 0.7 (the formula holds for any mass).
    let targets: [Float] = [0.7, 0.3, 0, 0, 0,  0.02, 0.02, 0.42, 0.52, 0.02,  0, 0, 0.7, 0, 0]

    func testMatchesReference() {
        let logits = Buffer(random: N * V, seed: 1, scale: 3), t = Buffer(targets)
        let probs = Buffer(zeros: N * V), probsRef = Buffer(zeros: N * V)
        let loss = softTargetCrossEntropyForward(probs: probs.p, logits: logits.c, targets: t.c, N: N, V: V)
        let lossRef = softTargetCrossEntropyForwardReference(probs: probsRef.p, logits: logits.c, targets: t.c, N: N, V: V)
        XCTAssertEqual(loss, lossRef, accuracy: 1e-6 * abs(lossRef))
        assertClose(probs.array, probsRef.array, atol: 1e-7, rtol: 1e-5, "probs")

        let d0 = GradCheck.random(count: N * V, seed: 2)
        let d = Buffer(d0), dRef = Buffer(d0)
        softTargetCrossEntropyBackward(dlogits: d.p, probs: probs.c, targets: t.c, N: N, V: V, dloss: 0.7)
        softTargetCrossEntropyBackwardReference(dlogits: dRef.p, probs: probs.c, targets: t.c, N: N, V: V, dloss: 0.7)
        assertClose(d.array, dRef.array, atol: 1e-6, rtol: 1e-5, "dlogits")
    }

    func testOneHotTargetsGiveHardCrossEntropy() {
        let labels: [Int32] = [2, 0, 4]
        var oneHot = [Float](repeating: 0, count: N * V)
        for n in 0..<N { oneHot[n * V + Int(labels[n])] = 1 }
        let logits = Buffer(random: N * V, seed: 3, scale: 3)
        let soft = softTargetCrossEntropyForward(probs: Buffer(zeros: N * V).p, logits: logits.c, targets: Buffer(oneHot).c,
                                                 N: N, V: V)
        let hard = crossEntropyForward(losses: Buffer(zeros: N).p, probs: Buffer(zeros: N * V).p, logits: logits.c,
                                       targets: IntBuffer(labels).c, N: N, V: V, ignoreIndex: -100, labelSmoothing: 0)
        XCTAssertEqual(soft, hard, accuracy: 1e-5)
    }

    func testGradients() {
        let t = Buffer(targets)
        gradCheck("softTargetCrossEntropy", x: GradCheck.random(count: N * V, seed: 4, scale: 2), outputCount: 1, forward: { x in
            [softTargetCrossEntropyForward(probs: Buffer(zeros: self.N * self.V).p, logits: Buffer(x).c, targets: t.c,
                                           N: self.N, V: self.V)]
        }) { x, dout, dx in
            let probs = Buffer(zeros: self.N * self.V), g = Buffer(dx)
            _ = softTargetCrossEntropyForward(probs: probs.p, logits: Buffer(x).c, targets: t.c, N: self.N, V: self.V)
            softTargetCrossEntropyBackward(dlogits: g.p, probs: probs.c, targets: t.c, N: self.N, V: self.V, dloss: dout[0])
            dx = g.array
        }
    }
}
