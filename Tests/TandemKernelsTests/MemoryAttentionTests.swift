import XCTest
import TandemKernels
import TandemTestSupport

/// Dot and additive attention over a memory against their Double references (strided weights, padding,
/// an empty sequence) and against finite differences for every gradient.
final class MemoryAttentionTests: KernelTestCase {
    /// B sequences over S positions: query (B, A), keys (B, S, A), v (A), vBias (1), values (B, S, C).
    /// Dot attention uses A = C and the keys as they are.
    struct Case {
        let B: Int, S: Int, A: Int, C: Int
        let additive: Bool
        let lengths: [Int32]?
        var query, keys, v, vBias, values: [Float]

        init(additive: Bool, B: Int, S: Int, A: Int, C: Int, lengths: [Int32]?, seed: UInt64) {
            self.B = B; self.S = S; self.A = A; self.C = C; self.additive = additive; self.lengths = lengths
            query = GradCheck.random(count: B * A, seed: seed, scale: 0.7)
            keys = GradCheck.random(count: B * S * A, seed: seed + 1, scale: 0.7)
            v = GradCheck.random(count: A, seed: seed + 2)
            vBias = GradCheck.random(count: 1, seed: seed + 3)
            values = GradCheck.random(count: B * S * C, seed: seed + 4)
        }

        var ldw: Int { S + 3 }
        var lengthPointer: UnsafePointer<Int32>? { lengths.map { IntBuffer($0).c } }

        /// context (B, C) then the weights (B, S) taken from their strided rows; `hidden` for backward.
        func forward(reference: Bool = false) -> (outputs: [Float], weights: Buffer, hidden: Buffer) {
            let context = Buffer(zeros: B * C), weights = Buffer(random: B * ldw, seed: 5), hidden = Buffer(zeros: B * S * A)
            switch (additive, reference) {
            case (false, false):
                dotAttentionForward(context: context.p, weights: weights.p, ldw: ldw, query: Buffer(query).c, keys: Buffer(keys).c,
                                    values: Buffer(values).c, lengths: lengthPointer, B: B, S: S, C: C)
            case (false, true):
                dotAttentionForwardReference(context: context.p, weights: weights.p, ldw: ldw, query: Buffer(query).c,
                                             keys: Buffer(keys).c, values: Buffer(values).c, lengths: lengthPointer, B: B, S: S, C: C)
            case (true, false):
                additiveAttentionForward(context: context.p, weights: weights.p, ldw: ldw, hidden: hidden.p, query: Buffer(query).c,
                                         keys: Buffer(keys).c, v: Buffer(v).c, vBias: Buffer(vBias).c, values: Buffer(values).c,
                                         lengths: lengthPointer, B: B, S: S, A: A, C: C)
            case (true, true):
                additiveAttentionForwardReference(context: context.p, weights: weights.p, ldw: ldw, query: Buffer(query).c,
                                                  keys: Buffer(keys).c, v: Buffer(v).c, vBias: Buffer(vBias).c,
                                                  values: Buffer(values).c, lengths: lengthPointer, B: B, S: S, A: A, C: C)
            }
            var probabilities: [Float] = []
            for b in 0..<B { probabilities += Array(weights.array[b * ldw..<b * ldw + S]) }
            return (context.array + probabilities, weights, hidden)
        }

        var outputCount: Int { B * C }

        /// Gradients [dquery, dkeys, dv, dvBias, dvalues] accumulated onto `prefill` from dcontext.
        func backward(_ dcontext: [Float], prefill: [[Float]]? = nil, reference: Bool = false) -> [[Float]] {
            let start = prefill ?? [query, keys, v, vBias, values].map { [Float](repeating: 0, count: $0.count) }
            let g = start.map(Buffer.init)
            let dc = Buffer(dcontext)
            switch (additive, reference) {
            case (false, false):
                let f = forward()
                dotAttentionBackward(dquery: g[0].p, dkeys: g[1].p, dvalues: g[4].p, scratch: Buffer(zeros: S).p, dcontext: dc.c,
                                     weights: f.weights.c, ldw: ldw, query: Buffer(query).c, keys: Buffer(keys).c,
                                     values: Buffer(values).c, lengths: lengthPointer, B: B, S: S, C: C)
            case (false, true):
                dotAttentionBackwardReference(dquery: g[0].p, dkeys: g[1].p, dvalues: g[4].p, dcontext: dc.c, query: Buffer(query).c,
                                              keys: Buffer(keys).c, values: Buffer(values).c, lengths: lengthPointer, B: B, S: S, C: C)
            case (true, false):
                let f = forward()
                additiveAttentionBackward(dquery: g[0].p, dkeys: g[1].p, dv: g[2].p, dvBias: g[3].p, dvalues: g[4].p,
                                          scratch: Buffer(zeros: S).p, dcontext: dc.c, weights: f.weights.c, ldw: ldw,
                                          hidden: f.hidden.c, v: Buffer(v).c, values: Buffer(values).c, lengths: lengthPointer,
                                          B: B, S: S, A: A, C: C)
            case (true, true):
                additiveAttentionBackwardReference(dquery: g[0].p, dkeys: g[1].p, dv: g[2].p, dvBias: g[3].p, dvalues: g[4].p,
                                                   dcontext: dc.c, query: Buffer(query).c, keys: Buffer(keys).c, v: Buffer(v).c,
                                                   vBias: Buffer(vBias).c, values: Buffer(values).c, lengths: lengthPointer,
                                                   B: B, S: S, A: A, C: C)
            }
            return g.map(\.array)
        }
    }

    static let names = ["dquery", "dkeys", "dv", "dvBias", "dvalues"]

    func testForwardAndBackwardMatchReference() {
        // 19 channels: a full 16-lane chunk and a tail; lengths include a full, a short and an empty sequence.
        for additive in [false, true] {
            for lengths in [nil, [6, 2, 0, 5] as [Int32]] {
                let c = Case(additive: additive, B: 4, S: 6, A: 19, C: additive ? 17 : 19, lengths: lengths, seed: 31)
                let label = "\(additive ? "additive" : "dot") lengths \(lengths.map { "\($0)" } ?? "nil")"
                assertClose(c.forward().outputs, c.forward(reference: true).outputs, atol: 2e-6, rtol: 1e-5, "\(label) forward")
                let dcontext = GradCheck.random(count: c.outputCount, seed: 77)
                let prefill = [c.query, c.keys, c.v, c.vBias, c.values].enumerated().map {
                    GradCheck.random(count: $0.element.count, seed: 300 + UInt64($0.offset))
                }
                let g = c.backward(dcontext, prefill: prefill), gRef = c.backward(dcontext, prefill: prefill, reference: true)
                for i in 0..<5 { assertClose(g[i], gRef[i], atol: 1e-5, rtol: 1e-4, "\(label) \(Self.names[i])") }
            }
        }
    }

    /// Padded positions get probability exactly 0 and an empty sequence a zero context.
    func testPaddingIsMasked() {
        for additive in [false, true] {
            let c = Case(additive: additive, B: 2, S: 5, A: 4, C: 4, lengths: [3, 0], seed: 8)
            let out = c.forward().outputs
            XCTAssertEqual(Array(out[4..<8]), [0, 0, 0, 0], "empty sequence's context")
            let weights = Array(out[8...])
            XCTAssertEqual(Array(weights[3..<10]), [Float](repeating: 0, count: 7), "padded weights")
            XCTAssertEqual(weights[0..<3].reduce(0, +), 1, accuracy: 1e-6)
        }
    }

    func testGradients() {
        for additive in [false, true] {
            let c = Case(additive: additive, B: 2, S: 4, A: 5, C: additive ? 3 : 5, lengths: [4, 3], seed: 41)
            let inputs: [WritableKeyPath<Case, [Float]>] = [\.query, \.keys, \.v, \.vBias, \.values]
            // vBias shifts every score alike: its exact gradient is zero (checked below), where central
            // differences give zero and a relative error means nothing.
            for (i, path) in inputs.enumerated() where i != 3 && (additive || i != 2) {
                gradCheck("\(additive ? "additive" : "dot") \(Self.names[i])", x: c[keyPath: path], outputCount: c.outputCount,
                          forward: { value in
                    var probe = c
                    probe[keyPath: path] = value
                    return Array(probe.forward().outputs[0..<c.outputCount])
                }, backward: { value, dout, dx in
                    var probe = c
                    probe[keyPath: path] = value
                    var prefill = [c.query, c.keys, c.v, c.vBias, c.values].map { [Float](repeating: 0, count: $0.count) }
                    prefill[i] = dx
                    dx = probe.backward(dout, prefill: prefill)[i]
                })
            }
            if additive {
                let dcontext = GradCheck.random(count: c.outputCount, seed: 5)
                XCTAssertEqual(c.backward(dcontext)[3][0], 0, accuracy: 1e-6, "additive dvBias")
            }
        }
    }
}
