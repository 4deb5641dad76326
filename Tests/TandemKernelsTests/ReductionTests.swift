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

    func testScale() {
        let c = Buffer(random: 17, seed: 2)
        let before = c.array
        scale(c.p, count: 17, by: -0.5)
        XCTAssertEqual(c.array, before.map { $0 * -0.5 })
    }
}
