import Foundation
import XCTest
import TandemKernels
import TandemTestSupport

final class CTCLossTests: XCTestCase {
    /// The naive definition: -log of the summed probability of every frame-level path of C^T that
    /// collapses (repeats merged, then blanks removed) to the target.
    func bruteForceLoss(_ logits: [Float], t: Int, c: Int, frames: Int, label: [Int32], blank: Int, utterance n: Int) -> Double {
        var logProbs = [[Double]]()
        for f in 0..<frames {
            let row = (0..<c).map { Double(logits[(n * t + f) * c + $0]) }
            let m = row.max()!
            let logZ = m + log(row.map { exp($0 - m) }.reduce(0, +))
            logProbs.append(row.map { $0 - logZ })
        }
        var total = 0.0
        var path = [Int](repeating: 0, count: frames)
        func visit(_ f: Int, _ logP: Double) {
            if f == frames {
                var collapsed: [Int32] = []
                var previous = -1
                for k in path { if k != previous && k != blank { collapsed.append(Int32(k)) }; previous = k }
                if collapsed == label { total += exp(logP) }
                return
            }
            for k in 0..<c { path[f] = k; visit(f + 1, logP + logProbs[f][k]) }
        }
        visit(0, 0)
        return -log(total)
    }

    // Two utterances of T = 6 frames over C = 4 classes (blank 0): one with a repeated label (needs a
    // blank between) in 5 of its frames, one in all 6.
    let N = 2, T = 6, C = 4
    let inputLengths = [5, 6]
    let targets: [Int32] = [2, 2, 1, 3, 1]
    let targetLengths = [2, 3]

    func testMatchesTheSumOverAllPaths() {
        let logits = GradCheck.random(count: N * T * C, seed: 11, scale: 1.5)
        let (sum, saved) = logits.withUnsafeBufferPointer {
            ctcLossForward(logits: $0.baseAddress!, N: N, T: T, C: C, inputLengths: inputLengths, targets: targets,
                           targetLengths: targetLengths, blank: 0, reduction: .sum, zeroInfinity: false)
        }
        let reference = [bruteForceLoss(logits, t: T, c: C, frames: 5, label: [2, 2], blank: 0, utterance: 0),
                         bruteForceLoss(logits, t: T, c: C, frames: 6, label: [1, 3, 1], blank: 0, utterance: 1)]
        for n in 0..<N { XCTAssertEqual(saved.losses[n], reference[n], accuracy: 1e-5 * reference[n]) }
        XCTAssertEqual(Double(sum), reference[0] + reference[1], accuracy: 1e-5 * (reference[0] + reference[1]))
        let (mean, _) = logits.withUnsafeBufferPointer {
            ctcLossForward(logits: $0.baseAddress!, N: N, T: T, C: C, inputLengths: inputLengths, targets: targets,
                           targetLengths: targetLengths, blank: 0, reduction: .mean, zeroInfinity: false)
        }
        XCTAssertEqual(Double(mean), (reference[0] / 2 + reference[1] / 3) / 2, accuracy: 1e-5)
    }

    func testGradients() {
        for reduction in CTCReduction.allCases {
            gradCheck("ctc \(reduction)", x: GradCheck.random(count: N * T * C, seed: 12), outputCount: 1, forward: { x in
                let (loss, _) = x.withUnsafeBufferPointer {
                    ctcLossForward(logits: $0.baseAddress!, N: self.N, T: self.T, C: self.C, inputLengths: self.inputLengths,
                                   targets: self.targets, targetLengths: self.targetLengths, blank: 0, reduction: reduction,
                                   zeroInfinity: false)
                }
                return [loss]
            }) { x, dout, dx in
                var (_, saved) = x.withUnsafeBufferPointer {
                    ctcLossForward(logits: $0.baseAddress!, N: self.N, T: self.T, C: self.C, inputLengths: self.inputLengths,
                                   targets: self.targets, targetLengths: self.targetLengths, blank: 0, reduction: reduction,
                                   zeroInfinity: false)
                }
                dx.withUnsafeMutableBufferPointer {
                    ctcLossBackward(dlogits: $0.baseAddress!, saved: &saved, N: self.N, T: self.T, C: self.C,
                                    inputLengths: self.inputLengths, targets: self.targets, targetLengths: self.targetLengths,
                                    blank: 0, reduction: reduction, zeroInfinity: false, dloss: dout[0])
                }
            }
        }
    }

    /// Frames after an utterance's input length get no gradient; a target that cannot fit (three labels
    /// with a repeat need 4 frames, 3 are given) is infinite, or 0 with zero_infinity, and gets none.
    func testPaddingFramesAndImpossibleTargets() {
        let logits = GradCheck.random(count: N * T * C, seed: 13)
        let short = [5, 3], impossible: [Int32] = [2, 2, 1, 1, 1]
        for zero in [false, true] {
            let (loss, computed) = logits.withUnsafeBufferPointer {
                ctcLossForward(logits: $0.baseAddress!, N: N, T: T, C: C, inputLengths: short, targets: impossible,
                               targetLengths: [2, 3], blank: 0, reduction: .sum, zeroInfinity: zero)
            }
            var saved = computed
            XCTAssertEqual(saved.infinite, [false, true])
            XCTAssertEqual(loss.isInfinite, !zero)
            var d = [Float](repeating: 0, count: N * T * C)
            d.withUnsafeMutableBufferPointer {
                ctcLossBackward(dlogits: $0.baseAddress!, saved: &saved, N: N, T: T, C: C, inputLengths: short,
                                targets: impossible, targetLengths: [2, 3], blank: 0, reduction: .sum, zeroInfinity: zero, dloss: 1)
            }
            XCTAssertEqual(Array(d[(5 * C)..<(T * C)]), [Float](repeating: 0, count: C), "frame 5 of utterance 0 is padding")
            XCTAssertEqual(Array(d[(T * C)...]), [Float](repeating: 0, count: T * C), "the impossible utterance")
            // Each real frame's gradient sums to 0 over the classes (softmax minus a distribution).
            for f in 0..<5 { XCTAssertEqual(d[(f * C)..<((f + 1) * C)].reduce(0, +), 0, accuracy: 1e-5) }
        }
    }
}
