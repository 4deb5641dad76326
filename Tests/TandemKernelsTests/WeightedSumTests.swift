import XCTest
import TandemKernels
import TandemTestSupport

final class WeightedSumTests: KernelTestCase {
    let weights: [Float] = [0.5, 0.25, -1.5]

    func testMatchesReference() {
        let inp = [Buffer([1.5]).c, Buffer([-0.25]).c, Buffer([2]).c]
        let out = Buffer(zeros: 1), outRef = Buffer(zeros: 1)
        weightedSumForward(out: out.p, inp: inp, weights: weights)
        weightedSumForwardReference(out: outRef.p, inp: inp, weights: weights)
        XCTAssertEqual(out.array, outRef.array)
        XCTAssertEqual(out.array[0], 0.5 * 1.5 + 0.25 * -0.25 - 1.5 * 2)
    }

    func testGradients() {
        let start: [Float] = [1.5, -0.25, 2]
        for i in 0..<3 {
            gradCheck("weightedSum term \(i)", x: [start[i]], outputCount: 1, forward: { x in
                let out = Buffer(zeros: 1)
                let inp = (0..<3).map { Buffer([$0 == i ? x[0] : start[$0]]).c }
                weightedSumForward(out: out.p, inp: inp, weights: self.weights)
                return out.array
            }) { _, dout, dx in
                let g = Buffer(dx)
                weightedSumBackward(dinp: (0..<3).map { $0 == i ? g.p : nil }, dout: Buffer(dout).c, weights: self.weights)
                dx = g.array
            }
        }
    }
}
