import XCTest
import TandemKernels
import TandemTestSupport

final class PositionsTests: KernelTestCase {
    /// 4 rows of C = 19 (a vector and a tail) at positions out of order, scale √19: the reference's
    /// values, and the gradient by finite differences.
    func testScaledPositionsMatchReferenceAndGradient() {
        let N = 4, C = 19, scale = Float(19).squareRoot()
        let table = sinusoidalPositions(count: 6, dimensions: C), positions: [Int32] = [5, 0, 2, 2]
        let x0 = GradCheck.random(count: N * C, seed: 7)
        func forward(_ x: [Float], reference: Bool = false) -> [Float] {
            let out = Buffer(zeros: N * C), t = Buffer(table)
            positions.withUnsafeBufferPointer { p in
                if reference {
                    scaledPositionsForwardReference(out: out.p, inp: Buffer(x).c, table: t.c, positions: p.baseAddress!,
                                                    scale: scale, N: N, C: C)
                } else {
                    scaledPositionsForward(out: out.p, inp: Buffer(x).c, table: t.c, positions: p.baseAddress!, scale: scale, N: N, C: C)
                }
            }
            return out.array
        }
        assertClose(forward(x0), forward(x0, reference: true), atol: 1e-6, rtol: 1e-6, "scaled positions")
        gradCheck("scaled positions", x: x0, outputCount: N * C, forward: { forward($0) }) { _, dout, dx in
            let g = Buffer(dx)
            scaledPositionsBackward(dinp: g.p, dout: Buffer(dout).c, scale: scale, count: N * C)
            dx = g.array
        }
    }
}
