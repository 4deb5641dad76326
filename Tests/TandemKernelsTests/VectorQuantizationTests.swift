import Foundation
import XCTest
import TandemKernels
import TandemTestSupport

/// The VQ-VAE tokenizer's cosine codebook (`vectorQuantizeForward`/`Backward`) against a naive Double
/// reference and finite differences, and the mean squared error.
final class VectorQuantizationTests: KernelTestCase {
    let N = 7, K = 5, D = 4, beta: Float = 0.25

    private func saved() -> VectorQuantizeSaved {
        VectorQuantizeSaved(scratch: Buffer(zeros: vectorQuantizeScratchCount(N: N, K: K, D: D)).p, N: N, K: K, D: D)
    }

    /// Runs the forward pass; returns (out, codes, loss).
    private func forward(_ z: [Float], _ e: [Float], saved s: VectorQuantizeSaved) -> ([Float], [Int32], Float) {
        let out = Buffer(zeros: N * D)
        let codes = TestMemory.allocate(Int32.self, count: N)
        let loss = vectorQuantizeForward(out: out.p, codes: codes, z: Buffer(z).c, codebook: Buffer(e).c, N: N, K: K, D: D,
                                         beta: beta, saved: s)
        return (Array(UnsafeBufferPointer(start: out.p, count: N * D)), Array(UnsafeBufferPointer(start: codes, count: N)), loss)
    }

    /// Runs forward at (z, e) and then backward with `dout` and `dloss`, accumulating into `dz` and/or `de`.
    private func backward(z: [Float], e: [Float], dout: [Float], dloss: Float, dz: inout [Float]?, de: inout [Float]?) {
        let s = saved()
        let (_, codes, _) = forward(z, e, saved: s)
        let c = TestMemory.allocate(Int32.self, count: N)
        c.update(from: codes, count: N)
        let dzBuffer = dz.map { Buffer($0) }, deBuffer = de.map { Buffer($0) }
        vectorQuantizeBackward(dz: dzBuffer?.p, dcodebook: deBuffer?.p, dout: Buffer(dout).c, dloss: dloss, codes: c,
                               N: N, K: K, D: D, beta: beta, saved: s, scratch: Buffer(zeros: K * D).p)
        dz = dzBuffer.map { Array(UnsafeBufferPointer(start: $0.p, count: N * D)) }
        de = deBuffer.map { Array(UnsafeBufferPointer(start: $0.p, count: K * D)) }
    }

    func testForwardMatchesReference() {
        let z = GradCheck.random(count: N * D, seed: 1, scale: 3), e = GradCheck.random(count: K * D, seed: 2)
        let (out, codes, loss) = forward(z, e, saved: saved())
        let refOut = Buffer(zeros: N * D), refCodes = TestMemory.allocate(Int32.self, count: N)
        let refLoss = vectorQuantizeForwardReference(out: refOut.p, codes: refCodes, z: Buffer(z).c, codebook: Buffer(e).c,
                                                     N: N, K: K, D: D, beta: beta)
        XCTAssertEqual(codes, Array(UnsafeBufferPointer(start: refCodes, count: N)))
        assertClose(out, Array(UnsafeBufferPointer(start: refOut.p, count: N * D)), atol: 1e-6, rtol: 1e-5, "quantized rows")
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * max(1, abs(refLoss)))
        // Several codes in use, so the test exercises the search.
        XCTAssertGreaterThan(Set(codes).count, 2)
        // Each output row is a unit vector: a normalised code.
        for n in 0..<N {
            let norm = (0..<D).reduce(Float(0)) { $0 + out[n * D + $1] * out[n * D + $1] }
            XCTAssertEqual(norm, 1, accuracy: 1e-5)
        }
    }

    /// The rows' gradient through the commitment term: β/(1+β) of the loss's derivative in z.
    func testCommitmentGradientMatchesFiniteDifferences() {
        let z = GradCheck.random(count: N * D, seed: 1, scale: 3), e = GradCheck.random(count: K * D, seed: 2)
        let codes0 = forward(z, e, saved: saved()).1
        gradCheck("vq commitment dz", x: z, outputCount: 1, step: 1e-3, forward: { x in
            let (_, codes, loss) = forward(x, e, saved: saved())
            precondition(codes == codes0, "a probe moved a row to another code: choose other test data")
            return [loss * beta / (1 + beta)]
        }, backward: { x, dout, dx in
            var dz: [Float]? = dx, de: [Float]? = nil
            backward(z: x, e: e, dout: [Float](repeating: 0, count: N * D), dloss: dout[0], dz: &dz, de: &de)
            dx = dz!
        })
    }

    /// The chosen codes' gradient through the codebook term: 1/(1+β) of the loss's derivative in e; unused
    /// codes get none.
    func testCodebookGradientMatchesFiniteDifferences() {
        let z = GradCheck.random(count: N * D, seed: 1, scale: 3), e = GradCheck.random(count: K * D, seed: 2)
        let codes0 = forward(z, e, saved: saved()).1
        gradCheck("vq codebook de", x: e, outputCount: 1, step: 1e-3, forward: { x in
            let (_, codes, loss) = forward(z, x, saved: saved())
            precondition(codes == codes0, "a probe moved a row to another code: choose other test data")
            return [loss / (1 + beta)]
        }, backward: { x, dout, dx in
            var dz: [Float]? = nil, de: [Float]? = dx
            backward(z: z, e: x, dout: [Float](repeating: 0, count: N * D), dloss: dout[0], dz: &dz, de: &de)
            dx = de!
        })
    }

    /// The straight-through path: dout passes to the rows as if the output were ẑ = z/‖z‖ itself.
    func testStraightThroughGradientIsTheNormalisationsJacobian() {
        let z = GradCheck.random(count: N * D, seed: 5, scale: 2), e = GradCheck.random(count: K * D, seed: 6)
        gradCheck("vq straight-through dz", x: z, outputCount: N * D, step: 1e-3, forward: { x in
            (0..<N).flatMap { n -> [Float] in
                let row = Array(x[(n * D)..<((n + 1) * D)])
                let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return row.map { $0 / norm }
            }
        }, backward: { x, dout, dx in
            var dz: [Float]? = dx, de: [Float]? = nil
            backward(z: x, e: e, dout: dout, dloss: 0, dz: &dz, de: &de)
            dx = dz!
        })
    }

    /// Codes alone equal the forward pass's.
    func testCodesMatchForward() {
        let z = GradCheck.random(count: N * D, seed: 8), e = GradCheck.random(count: K * D, seed: 9)
        let codes = TestMemory.allocate(Int32.self, count: N)
        vectorQuantizeCodes(codes, z: Buffer(z).c, codebook: Buffer(e).c, N: N, K: K, D: D,
                            scratch: Buffer(zeros: vectorQuantizeScratchCount(N: N, K: K, D: D)).p)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: codes, count: N)), forward(z, e, saved: saved()).1)
    }

    func testMeanSquaredError() {
        let n = 11
        let target = GradCheck.random(count: n, seed: 3)
        let x = GradCheck.random(count: n, seed: 4)
        let expected = zip(x, target).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(n)
        XCTAssertEqual(Double(meanSquaredErrorForward(prediction: Buffer(x).c, target: Buffer(target).c, count: n)), expected,
                       accuracy: 1e-6)
        gradCheck("mse", x: x, outputCount: 1, forward: { p in
            [meanSquaredErrorForward(prediction: Buffer(p).c, target: Buffer(target).c, count: n)]
        }, backward: { p, dout, dx in
            dx.withUnsafeMutableBufferPointer {
                meanSquaredErrorBackward(dprediction: $0.baseAddress!, dloss: dout[0], prediction: Buffer(p).c,
                                         target: Buffer(target).c, count: n)
            }
        })
    }

    func testPerplexityCountsCodesInUse() {
        XCTAssertEqual(codebookPerplexity(counts: [5.0, 5, 5, 5]), 4, accuracy: 1e-12)
        XCTAssertEqual(codebookPerplexity(counts: [0.0, 7, 0]), 1, accuracy: 1e-12)
        XCTAssertEqual(codebookPerplexity(counts: [0.0, 0]), 0)
        XCTAssertLessThan(codebookPerplexity(counts: [9.0, 1]), 2)
    }
}
