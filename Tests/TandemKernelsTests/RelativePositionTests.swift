import XCTest
@testable import TandemKernels
import TandemTestSupport

/// BEiT's kernels: the relative position index and bias gather, attention with an additive score bias,
/// LayerScale, stochastic depth and mean pooling, against references, finite differences and
/// transformers' index.
final class RelativePositionTests: KernelTestCase {
    /// transformers' `BeitRelativePositionBias.generate_relative_position_index((2, 3))`, flattened.
    func testIndexMatchesTransformers() {
        let expected: [Int32] = [17, 15, 15, 15, 15, 15, 15, 16, 7, 6, 5, 2, 1, 0, 16, 8, 7, 6, 3, 2, 1, 16, 9, 8, 7, 4, 3, 2,
                                 16, 12, 11, 10, 7, 6, 5, 16, 13, 12, 11, 8, 7, 6, 16, 14, 13, 12, 9, 8, 7]
        XCTAssertEqual(relativePositionIndex(height: 2, width: 3), expected)
        for (h, w) in [(1, 1), (3, 2), (4, 4), (14, 14)] {
            XCTAssertEqual(relativePositionIndex(height: h, width: w), relativePositionIndexReference(height: h, width: w), "\(h)x\(w)")
        }
    }

    func testBiasGatherAndScatter() {
        let index = relativePositionIndex(height: 2, width: 3), T = 7, R = 18, NH = 3
        let table = GradCheck.random(count: R * NH, seed: 1)
        for Tq in [1, T] {
            let out = Buffer(zeros: NH * Tq * T)
            relativePositionBiasForward(out: out.p, table: Buffer(table).c, index: IntBuffer(index).c, NH: NH, queries: Tq, T: T)
            for h in 0..<NH { for i in 0..<Tq { for j in 0..<T {
                XCTAssertEqual(out.array[(h * Tq + i) * T + j], table[Int(index[i * T + j]) * NH + h])
            } } }
            let dout = GradCheck.random(count: NH * Tq * T, seed: 2)
            let start = GradCheck.random(count: R * NH, seed: 3)
            let fast = Buffer(start), reference = Buffer(start)
            relativePositionBiasBackward(dtable: fast.p, dout: Buffer(dout).c, index: IntBuffer(index).c, NH: NH, queries: Tq, T: T)
            relativePositionBiasBackwardReference(dtable: reference.p, dout: Buffer(dout).c, index: IntBuffer(index).c, rows: R,
                                                  NH: NH, queries: Tq, T: T)
            assertClose(fast.array, reference.array, atol: 1e-6, rtol: 1e-5, "Tq \(Tq)")
        }
    }

    // MARK: - Attention with a score bias

    let B = 2, T = 5, NH = 3, HS = 4
    var C: Int { NH * HS }
    let mask: [Float] = [1, 1, 1, 1, 1, 0, 1, 1, 0, 1]

    private func attention(_ q: [Float], _ k: [Float], _ v: [Float], bias: [Float]?, mask: [Float]?, causal: Bool,
                           queries Tq: Int, reference: Bool = false) -> (out: [Float], probs: [Float]) {
        let out = Buffer([Float](repeating: .nan, count: B * Tq * C)), probs = Buffer([Float](repeating: .nan, count: B * NH * Tq * T))
        let m = mask.map { Buffer($0).c }, s = bias.map { Buffer($0).c }
        if reference {
            attentionForwardReference(out: out.p, probs: probs.p, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, keyMask: m,
                                      B: B, T: T, queries: Tq, NH: NH, HS: HS, causal: causal, scoreBias: s)
        } else {
            attentionForward(out: out.p, probs: probs.p, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, keyMask: m,
                             B: B, T: T, queries: Tq, NH: NH, HS: HS, causal: causal, scoreBias: s)
        }
        return (out.array, probs.array)
    }

    /// [dq, dk, dv, dbias] added to `grads`.
    private func attentionBackward(_ q: [Float], _ k: [Float], _ v: [Float], bias: [Float], mask: [Float]?, causal: Bool,
                                   queries Tq: Int, dout: [Float], grads: inout [[Float]], reference: Bool = false) {
        let probs = Buffer(attention(q, k, v, bias: bias, mask: mask, causal: causal, queries: Tq).probs)
        let g = grads.map { Buffer($0) }, scratch = Buffer(zeros: B * NH * Tq * T)
        if reference {
            attentionBackwardReference(dq: g[0].p, dk: g[1].p, dv: g[2].p, dprobs: scratch.p, dout: Buffer(dout).c, probs: probs.c,
                                       q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, B: B, T: T, queries: Tq, NH: NH, HS: HS,
                                       dscoreBias: g[3].p)
        } else {
            TandemKernels.attentionBackward(dq: g[0].p, dk: g[1].p, dv: g[2].p, dprobs: scratch.p, dout: Buffer(dout).c,
                                            probs: probs.c, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, B: B, T: T,
                                            queries: Tq, NH: NH, HS: HS, dscoreBias: g[3].p)
        }
        grads = g.map(\.array)
    }

    func testScoreBiasMatchesReferenceAndZerosChangeNoBit() {
        let k = GradCheck.random(count: B * T * C, seed: 2), v = GradCheck.random(count: B * T * C, seed: 3)
        for Tq in [2, T] {
            let q = GradCheck.random(count: B * Tq * C, seed: 1), dout = GradCheck.random(count: B * Tq * C, seed: 4)
            let bias = GradCheck.random(count: NH * Tq * T, seed: 5, scale: 2)
            for (m, causal) in [(nil, false), (mask, false), (mask, true)] as [([Float]?, Bool)] {
                let what = "Tq \(Tq) mask \(m != nil) causal \(causal)"
                let fast = attention(q, k, v, bias: bias, mask: m, causal: causal, queries: Tq)
                let reference = attention(q, k, v, bias: bias, mask: m, causal: causal, queries: Tq, reference: true)
                assertClose(fast.out, reference.out, atol: 1e-5, rtol: 1e-5, "out, \(what)")
                assertClose(fast.probs, reference.probs, atol: 1e-6, rtol: 1e-5, "probs, \(what)")
                XCTAssertNotEqual(fast.out, attention(q, k, v, bias: nil, mask: m, causal: causal, queries: Tq).out, what)
                let zeros = attention(q, k, v, bias: [Float](repeating: 0, count: NH * Tq * T), mask: m, causal: causal, queries: Tq)
                let none = attention(q, k, v, bias: nil, mask: m, causal: causal, queries: Tq)
                XCTAssertEqual(zeros.out, none.out, "a zero bias changes no bit, \(what)")

                let g0 = [B * Tq * C, B * T * C, B * T * C, NH * Tq * T].enumerated().map { GradCheck.random(count: $1, seed: 10 + UInt64($0)) }
                var g = g0, gRef = g0
                attentionBackward(q, k, v, bias: bias, mask: m, causal: causal, queries: Tq, dout: dout, grads: &g)
                attentionBackward(q, k, v, bias: bias, mask: m, causal: causal, queries: Tq, dout: dout, grads: &gRef, reference: true)
                for (i, name) in ["dq", "dk", "dv", "dbias"].enumerated() {
                    assertClose(g[i], gRef[i], atol: 1e-5, rtol: 1e-4, "\(name), \(what)")
                }
            }
        }
    }

    func testScoreBiasGradient() {
        let q = GradCheck.random(count: B * T * C, seed: 1), k = GradCheck.random(count: B * T * C, seed: 2)
        let v = GradCheck.random(count: B * T * C, seed: 3), bias = GradCheck.random(count: NH * T * T, seed: 5)
        for m in [nil, mask] as [[Float]?] {
            gradCheck("attention dbias mask \(m != nil)", x: bias, outputCount: B * T * C, forward: { b in
                self.attention(q, k, v, bias: b, mask: m, causal: false, queries: self.T).out
            }) { b, dout, dx in
                var grads = [q, k, v].map { [Float](repeating: 0, count: $0.count) } + [dx]
                self.attentionBackward(q, k, v, bias: b, mask: m, causal: false, queries: self.T, dout: dout, grads: &grads)
                dx = grads[3]
            }
        }
    }

    // MARK: - Layer scale, stochastic depth, mean pooling

    func testLayerScale() {
        let N = 5, C = 19
        let x = GradCheck.random(count: N * C, seed: 1), scale = GradCheck.random(count: C, seed: 2)
        let out = Buffer(zeros: N * C)
        layerScaleForward(out: out.p, inp: Buffer(x).c, scale: Buffer(scale).c, N: N, C: C)
        XCTAssertEqual(out.array, (0..<N * C).map { x[$0] * scale[$0 % C] })
        let dout = GradCheck.random(count: N * C, seed: 3)
        let dx = Buffer(GradCheck.random(count: N * C, seed: 4)), ds = Buffer(GradCheck.random(count: C, seed: 5))
        let dxRef = Buffer(dx.array), dsRef = Buffer(ds.array)
        layerScaleBackward(dinp: dx.p, dscale: ds.p, dout: Buffer(dout).c, inp: Buffer(x).c, scale: Buffer(scale).c, N: N, C: C)
        layerScaleBackwardReference(dinp: dxRef.p, dscale: dsRef.p, dout: Buffer(dout).c, inp: Buffer(x).c, scale: Buffer(scale).c,
                                    N: N, C: C)
        assertClose(dx.array, dxRef.array, atol: 1e-6, rtol: 1e-5, "dinp")
        assertClose(ds.array, dsRef.array, atol: 1e-5, rtol: 1e-5, "dscale")
    }

    /// Whole samples are kept (scaled by 1/(1 - p)) or zeroed, about 1 - p of them, the same for the same
    /// (rng, stream, step), and backward applies the forward's factors.
    func testDropPathDropsWholeSamples() {
        let B = 400, count = 21, p: Float = 0.3, rng = Philox(seed: 9)
        let x = GradCheck.random(count: B * count, seed: 1)
        let out = Buffer(zeros: B * count)
        dropPathForward(out: out.p, inp: Buffer(x).c, B: B, count: count, p: p, rng: rng, stream: 4, step: 7)
        var kept = 0
        for b in 0..<B {
            let row = Array(out.array[b * count..<(b + 1) * count]), input = Array(x[b * count..<(b + 1) * count])
            if dropPathKeeps(sample: b, p: p, rng: rng, stream: 4, step: 7) {
                kept += 1
                assertClose(row, input.map { $0 / (1 - p) }, atol: 1e-6, rtol: 1e-6, "sample \(b)")
            } else {
                XCTAssertEqual(row, [Float](repeating: 0, count: count), "sample \(b)")
            }
        }
        XCTAssertEqual(Double(kept) / Double(B), 0.7, accuracy: 0.07)
        let again = Buffer(zeros: B * count), other = Buffer(zeros: B * count)
        dropPathForward(out: again.p, inp: Buffer(x).c, B: B, count: count, p: p, rng: rng, stream: 4, step: 7)
        dropPathForward(out: other.p, inp: Buffer(x).c, B: B, count: count, p: p, rng: rng, stream: 4, step: 8)
        XCTAssertEqual(again.array, out.array)
        XCTAssertNotEqual(other.array, out.array, "another step draws again")
        let dx = Buffer(zeros: B * count)
        dropPathBackward(dinp: dx.p, dout: Buffer(x).c, B: B, count: count, p: p, rng: rng, stream: 4, step: 7)
        XCTAssertEqual(dx.array, out.array, "backward scales as forward did")
    }

    func testMeanRows() {
        let B = 3, T = 6, C = 20
        let x = GradCheck.random(count: B * T * C, seed: 1)
        for first in [0, 1] {
            let out = Buffer(zeros: B * C), reference = Buffer(zeros: B * C)
            meanRowsForward(out: out.p, inp: Buffer(x).c, first: first, B: B, T: T, C: C)
            meanRowsForwardReference(out: reference.p, inp: Buffer(x).c, first: first, B: B, T: T, C: C)
            assertClose(out.array, reference.array, atol: 1e-6, rtol: 1e-5, "first \(first)")
            gradCheck("mean rows from \(first)", x: x, outputCount: B * C, forward: { x in
                let y = Buffer(zeros: B * C)
                meanRowsForward(out: y.p, inp: Buffer(x).c, first: first, B: B, T: T, C: C)
                return y.array
            }) { _, dout, dx in
                let g = Buffer(dx)
                meanRowsBackward(dinp: g.p, dout: Buffer(dout).c, first: first, B: B, T: T, C: C)
                dx = g.array
            }
        }
    }
}
