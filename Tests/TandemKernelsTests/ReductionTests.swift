import XCTest
import TandemKernels
import TandemTestSupport

final class ReductionTests: KernelTestCase {
    func testSumsMatchDoubleReference() {
        let n = 5003  // several 1024-element blocks and a tail
        let x = Buffer(random: n, seed: 1, scale: 10)
        XCTAssertEqual(sum(x.c, count: n), sumReference(x.c, count: n), accuracy: 1e-3)
        XCTAssertEqual(mean(x.c, count: n), sumReference(x.c, count: n) / Float(n), accuracy: 1e-6)
        XCTAssertEqual(sumOfSquares(x.c, count: n), sumOfSquaresReference(x.c, count: n),
                       accuracy: 1e-5 * sumOfSquaresReference(x.c, count: n))
        XCTAssertEqual(mean(x.c, count: 0), 0)
        XCTAssertEqual(sum(x.c, count: 0), 0)
    }

    func testGlobalNormAndScale() {
        let a = Buffer([3, 4]), b = Buffer([12]), c = Buffer(random: 17, seed: 2)
        let norm = globalNorm([UnsafeBufferPointer(start: a.c, count: 2), UnsafeBufferPointer(start: b.c, count: 1),
                               UnsafeBufferPointer(start: c.c, count: 0)])
        XCTAssertEqual(norm, 13, accuracy: 1e-6)
        let before = c.array
        scale(c.p, count: 17, by: -0.5)
        XCTAssertEqual(c.array, before.map { $0 * -0.5 })
    }
}
