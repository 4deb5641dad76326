import XCTest
@testable import TandemKernels
import TandemTestSupport

final class AttentionTests: KernelTestCase {
    let B = 2, T = 5, NH = 3, HS = 4
    var C: Int { NH * HS }
    /// Batch 1 pads keys 0 and 3; with the causal mask its query 0 has no key left at all.
    let mask: [Float] = [1, 1, 1, 1, 1, 0, 1, 1, 0, 1]

    /// q (B, Tq, C) with Tq = `queries` (T when nil), k and v (B, T, C).
    private func forward(_ q: [Float], _ k: [Float], _ v: [Float], mask: [Float]?, causal: Bool, queries: Int? = nil,
                         dropout: AttentionDropout? = nil, reference: Bool = false) -> (out: [Float], probs: [Float]) {
        let Tq = queries ?? T
        let out = Buffer([Float](repeating: .nan, count: B * Tq * C))
        let probs = Buffer([Float](repeating: .nan, count: B * NH * Tq * T))  // every entry must be written
        let m = mask.map { Buffer($0) }
        if reference {
            attentionForwardReference(out: out.p, probs: probs.p, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c,
                                      keyMask: m?.c, B: B, T: T, queries: queries, NH: NH, HS: HS, causal: causal,
                                      dropout: dropout)
        } else {
            attentionForward(out: out.p, probs: probs.p, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c,
                             keyMask: m?.c, B: B, T: T, queries: queries, NH: NH, HS: HS, causal: causal, dropout: dropout)
        }
        return (out.array, probs.array)
    }

    private func backward(_ q: [Float], _ k: [Float], _ v: [Float], mask: [Float]?, causal: Bool, queries: Int? = nil,
                          dropout: AttentionDropout? = nil, dout: [Float], grads: inout [[Float]], reference: Bool = false) {
        let Tq = queries ?? T
        let probs = Buffer(forward(q, k, v, mask: mask, causal: causal, queries: queries, dropout: dropout).probs)
        let dq = Buffer(grads[0]), dk = Buffer(grads[1]), dv = Buffer(grads[2])
        let scratch = Buffer(zeros: B * NH * Tq * T)
        if reference {
            attentionBackwardReference(dq: dq.p, dk: dk.p, dv: dv.p, dprobs: scratch.p, dout: Buffer(dout).c,
                                       probs: probs.c, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c,
                                       B: B, T: T, queries: queries, NH: NH, HS: HS, dropout: dropout)
        } else {
            attentionBackward(dq: dq.p, dk: dk.p, dv: dv.p, dprobs: scratch.p, dout: Buffer(dout).c, probs: probs.c,
                              q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, B: B, T: T, queries: queries, NH: NH, HS: HS,
                              dropout: dropout)
        }
        grads = [dq.array, dk.array, dv.array]
    }

    /// The first Tq positions of every sequence of x (B, T, C).
    private func leading(_ x: [Float], _ Tq: Int) -> [Float] {
        (0..<B).flatMap { b in x[b * T * C..<(b * T + Tq) * C] }
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

    /// Fewer queries than keys (ViT's last block at its leading tokens): the first Tq rows of the full
    /// attention's output and probabilities, the reference's gradients, and dk, dv as if the dropped
    /// queries' outputs had zero gradient.
    func testLeadingQueriesAreTheFirstRowsOfFullAttention() {
        let q = GradCheck.random(count: B * T * C, seed: 1), k = GradCheck.random(count: B * T * C, seed: 2)
        let v = GradCheck.random(count: B * T * C, seed: 3), dout = GradCheck.random(count: B * T * C, seed: 4)
        for Tq in [1, 2, T] {
            for (m, causal) in [(nil, false), (mask, false), (mask, true)] as [([Float]?, Bool)] {
                let what = "Tq \(Tq) mask \(m != nil) causal \(causal)"
                let full = forward(q, k, v, mask: m, causal: causal)
                let fast = forward(leading(q, Tq), k, v, mask: m, causal: causal, queries: Tq)
                let reference = forward(leading(q, Tq), k, v, mask: m, causal: causal, queries: Tq, reference: true)
                assertClose(fast.out, leading(full.out, Tq), atol: 1e-6, rtol: 1e-5, "out vs full, \(what)")
                assertClose(fast.out, reference.out, atol: 1e-5, rtol: 1e-5, "out vs reference, \(what)")
                let fullProbs = (0..<B * NH).flatMap { i in full.probs[i * T * T..<(i * T + Tq) * T] }
                assertClose(fast.probs, fullProbs, atol: 1e-7, rtol: 1e-6, "probs vs full, \(what)")
                assertClose(fast.probs, reference.probs, atol: 1e-6, rtol: 1e-5, "probs vs reference, \(what)")

                let g0 = [GradCheck.random(count: B * Tq * C, seed: 10)]
                    + (1..<3).map { GradCheck.random(count: B * T * C, seed: 10 + UInt64($0)) }
                var g = g0, gRef = g0
                let d = leading(dout, Tq)
                backward(leading(q, Tq), k, v, mask: m, causal: causal, queries: Tq, dout: d, grads: &g)
                backward(leading(q, Tq), k, v, mask: m, causal: causal, queries: Tq, dout: d, grads: &gRef, reference: true)
                for (i, name) in ["dq", "dk", "dv"].enumerated() {
                    assertClose(g[i], gRef[i], atol: 1e-5, rtol: 1e-4, "\(name) vs reference, \(what)")
                }
                // The full kernel with dout zero past the first Tq rows of every sequence.
                var padded = [Float](repeating: 0, count: B * T * C)
                for b in 0..<B {
                    for i in 0..<Tq * C { padded[b * T * C + i] = dout[b * T * C + i] }
                }
                let dqFull: [Float] = g0[0] + [Float](repeating: 0, count: B * (T - Tq) * C)
                var gFull = [dqFull, g0[1], g0[2]]
                backward(q, k, v, mask: m, causal: causal, dout: padded, grads: &gFull)
                assertClose(g[1], gFull[1], atol: 1e-6, rtol: 1e-5, "dk vs full, \(what)")
                assertClose(g[2], gFull[2], atol: 1e-6, rtol: 1e-5, "dv vs full, \(what)")
            }
        }
    }

    func testLeadingQueriesGradients() {
        let Tq = 2
        let inputs = [GradCheck.random(count: B * Tq * C, seed: 20)]
            + (1..<3).map { GradCheck.random(count: B * T * C, seed: 20 + UInt64($0)) }
        for (m, causal) in [(nil, false), (mask, true)] as [([Float]?, Bool)] {
            gradCheckQKV("attention, \(Tq) queries, causal \(causal)", inputs, mask: m, causal: causal, queries: Tq)
        }
    }

    /// More queries than keys without the causal mask (cross-attention: 7 decoder positions over the T = 5
    /// encoder positions, padding masked): matches the reference, and its gradients pass the finite-difference check.
    func testCrossAttentionWithMoreQueriesThanKeys() {
        let Tq = 7
        let inputs = [GradCheck.random(count: B * Tq * C, seed: 30)]
            + (1..<3).map { GradCheck.random(count: B * T * C, seed: 30 + UInt64($0)) }
        let dout = GradCheck.random(count: B * Tq * C, seed: 33)
        for m in [nil, mask] as [[Float]?] {
            let fast = forward(inputs[0], inputs[1], inputs[2], mask: m, causal: false, queries: Tq)
            let reference = forward(inputs[0], inputs[1], inputs[2], mask: m, causal: false, queries: Tq, reference: true)
            assertClose(fast.out, reference.out, atol: 1e-5, rtol: 1e-5, "cross out mask \(m != nil)")
            assertClose(fast.probs, reference.probs, atol: 1e-6, rtol: 1e-5, "cross probs mask \(m != nil)")
            var g = inputs.map { [Float](repeating: 0, count: $0.count) }, gRef = g
            backward(inputs[0], inputs[1], inputs[2], mask: m, causal: false, queries: Tq, dout: dout, grads: &g)
            backward(inputs[0], inputs[1], inputs[2], mask: m, causal: false, queries: Tq, dout: dout, grads: &gRef, reference: true)
            for (i, name) in ["dq", "dk", "dv"].enumerated() {
                assertClose(g[i], gRef[i], atol: 1e-5, rtol: 1e-4, "cross \(name) mask \(m != nil)")
            }
        }
        gradCheckQKV("cross-attention, \(Tq) queries", inputs, mask: mask, causal: false, queries: Tq)
    }

    func testGradients() {
        let inputs = (0..<3).map { GradCheck.random(count: B * T * C, seed: 20 + UInt64($0)) }
        for (m, causal) in [(nil, false), (mask, true)] as [([Float]?, Bool)] {
            gradCheckQKV("attention, causal \(causal)", inputs, mask: m, causal: causal)
        }
    }

    /// Central differences of the output with respect to each of q, k and v (`inputs`, q of B x `queries`
    /// rows), the others held, against `backward`.
    private func gradCheckQKV(_ label: String, _ inputs: [[Float]], mask: [Float]?, causal: Bool, queries: Int? = nil,
                              dropout: AttentionDropout? = nil) {
        for (index, name) in ["q", "k", "v"].enumerated() {
            func with(_ x: [Float]) -> [[Float]] { var all = inputs; all[index] = x; return all }
            gradCheck("\(label): d\(name)", x: inputs[index], outputCount: B * (queries ?? T) * C, forward: { x in
                let a = with(x)
                return self.forward(a[0], a[1], a[2], mask: mask, causal: causal, queries: queries, dropout: dropout).out
            }) { x, dout, dx in
                let a = with(x)
                var grads = inputs.map { [Float](repeating: 0, count: $0.count) }
                grads[index] = dx
                self.backward(a[0], a[1], a[2], mask: mask, causal: causal, queries: queries, dropout: dropout,
                              dout: dout, grads: &grads)
                dx = grads[index]
            }
        }
    }

    /// Dropout on the probabilities: the reference's outputs and gradients (each probability scaled by its
    /// own element's `dropoutFactorReference`), the saved probabilities undropped, central differences
    /// with the mask held fixed, and a mask that is another for every (batch, head) slice and step.
    func testDropoutMatchesReferenceAndGradients() {
        let q = GradCheck.random(count: B * T * C, seed: 1), k = GradCheck.random(count: B * T * C, seed: 2)
        let v = GradCheck.random(count: B * T * C, seed: 3), dout = GradCheck.random(count: B * T * C, seed: 4)
        let dropout = AttentionDropout(p: 0.4, rng: Philox(seed: 11), stream: 5, step: 3, work: Buffer(zeros: T * T).p)
        for (m, causal) in [(nil, false), (mask, false), (mask, true)] as [([Float]?, Bool)] {
            let fast = forward(q, k, v, mask: m, causal: causal, dropout: dropout)
            let reference = forward(q, k, v, mask: m, causal: causal, dropout: dropout, reference: true)
            let plain = forward(q, k, v, mask: m, causal: causal)
            assertClose(fast.out, reference.out, atol: 1e-5, rtol: 1e-5, "out mask \(m != nil) causal \(causal)")
            XCTAssertEqual(fast.probs, plain.probs, "the saved probabilities are the undropped ones")
            XCTAssertNotEqual(fast.out, plain.out)
            let g0 = (0..<3).map { GradCheck.random(count: B * T * C, seed: 10 + UInt64($0)) }
            var g = g0, gRef = g0
            backward(q, k, v, mask: m, causal: causal, dropout: dropout, dout: dout, grads: &g)
            backward(q, k, v, mask: m, causal: causal, dropout: dropout, dout: dout, grads: &gRef, reference: true)
            for (i, name) in ["dq", "dk", "dv"].enumerated() {
                assertClose(g[i], gRef[i], atol: 1e-5, rtol: 1e-4, "\(name) mask \(m != nil) causal \(causal)")
            }
        }
        gradCheckQKV("attention with dropout", [q, k, v], mask: mask, causal: false, dropout: dropout)
        // Masks of 64 x 64 probabilities: about p dropped, another pattern in every slice and at every step.
        let n = 64 * 64
        func pattern(_ d: AttentionDropout, slice: Int) -> [Bool] {
            (0..<n).map { attentionDropoutFactor(d, slice: slice, element: $0) == 0 }
        }
        let patterns = (0..<4).map { pattern(dropout, slice: $0) }
        for p in patterns { XCTAssertEqual(Double(p.filter { $0 }.count) / Double(n), 0.4, accuracy: 0.03) }
        XCTAssertEqual(Set(patterns).count, 4)
        let later = AttentionDropout(p: 0.4, rng: Philox(seed: 11), stream: 5, step: 4, work: Buffer(zeros: 1).p)
        XCTAssertNotEqual(pattern(later, slice: 0), patterns[0])
        // The fast kernel draws the reference's mask at every slice offset.
        let ones = Buffer([Float](repeating: 1, count: n)), big = Buffer(zeros: n)
        let wide = AttentionDropout(p: 0.4, rng: Philox(seed: 11), stream: 5, step: 3, work: big.p)
        for slice in [0, 3, 1000] {
            let kept = wide.drop(ones.c, slice: slice, count: n)
            XCTAssertEqual((0..<n).map { kept[$0] == 0 }, pattern(dropout, slice: slice), "slice \(slice)")
        }
    }

    /// q, k and v side by side in one packed (B, T, 3C) buffer (rowStride 3C, GPT-2's c_attn output) with
    /// per-query first keys (documents packed in a row: block-diagonal causal masks) give the reference's
    /// outputs, probabilities and gradients on the separate tensors, the gradients landing in the packed
    /// buffer's columns.
    func testPackedRowsWithFirstKeysMatchReference() {
        let q = GradCheck.random(count: B * T * C, seed: 1), k = GradCheck.random(count: B * T * C, seed: 2)
        let v = GradCheck.random(count: B * T * C, seed: 3), dout = GradCheck.random(count: B * T * C, seed: 4)
        // Row 0: documents [0, 2) and [2, 5); row 1: [0, 1), [1, 4), [4, 5).
        let first = IntBuffer([0, 0, 2, 2, 2, 0, 1, 1, 1, 4])
        var packed = [Float](repeating: 0, count: B * T * 3 * C)
        for r in 0..<B * T {
            for c in 0..<C {
                packed[r * 3 * C + c] = q[r * C + c]; packed[r * 3 * C + C + c] = k[r * C + c]; packed[r * 3 * C + 2 * C + c] = v[r * C + c]
            }
        }
        let qkv = Buffer(packed)
        let out = Buffer(zeros: B * T * C), probs = Buffer(zeros: B * NH * T * T)
        attentionForward(out: out.p, probs: probs.p, q: qkv.c, k: qkv.c + C, v: qkv.c + 2 * C, keyMask: nil, B: B, T: T,
                         NH: NH, HS: HS, causal: true, firstKeys: first.c, rowStride: 3 * C)
        let refOut = Buffer(zeros: B * T * C), refProbs = Buffer(zeros: B * NH * T * T)
        attentionForwardReference(out: refOut.p, probs: refProbs.p, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, keyMask: nil,
                                  B: B, T: T, NH: NH, HS: HS, causal: true, firstKeys: first.c)
        assertClose(out.array, refOut.array, atol: 1e-5, rtol: 1e-5, "out")
        assertClose(probs.array, refProbs.array, atol: 1e-6, rtol: 1e-5, "probs")
        XCTAssertEqual(probs.array[2 * T + 1], 0, "row 0, query 2 starts a document: key 1 is hidden")

        let dqkv = Buffer(zeros: B * T * 3 * C), scratch = Buffer(zeros: B * NH * T * T)
        attentionBackward(dq: dqkv.p, dk: dqkv.p + C, dv: dqkv.p + 2 * C, dprobs: scratch.p, dout: Buffer(dout).c, probs: probs.c,
                          q: qkv.c, k: qkv.c + C, v: qkv.c + 2 * C, B: B, T: T, NH: NH, HS: HS, rowStride: 3 * C)
        let dq = Buffer(zeros: B * T * C), dk = Buffer(zeros: B * T * C), dv = Buffer(zeros: B * T * C)
        attentionBackwardReference(dq: dq.p, dk: dk.p, dv: dv.p, dprobs: Buffer(zeros: B * NH * T * T).p, dout: Buffer(dout).c,
                                   probs: refProbs.c, q: Buffer(q).c, k: Buffer(k).c, v: Buffer(v).c, B: B, T: T, NH: NH, HS: HS)
        for (part, reference) in [dq, dk, dv].enumerated() {
            let ours = (0..<B * T * C).map { i in dqkv.array[(i / C) * 3 * C + part * C + i % C] }
            assertClose(ours, reference.array, atol: 1e-5, rtol: 1e-5, "packed gradient \(part)")
        }
    }

    /// CKernels' AVX-512 row loops give exactly the Swift loops' bits: row lengths around the 16-lane
    /// boundaries (the partial last vector is where they differ in method), padding masks, causal rows,
    /// a fully masked row, large scores (exp's clamp) and ViT's 65 and 197.
    func testRowLoopsInCMatchSwiftBitForBit() throws {
        try XCTSkipUnless(attentionRowsInC, "this CPU has no AVX-512: the Swift loops are the only ones")
        for count in [1, 5, 15, 16, 17, 31, 33, 64, 65, 128, 197] {
            let rows = min(count, 9)
            let scores = Buffer(random: rows * count, seed: UInt64(count), scale: 6)
            if count > 3 { scores.p[1] = 95; scores.p[2] = -120 }  // past exp's clamp either side
            var maskValues = (0..<count).map { Float($0 % 3 == 1 ? 0 : 1) }
            maskValues[0] = 0
            let mask = Buffer(maskValues), allMasked = Buffer([Float](repeating: 0, count: count))
            // Documents starting at rows 0, 2 and 7 (block-diagonal causal masks).
            let firstKeys = IntBuffer((0..<rows).map { Int32($0 >= 7 ? 7 : $0 >= 2 ? 2 : 0) })
            for (m, causal, first) in [(nil, false, nil), (mask, false, nil), (mask, true, nil), (nil, true, nil), (allMasked, false, nil),
                                       (nil, true, firstKeys), (mask, true, firstKeys)] as [(Buffer?, Bool, IntBuffer?)] {
                let c = Buffer(scores.array), swift = Buffer(scores.array)
                attentionSoftmax(c.p, count: count, rows: rows, mask: m?.c, causal: causal, firstKeys: first?.c, inC: true)
                attentionSoftmax(swift.p, count: count, rows: rows, mask: m?.c, causal: causal, firstKeys: first?.c, inC: false)
                XCTAssertEqual(c.array.map(\.bitPattern), swift.array.map(\.bitPattern), "softmax, \(count) keys, causal \(causal)")

                let dc = Buffer(random: rows * count, seed: UInt64(count) + 100), dswift = Buffer(dc.array)
                attentionSoftmaxBackward(c.c, dc.p, count: count, rows: rows, inC: true)
                attentionSoftmaxBackward(swift.c, dswift.p, count: count, rows: rows, inC: false)
                XCTAssertEqual(dc.array.map(\.bitPattern), dswift.array.map(\.bitPattern), "backward, \(count) keys")
            }
        }
    }
}
