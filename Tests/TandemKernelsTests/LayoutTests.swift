import XCTest
import TandemKernels
import TandemTestSupport

/// Columns side by side, the first two axes swapped, adjacent blocks summed and images made channels-last:
/// forward against the naive references (or the index formula), backward against finite differences.
final class LayoutTests: KernelTestCase {
    func testConcatenateColumns() {
        let N = 3, columns = [5, 17, 2]
        let parts = columns.enumerated().map { GradCheck.random(count: N * $0.element, seed: 10 + UInt64($0.offset)) }
        func forward(_ parts: [[Float]], reference: Bool = false) -> [Float] {
            let out = Buffer(zeros: N * columns.reduce(0, +))
            let inputs = parts.map { Buffer($0).c }
            if reference {
                concatenateColumnsForwardReference(out: out.p, inputs: inputs, columns: columns, N: N)
            } else {
                concatenateColumnsForward(out: out.p, inputs: inputs, columns: columns, N: N)
            }
            return out.array
        }
        XCTAssertEqual(forward(parts), forward(parts, reference: true))
        for i in 0..<columns.count {
            gradCheck("concatenateColumns part \(i)", x: parts[i], outputCount: N * columns.reduce(0, +), forward: { value in
                var probe = parts
                probe[i] = value
                return forward(probe)
            }, backward: { _, dout, dx in
                let grads = parts.indices.map { $0 == i ? Buffer(dx) : Buffer(zeros: parts[$0].count) }
                concatenateColumnsBackward(dinputs: grads.map(\.p), dout: Buffer(dout).c, columns: columns, N: N)
                dx = grads[i].array
            })
        }
    }

    func testSwapLeadingAxes() {
        let A = 3, B = 4, C = 19
        let x = GradCheck.random(count: A * B * C, seed: 3)
        func forward(_ x: [Float], reference: Bool = false) -> [Float] {
            let out = Buffer(zeros: x.count)
            if reference {
                swapLeadingAxesForwardReference(out: out.p, inp: Buffer(x).c, A: A, B: B, C: C)
            } else {
                swapLeadingAxesForward(out: out.p, inp: Buffer(x).c, A: A, B: B, C: C)
            }
            return out.array
        }
        XCTAssertEqual(forward(x), forward(x, reference: true))
        gradCheck("swapLeadingAxes", x: x, outputCount: x.count, forward: { forward($0) }, backward: { _, dout, dx in
            let g = Buffer(dx)
            swapLeadingAxesBackward(dinp: g.p, dout: Buffer(dout).c, A: A, B: B, C: C)
            dx = g.array
        })
    }

    func testSumBlocks() {
        for K in [1, 2, 3] {
            let N = 4, C = 18
            let x = GradCheck.random(count: N * K * C, seed: 9)
            func forward(_ x: [Float], reference: Bool = false) -> [Float] {
                let out = Buffer(zeros: N * C)
                if reference {
                    sumBlocksForwardReference(out: out.p, inp: Buffer(x).c, N: N, K: K, C: C)
                } else {
                    sumBlocksForward(out: out.p, inp: Buffer(x).c, N: N, K: K, C: C)
                }
                return out.array
            }
            assertClose(forward(x), forward(x, reference: true), atol: 1e-6, rtol: 1e-6, "sumBlocks K \(K)")
            gradCheck("sumBlocks K \(K)", x: x, outputCount: N * C, forward: { forward($0) }, backward: { _, dout, dx in
                let g = Buffer(dx)
                sumBlocksBackward(dinp: g.p, dout: Buffer(dout).c, N: N, K: K, C: C)
                dx = g.array
            })
        }
    }

    /// Pixels (B, C, H, W) to (B, H, W, C): every element where PyTorch's `x.permute(0, 2, 3, 1)` puts it.
    func testChannelsLast() {
        let B = 2, C = 3, H = 4, W = 5
        let x = GradCheck.random(count: B * C * H * W, seed: 11)
        func forward(_ x: [Float]) -> [Float] {
            let out = Buffer(zeros: x.count)
            channelsLastForward(out: out.p, inp: Buffer(x).c, B: B, C: C, HW: H * W)
            return out.array
        }
        let y = forward(x)
        for b in 0..<B {
            for c in 0..<C {
                for h in 0..<H {
                    for w in 0..<W { XCTAssertEqual(y[((b * H + h) * W + w) * C + c], x[((b * C + c) * H + h) * W + w]) }
                }
            }
        }
        gradCheck("channelsLast", x: x, outputCount: x.count, forward: forward, backward: { _, dout, dx in
            let g = Buffer(dx)
            channelsLastBackward(dinp: g.p, dout: Buffer(dout).c, B: B, C: C, HW: H * W)
            dx = g.array
        })
    }
}
