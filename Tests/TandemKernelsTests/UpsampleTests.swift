import XCTest
import TandemKernels
import TandemTestSupport

/// Nearest-neighbour 2x upsampling against its naive reference and finite differences.
final class UpsampleTests: KernelTestCase {
    func testUpsampleNearest2x() {
        for (B, H, W, C) in [(2, 3, 5, 7), (1, 1, 1, 1), (3, 4, 2, 16)] {
            let x = GradCheck.random(count: B * H * W * C, seed: 1), outCount = B * 4 * H * W * C
            func forward(_ x: [Float], reference: Bool = false) -> [Float] {
                let out = Buffer(random: outCount, seed: 2)
                if reference {
                    upsampleNearest2xForwardReference(out: out.p, inp: Buffer(x).c, B: B, H: H, W: W, C: C)
                } else {
                    upsampleNearest2xForward(out: out.p, inp: Buffer(x).c, B: B, H: H, W: W, C: C)
                }
                return out.array
            }
            XCTAssertEqual(forward(x), forward(x, reference: true), "forward B \(B) H \(H) W \(W) C \(C)")
            let dout = GradCheck.random(count: outCount, seed: 3)
            let fast = Buffer(random: x.count, seed: 4), reference = Buffer(random: x.count, seed: 4)
            upsampleNearest2xBackward(dinp: fast.p, dout: Buffer(dout).c, B: B, H: H, W: W, C: C)
            upsampleNearest2xBackwardReference(dinp: reference.p, dout: Buffer(dout).c, B: B, H: H, W: W, C: C)
            assertClose(fast.array, reference.array, atol: 1e-6, rtol: 1e-6, "backward B \(B) H \(H) W \(W) C \(C)")
            gradCheck("upsampleNearest2x B \(B) H \(H) W \(W) C \(C)", x: x, outputCount: outCount,
                      forward: { forward($0) }) { _, dout, dx in
                let g = Buffer(dx)
                upsampleNearest2xBackward(dinp: g.p, dout: Buffer(dout).c, B: B, H: H, W: W, C: C)
                dx = g.array
            }
        }
    }

    /// PyTorch's output for a 2x2 image of 2 channels, written out.
    func testMatchesPyTorchOnAKnownImage() {
        // Channels-last (1, 2, 2, 2): pixel (h, w) holds (10 h + w, -(10 h + w)).
        let x: [Float] = [0, -0, 1, -1, 10, -10, 11, -11]
        let out = Buffer(zeros: 32)
        upsampleNearest2xForward(out: out.p, inp: Buffer(x).c, B: 1, H: 2, W: 2, C: 2)
        let rows: [[Float]] = [[0, 0, 1, 1], [0, 0, 1, 1], [10, 10, 11, 11], [10, 10, 11, 11]]
        XCTAssertEqual(out.array, rows.flatMap { $0.flatMap { [$0, -$0] } })
    }
}
