import XCTest
import TandemKernels
import TandemTestSupport

final class SoftmaxTests: KernelTestCase {
    let rows = 4, cols = 19

    func testForwardMatchesReference() {
        var x = GradCheck.random(count: rows * cols, seed: 1, scale: 3)
        for j in 0..<cols { x[2 * cols + j] = -.infinity }          // a fully masked row
        x[3 * cols + 5] = -.infinity                                // one masked entry
        let inp = Buffer(x)
        let fast = Buffer(zeros: rows * cols), reference = Buffer(zeros: rows * cols)
        softmaxForward(out: fast.p, inp: inp.c, rows: rows, cols: cols)
        softmaxForwardReference(out: reference.p, inp: inp.c, rows: rows, cols: cols)
        assertClose(fast.array, reference.array, atol: 1e-7, rtol: 1e-6, "softmax")
        XCTAssertEqual(Array(fast.array[2 * cols..<3 * cols]), [Float](repeating: 0, count: cols))
        XCTAssertEqual(fast.array[3 * cols + 5], 0)
    }

    func testLogSumExpMatchesReference() {
        for (seed, scale) in [(UInt64(5), Float(1)), (6, 8)] {
            let x = Buffer(random: cols, seed: seed, scale: scale)
            XCTAssertEqual(logSumExp(x.c, count: cols), logSumExpReference(x.c, count: cols), accuracy: 1e-6)
        }
        // The max shift keeps large logits finite, where e^x alone overflows Float.
        let large = Buffer([1000, 999, 998])
        XCTAssertEqual(logSumExp(large.c, count: 3), 1000 + log(1 + exp(-1.0) + exp(-2.0)), accuracy: 1e-6)
    }
}
