import Foundation
import XCTest
import TandemKernels
import TandemTestSupport

/// wav2vec 2.0's Gumbel-softmax quantiser and contrastive loss against direct computations and finite
/// differences.
final class QuantizationTests: KernelTestCase {
    let N = 5, G = 2, V = 4, Dg = 3

    private func saved() -> GumbelQuantizeSaved {
        GumbelQuantizeSaved(chosen: TestMemory.allocate(Int32.self, count: N * G), gumbelSoftmax: Buffer(zeros: N * G * V).p,
                            softmax: Buffer(zeros: N * G * V).p, marginal: Buffer(zeros: G * V).p)
    }

    /// Evaluation: each group's argmax entry, and the perplexity of the one-hot codes over the masked rows.
    func testEvaluationPicksTheArgmaxAndCountsCodes() {
        let logits = GradCheck.random(count: N * G * V, seed: 3, scale: 2)
        let codevectors = GradCheck.random(count: G * V * Dg, seed: 4)
        let mask: [Float] = [1, 0, 1, 1, 0]
        let out = Buffer(zeros: N * G * Dg), s = saved()
        let perplexity = gumbelQuantizeForward(out: out.p, logits: Buffer(logits).c, codevectors: Buffer(codevectors).c,
                                               mask: Buffer(mask).c, N: N, G: G, V: V, Dg: Dg, temperature: 2,
                                               training: false, rng: Philox(seed: 1), stream: 1, step: 0, saved: s)
        var counts = [[Double]](repeating: [Double](repeating: 0, count: V), count: G)
        for n in 0..<N {
            for g in 0..<G {
                let row = Array(logits[((n * G + g) * V)..<((n * G + g + 1) * V)])
                let best = row.indices.max { row[$0] < row[$1] }!
                XCTAssertEqual(Int(s.chosen[n * G + g]), best)
                for j in 0..<Dg { XCTAssertEqual(out.p[(n * G + g) * Dg + j], codevectors[(g * V + best) * Dg + j]) }
                if mask[n] != 0 { counts[g][best] += 1 }
            }
        }
        let expected = counts.reduce(0.0) { total, c in
            total + exp(-c.reduce(0.0) { let p = $1 / 3; return p > 0 ? $0 + p * log(p) : $0 })
        }
        XCTAssertEqual(Double(perplexity), expected, accuracy: 1e-5)
    }

    /// Training: the entry is the argmax of logits plus Gumbel noise, the same draw on every replay; the
    /// perplexity's gradient (the only smooth part) matches finite differences.
    func testTrainingPerplexityGradient() {
        let codevectors = Buffer(GradCheck.random(count: G * V * Dg, seed: 5))
        let mask = Buffer([1, 1, 0, 1, 1])
        func run(_ x: [Float], _ s: GumbelQuantizeSaved) -> Float {
            gumbelQuantizeForward(out: Buffer(zeros: N * G * Dg).p, logits: Buffer(x).c, codevectors: codevectors.c, mask: mask.c,
                                  N: N, G: G, V: V, Dg: Dg, temperature: 1.5, training: true, rng: Philox(seed: 9), stream: 2,
                                  step: 7, saved: s)
        }
        let x = GradCheck.random(count: N * G * V, seed: 6)
        let a = saved(), b = saved()
        _ = run(x, a); _ = run(x, b)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.chosen, count: N * G)), Array(UnsafeBufferPointer(start: b.chosen, count: N * G)))
        gradCheck("perplexity", x: x, outputCount: 1, forward: { x in [run(x, self.saved())] }, backward: { x, dout, dx in
            let s = self.saved()
            _ = run(x, s)
            let dx0 = Buffer(dx)
            gumbelQuantizeBackward(dlogits: dx0.p, dcodevectors: nil, dout: Buffer(zeros: N * G * Dg).c, dperplexity: dout[0],
                                   codevectors: codevectors.c, mask: mask.c, N: N, G: G, V: V, Dg: Dg, temperature: 1.5,
                                   training: true, saved: s)
            dx = dx0.array
        })
    }

    /// The straight-through gradient: with out = Σ_v y_v c_v and y = softmax((l + g)/τ), dl = J_softmaxᵀ (C dout)
    /// computed here densely, and the chosen codevectors get dout.
    func testStraightThroughGradient() {
        let x = GradCheck.random(count: N * G * V, seed: 8)
        let c = GradCheck.random(count: G * V * Dg, seed: 9), dout = GradCheck.random(count: N * G * Dg, seed: 10)
        let s = saved(), tau: Float = 0.7
        _ = gumbelQuantizeForward(out: Buffer(zeros: N * G * Dg).p, logits: Buffer(x).c, codevectors: Buffer(c).c, mask: nil,
                                  N: N, G: G, V: V, Dg: Dg, temperature: tau, training: true, rng: Philox(seed: 2), stream: 3,
                                  step: 1, saved: s)
        let dl = Buffer(zeros: N * G * V), dc = Buffer(zeros: G * V * Dg)
        gumbelQuantizeBackward(dlogits: dl.p, dcodevectors: dc.p, dout: Buffer(dout).c, dperplexity: 0, codevectors: Buffer(c).c,
                               mask: nil, N: N, G: G, V: V, Dg: Dg, temperature: tau, training: true, saved: s)
        var expectedC = [Double](repeating: 0, count: G * V * Dg)
        for n in 0..<N {
            for g in 0..<G {
                let y = (0..<V).map { Double(s.gumbelSoftmax[(n * G + g) * V + $0]) }
                let dy = (0..<V).map { v in (0..<Dg).reduce(0.0) { $0 + Double(dout[(n * G + g) * Dg + $1]) * Double(c[(g * V + v) * Dg + $1]) } }
                for i in 0..<V {
                    let d = (0..<V).reduce(0.0) { $0 + dy[$1] * y[$1] * ((i == $1 ? 1 : 0) - y[i]) } / Double(tau)
                    XCTAssertEqual(Double(dl.p[(n * G + g) * V + i]), d, accuracy: 1e-5)
                }
                let k = Int(s.chosen[n * G + g])
                for j in 0..<Dg { expectedC[(g * V + k) * Dg + j] += Double(dout[(n * G + g) * Dg + j]) }
            }
        }
        for i in 0..<(G * V * Dg) { XCTAssertEqual(Double(dc.p[i]), expectedC[i], accuracy: 1e-6) }
    }

    // MARK: - Contrastive loss

    let rows = 6, P = 4, K = 3
    let negatives: [Int32] = [1, 2, 3, 0, 2, 5, 0, 0, 0, 4, 5, 1, 0, 0, 0, 3, 1, 0]
    let mask: [Float] = [1, 1, 0, 1, 0, 1]

    private func contrastive(_ predicted: [Float], _ quantized: [Float], codes: [Int32]? = nil) -> (Float, ContrastiveSaved) {
        let s = ContrastiveSaved(probs: Buffer(zeros: rows * (K + 1)).p, cosines: Buffer(zeros: rows * (K + 1)).p)
        let loss = contrastiveLossForward(predicted: Buffer(predicted).c, quantized: Buffer(quantized).c,
                                          negatives: IntBuffer(negatives).c, mask: Buffer(mask).c, N: rows, P: P, K: K,
                                          codes: codes.map { IntBuffer($0).c }, groups: codes == nil ? 0 : 1,
                                          temperature: 0.3, saved: s)
        return (loss, s)
    }

    /// The loss as its definition reads, in Double.
    func testContrastiveLossMatchesItsDefinition() {
        let p = GradCheck.random(count: rows * P, seed: 21), q = GradCheck.random(count: rows * P, seed: 22)
        func cosine(_ a: Int, _ b: Int) -> Double {
            let x = (0..<P).map { Double(p[a * P + $0]) }, y = (0..<P).map { Double(q[b * P + $0]) }
            let dot = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }
            return dot / (x.reduce(0) { $0 + $1 * $1 }.squareRoot() * y.reduce(0) { $0 + $1 * $1 }.squareRoot())
        }
        var expected = 0.0
        for n in 0..<rows where mask[n] != 0 {
            let logits = ([n] + (0..<K).map { Int(negatives[n * K + $0]) }).map { cosine(n, $0) / 0.3 }
            expected += log(logits.reduce(0) { $0 + exp($1) }) - logits[0]
        }
        XCTAssertEqual(Double(contrastive(p, q).0), expected, accuracy: 1e-5 * expected)
    }

    /// A distractor that is the positive (row 3's third, and, by code, row 0's first) drops out of the softmax.
    func testDistractorsEqualToThePositiveAreMaskedOut() {
        let p = GradCheck.random(count: rows * P, seed: 23)
        var q = GradCheck.random(count: rows * P, seed: 24)
        for i in 0..<P { q[1 * P + i] = q[3 * P + i] }  // row 3's third distractor (row 1) equals row 3
        let (_, s) = contrastive(p, q)
        XCTAssertEqual(s.probs[3 * (K + 1) + 3], 0)
        XCTAssertGreaterThan(s.probs[0 * (K + 1) + 1], 0)
        let (_, byCode) = contrastive(p, q, codes: [7, 7, 1, 2, 3, 4])  // row 0's first distractor, row 1, has row 0's code
        XCTAssertEqual(byCode.probs[0 * (K + 1) + 1], 0)
        XCTAssertGreaterThan(byCode.probs[3 * (K + 1) + 3], 0)
    }

    func testContrastiveGradients() {
        let p = GradCheck.random(count: rows * P, seed: 25), q = GradCheck.random(count: rows * P, seed: 26)
        for wrt in 0..<2 {
            gradCheck("contrastive d\(wrt == 0 ? "predicted" : "quantized")", x: wrt == 0 ? p : q, outputCount: 1, forward: { x in
                [self.contrastive(wrt == 0 ? x : p, wrt == 0 ? q : x).0]
            }, backward: { x, dout, dx in
                let (a, b) = wrt == 0 ? (x, q) : (p, x)
                let (_, s) = self.contrastive(a, b)
                let d = Buffer(dx)
                contrastiveLossBackward(dpredicted: wrt == 0 ? d.p : nil, dquantized: wrt == 1 ? d.p : nil, dloss: dout[0],
                                        predicted: Buffer(a).c, quantized: Buffer(b).c, negatives: IntBuffer(self.negatives).c,
                                        mask: Buffer(self.mask).c, N: self.rows, P: self.P, K: self.K, temperature: 0.3, saved: s)
                dx = d.array
            })
        }
    }
}

final class GumbelNoiseTests: XCTestCase {
    /// Both ends of the 24-bit draws give finite noise: the largest u, 1 - 2^-25, is 1 in Float, where
    /// -log(-log u) would be infinite (and the Gumbel softmax NaN).
    func testNoiseIsFiniteAtTheExtremes() {
        let top = gumbelNoise(bits: (1 << 24) - 1), bottom = gumbelNoise(bits: 0)
        XCTAssertTrue(top.isFinite && bottom.isFinite)
        XCTAssertEqual(top, 17.33, accuracy: 0.01)
        XCTAssertEqual(bottom, -2.852, accuracy: 0.01)
        for i in 0..<10_000 { XCTAssertTrue(gumbelNoise(i, rng: Philox(seed: 3), stream: 1, step: 0).isFinite) }
    }
}
