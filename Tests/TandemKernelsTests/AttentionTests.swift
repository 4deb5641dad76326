import XCTest
import TandemKernels
import TandemTestSupport

final class AttentionTests: KernelTestCase {
    let B = 2, T = 5, NH = 3, HS = 4
    var C: Int { NH * HS }
    /// Batch 1 pads keys 0 and 3; with the causal mask its query 0 has no key left at all.
    let mask: [Float] = [1, 1, 1, 1, 1, 0, 1, 1, 0, 1]

    private func forward(_ q: [Float], _ k: [Float], _ v: [Float], mask: [Float]?, causal: Bool,
                         reference: Bool = false) -> (out: [Float], probs: [Float]) {
        let out = Buffer([Float](repeating: .nan, count: B * T * C))
        let probs = Buffer([Float](repeating: .nan, count: B * NH * T * T))  // every entry must be written
        let m = mask.map { Buffer($0) }
        if reference {
            attentionForwardReference(out: out.p, probs: probs.p, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c,
                                      keyMask: m?.c, B: B, T: T, NH: NH, HS: HS, causal: causal)
        } else {
            attentionForward(out: out.p, probs: probs.p, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c,
                             keyMask: m?.c, B: B, T: T, NH: NH, HS: HS, causal: causal)
        }
        return (out.array, probs.array)
    }

    private func backward(_ q: [Float], _ k: [Float], _ v: [Float], mask: [Float]?, causal: Bool, dout: [Float],
                          grads: inout [[Float]], reference: Bool = false) {
        let probs = Buffer(forward(q, k, v, mask: mask, causal: causal).probs)
        let dq = Buffer(grads[0]), dk = Buffer(grads[1]), dv = Buffer(grads[2])
        let scratch = Buffer(zeros: B * NH * T * T)
        if reference {
            attentionBackwardReference(dq: dq.p, dk: dk.p, dv: dv.p, dprobs: scratch.p, dout: Buffer(dout).c,
                                       probs: probs.c, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c,
                                       B: B, T: T, NH: NH, HS: HS)
        } else {
            attentionBackward(dq: dq.p, dk: dk.p, dv: dv.p, dprobs: scratch.p, dout: Buffer(dout).c, probs: probs.c,
                              q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, B: B, T: T, NH: NH, HS: HS)
        }
        grads = [dq.array, dk.array, dv.array]
    }

    func testMatchesReferenceWithMasks() {
        let q = GradCheck.random(count: B * T * C, seed: 1), k = GradCheck.random(count: B * T * C, seed: 2)
        let v = GradCheck.random(count: B * T * C, seed: 3), dout = GradCheck.random(count: B * T * C, seed: 4)
        for (m, causal) in [(nil, false), (mask, false), (nil, true), (mask, true)] as [([Float]?, Bool)] {
            let fast = forward(q, k, v, mask: m, causal: causal)
            let reference = forward(q, k, v, mask: m, causal: causal, reference: true)
            assertClose(fast.out, reference.out, atol: 1e-5, rtol: 1e-5, "out mask \(m != nil) causal \(causal)")
            assertClose(fast.probs, reference.probs, atol: 1e-6, rtol: 1e-5, "probs mask \(m != nil) causal \(causal)")
            XCTAssertFalse(fast.out.contains { $0.isNaN })

            let g0 = (0..<3).map { GradCheck.random(count: B * T * C, seed: 10 + UInt64($0)) }
            var g = g0, gRef = g0
            backward(q, k, v, mask: m, causal: causal, dout: dout, grads: &g)
            backward(q, k, v, mask: m, causal: causal, dout: dout, grads: &gRef, reference: true)
            for (i, name) in ["dq", "dk", "dv"].enumerated() {
                assertClose(g[i], gRef[i], atol: 1e-5, rtol: 1e-4, "\(name) mask \(m != nil) causal \(causal)")
            }
        }
    }

    func testMaskedKeysGetExactlyZeroAndEmptyRowsGiveZeros() {
        let q = GradCheck.random(count: B * T * C, seed: 1), k = GradCheck.random(count: B * T * C, seed: 2)
        let v = GradCheck.random(count: B * T * C, seed: 3)
        let (out, probs) = forward(q, k, v, mask: mask, causal: true)
        for h in 0..<NH {
            for i in 0..<T {
                let row = Array(probs[((NH + h) * T + i) * T..<((NH + h) * T + i + 1) * T])
                for j in 0..<T where mask[T + j] == 0 || j > i { XCTAssertEqual(row[j], 0, "h \(h) i \(i) j \(j)") }
                if i == 0 {
                    XCTAssertEqual(row, [Float](repeating: 0, count: T))
                } else {
                    XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-6)
                }
            }
        }
        // Batch 1, query 0 sees no key: its output is zero in every head.
        XCTAssertEqual(Array(out[T * C..<T * C + C]), [Float](repeating: 0, count: C))
    }

    func testGradients() {
        let inputs = (0..<3).map { GradCheck.random(count: B * T * C, seed: 20 + UInt64($0)) }
        for (m, causal) in [(nil, false), (mask, true)] as [([Float]?, Bool)] {
            for (index, name) in ["q", "k", "v"].enumerated() {
                func with(_ x: [Float]) -> [[Float]] { var all = inputs; all[index] = x; return all }
                gradCheck("attention d\(name) causal \(causal)", x: inputs[index], outputCount: B * T * C, forward: { x in
                    let a = with(x)
                    return self.forward(a[0], a[1], a[2], mask: m, causal: causal).out
                }) { x, dout, dx in
                    let a = with(x)
                    var grads = [[Float]](repeating: [Float](repeating: 0, count: x.count), count: 3)
                    grads[index] = dx
                    self.backward(a[0], a[1], a[2], mask: m, causal: causal, dout: dout, grads: &grads)
                    dx = grads[index]
                }
            }
        }
    }
}
