import XCTest
import TandemKernels
import TandemTestSupport

/// Weight normalisation over every axis but one, for each of the three axes of a (5, 3, 4) v (the last
/// is wav2vec 2.0's positional convolution's dim 2), against the Double reference and finite differences.
final class WeightNormTests: KernelTestCase {
    let dims = [5, 3, 4]

    /// (outer, D, inner) of v viewed around axis `dim`.
    func view(_ dim: Int) -> (outer: Int, D: Int, inner: Int) {
        (dims[..<dim].reduce(1, *), dims[dim], dims[(dim + 1)...].reduce(1, *))
    }

    func forward(_ g: [Float], _ v: [Float], dim: Int) -> (out: Buffer, norm: Buffer) {
        let (outer, D, inner) = view(dim)
        let out = Buffer(zeros: v.count), norm = Buffer(zeros: D)
        weightNormForward(out: out.p, norm: norm.p, g: Buffer(g).c, v: Buffer(v).c, outer: outer, D: D, inner: inner)
        return (out, norm)
    }

    func testForwardAndBackwardMatchReference() {
        let count = dims.reduce(1, *)
        for dim in 0..<3 {
            let (outer, D, inner) = view(dim)
            let g = Buffer(random: D, seed: 1), v = Buffer(random: count, seed: 2)
            let (out, norm) = forward(g.array, v.array, dim: dim)
            let outRef = Buffer(zeros: count), normRef = Buffer(zeros: D)
            weightNormForwardReference(out: outRef.p, norm: normRef.p, g: g.c, v: v.c, outer: outer, D: D, inner: inner)
            assertClose(out.array, outRef.array, atol: 1e-6, rtol: 1e-5, "out dim \(dim)")
            assertClose(norm.array, normRef.array, atol: 1e-6, rtol: 1e-6, "norm dim \(dim)")
            // Each slice of w has norm |g|.
            for d in 0..<D {
                var sq = 0.0
                for o in 0..<outer { for i in 0..<inner { sq += Double(out.p[(o * D + d) * inner + i] * out.p[(o * D + d) * inner + i]) } }
                XCTAssertEqual(sq.squareRoot(), Double(abs(g.p[d])), accuracy: 1e-5, "‖w[\(d)]‖ dim \(dim)")
            }

            let dout = Buffer(random: count, seed: 3)
            let g0 = [GradCheck.random(count: D, seed: 4), GradCheck.random(count: count, seed: 5)]
            let fast = g0.map(Buffer.init), reference = g0.map(Buffer.init)
            weightNormBackward(dg: fast[0].p, dv: fast[1].p, dout: dout.c, g: g.c, v: v.c, norm: norm.c,
                               outer: outer, D: D, inner: inner)
            weightNormBackwardReference(dg: reference[0].p, dv: reference[1].p, dout: dout.c, g: g.c, v: v.c,
                                        norm: norm.c, outer: outer, D: D, inner: inner)
            assertClose(fast[0].array, reference[0].array, atol: 1e-5, rtol: 1e-5, "dg dim \(dim)")
            assertClose(fast[1].array, reference[1].array, atol: 1e-5, rtol: 1e-5, "dv dim \(dim)")
        }
    }

    func testGradients() {
        let count = dims.reduce(1, *)
        for dim in 0..<3 {
            let (outer, D, inner) = view(dim)
            let g0 = GradCheck.random(count: D, seed: 1), v0 = GradCheck.random(count: count, seed: 2)
            func backward(_ g: [Float], _ v: [Float], _ dout: [Float], dg: Buffer?, dv: Buffer?) {
                let norm = forward(g, v, dim: dim).norm
                weightNormBackward(dg: dg?.p, dv: dv?.p, dout: Buffer(dout).c, g: Buffer(g).c, v: Buffer(v).c,
                                   norm: norm.c, outer: outer, D: D, inner: inner)
            }
            gradCheck("weight norm dg dim \(dim)", x: g0, outputCount: count, forward: { self.forward($0, v0, dim: dim).out.array }) { g, dout, dg in
                let b = Buffer(dg)
                backward(g, v0, dout, dg: b, dv: nil)
                dg = b.array
            }
            gradCheck("weight norm dv dim \(dim)", x: v0, outputCount: count, forward: { self.forward(g0, $0, dim: dim).out.array }) { v, dout, dv in
                let b = Buffer(dv)
                backward(g0, v, dout, dg: nil, dv: b)
                dv = b.array
            }
        }
    }
}
