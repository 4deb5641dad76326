import XCTest
import TandemKernels
import TandemTestSupport

/// The recurrent kernels against their Double references (every cell, both directions, padding, given
/// initial states, strided outputs) and against finite differences for every gradient.
final class RecurrentTests: KernelTestCase {
    /// Inputs of one direction: x (B, T, I), h0, c0 (B, H), W_ih, W_hh, b_ih, b_hh.
    struct Case {
        let shape: RecurrentShape
        var x, h0, c0, wih, whh, bih, bhh: [Float]
        let lengths: [Int32]?
        /// Whether the W_hh products of the steps run on W_hh packed once (`panelGemm`), where supported.
        var packed = false

        init(_ cell: RecurrentCell, B: Int, T: Int, I: Int, H: Int, reverse: Bool, lengths: [Int32]?, seed: UInt64) {
            shape = RecurrentShape(cell: cell, B: B, T: T, I: I, H: H, reverse: reverse)
            let GH = cell.gates * H
            x = GradCheck.random(count: B * T * I, seed: seed)
            h0 = GradCheck.random(count: B * H, seed: seed + 1, scale: 0.5)
            c0 = GradCheck.random(count: B * H, seed: seed + 2, scale: 0.5)
            wih = GradCheck.random(count: GH * I, seed: seed + 3, scale: 0.4)
            whh = GradCheck.random(count: GH * H, seed: seed + 4, scale: 0.4)
            bih = GradCheck.random(count: GH, seed: seed + 5, scale: 0.3)
            bhh = GradCheck.random(count: GH, seed: seed + 6, scale: 0.3)
            self.lengths = lengths
        }

        var weights: RecurrentWeights {
            RecurrentWeights(inputWeight: Buffer(wih).c, hiddenWeight: Buffer(whh).c,
                             inputBias: Buffer(bih).c, hiddenBias: Buffer(bhh).c)
        }
        var lengthPointer: UnsafePointer<Int32>? { lengths.map { IntBuffer($0).c } }
        var lstm: Bool { shape.cell.hasCellState }

        /// out (B, T, H), hN and (LSTM) cN concatenated; `saved` returned for backward.
        func forward(ldo: Int, reference: Bool = false) -> (outputs: [Float], saved: Buffer) {
            let s = shape
            let out = Buffer(zeros: s.B * s.T * ldo), hN = Buffer(zeros: s.B * s.H), cN = Buffer(zeros: s.B * s.H)
            let saved = Buffer(zeros: s.savedCount)
            if reference {
                recurrentForwardReference(out: out.p, ldo: ldo, hN: hN.p, cN: lstm ? cN.p : nil, inp: Buffer(x).c,
                                          h0: Buffer(h0).c, c0: Buffer(c0).c, lengths: lengthPointer, weights: weights, shape: s)
            } else {
                recurrentForward(out: out.p, ldo: ldo, hN: hN.p, cN: lstm ? cN.p : nil, saved: saved.p, inp: Buffer(x).c,
                                 h0: Buffer(h0).c, c0: Buffer(c0).c, lengths: lengthPointer, weights: weights, shape: s,
                                 packed: packedBuffer)
            }
            var outputs: [Float] = []
            for r in 0..<s.B * s.T { outputs += Array(out.array[r * ldo..<r * ldo + s.H]) }
            return (outputs + hN.array + (lstm ? cN.array : []), saved)
        }

        /// Gradients [dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh] accumulated onto `prefill` from d(outputs).
        func backward(_ dOutputs: [Float], ldo: Int, prefill: [[Float]]? = nil, reference: Bool = false) -> [[Float]] {
            let s = shape, BTH = s.B * s.T * s.H, BH = s.B * s.H
            let dout = Buffer(zeros: s.B * s.T * ldo)
            for r in 0..<s.B * s.T { for j in 0..<s.H { dout.p[r * ldo + j] = dOutputs[r * s.H + j] } }
            let dhN = Buffer(Array(dOutputs[BTH..<BTH + BH]))
            let dcN = lstm ? Buffer(Array(dOutputs[BTH + BH..<BTH + 2 * BH])) : nil
            let start = prefill ?? [x, h0, c0, wih, whh, bih, bhh].map { [Float](repeating: 0, count: $0.count) }
            let g = start.map(Buffer.init)
            let dw = RecurrentWeightGradients(inputWeight: g[3].p, hiddenWeight: g[4].p, inputBias: g[5].p, hiddenBias: g[6].p)
            if reference {
                recurrentBackwardReference(dinp: g[0].p, dh0: g[1].p, dc0: g[2].p, dweights: dw, dout: dout.c, ldo: ldo,
                                           dhN: dhN.c, dcN: dcN?.c, inp: Buffer(x).c, h0: Buffer(h0).c, c0: Buffer(c0).c,
                                           lengths: lengthPointer, weights: weights, shape: s)
            } else {
                let saved = forward(ldo: ldo).saved
                recurrentBackward(dinp: g[0].p, dh0: g[1].p, dc0: g[2].p, dweights: dw,
                                  scratch: Buffer(zeros: s.backwardScratchCount).p, dout: dout.c, ldo: ldo,
                                  dhN: dhN.c, dcN: dcN?.c, saved: saved.p, inp: Buffer(x).c, lengths: lengthPointer,
                                  weights: weights, shape: s, packed: packedBuffer)
            }
            return g.map(\.array)
        }

        /// A fresh buffer for W_hh packed (filled with NaN: the kernels must write what they read), or nil.
        var packedBuffer: UnsafeMutablePointer<Float>? {
            guard packed, shape.packedWeightCount > 0 else { return nil }
            return Buffer([Float](repeating: .nan, count: shape.packedWeightCount)).p
        }

        var outputCount: Int { shape.B * shape.T * shape.H + shape.B * shape.H * (lstm ? 2 : 1) }
    }

    static let names = ["dx", "dh0", "dc0", "dW_ih", "dW_hh", "db_ih", "db_hh"]

    func testForwardAndBackwardMatchReference() {
        // H = 19 exercises a full 16-lane chunk and a tail; lengths include a full, a short and an empty sequence.
        // packed: the steps' W_hh products on W_hh packed once (`panelGemm`) instead of `gemm`.
        for cell in RecurrentCell.allCases {
            for reverse in [false, true] {
                for (lengths, packed) in [(nil, false), ([5, 2, 0, 4] as [Int32]?, false), (nil, true), ([5, 2, 0, 4], true)] {
                    var c = Case(cell, B: 4, T: 5, I: 7, H: 19, reverse: reverse, lengths: lengths, seed: 11)
                    c.packed = packed
                    let label = "\(cell) reverse \(reverse) lengths \(lengths.map { "\($0)" } ?? "nil") packed \(packed)"
                    let ldo = 2 * 19 + 3
                    let fast = c.forward(ldo: ldo).outputs, reference = c.forward(ldo: ldo, reference: true).outputs
                    assertClose(fast, reference, atol: 2e-6, rtol: 1e-5, "\(label) forward")
                    let dOutputs = GradCheck.random(count: c.outputCount, seed: 99)
                    let prefill = [c.x, c.h0, c.c0, c.wih, c.whh, c.bih, c.bhh].enumerated().map {
                        GradCheck.random(count: $0.element.count, seed: 200 + UInt64($0.offset))
                    }
                    let g = c.backward(dOutputs, ldo: ldo, prefill: prefill)
                    let gRef = c.backward(dOutputs, ldo: ldo, prefill: prefill, reference: true)
                    for i in 0..<7 { assertClose(g[i], gRef[i], atol: 1e-5, rtol: 1e-4, "\(label) \(Self.names[i])") }
                }
            }
        }
    }

    /// Padded steps write zero outputs and leave the state alone: hN is the state after the last valid
    /// step, the reverse direction starts there, and an empty sequence returns h0.
    func testPaddedStepsKeepTheState() {
        let c = Case(.lstm, B: 2, T: 4, I: 3, H: 5, reverse: true, lengths: [4, 2], seed: 3)
        let full = c.forward(ldo: 5).outputs
        var short = Case(.lstm, B: 1, T: 2, I: 3, H: 5, reverse: true, lengths: nil, seed: 3)
        short.x = Array(c.x[4 * 3 * 1..<4 * 3 + 2 * 3])
        short.h0 = Array(c.h0[5..<10]); short.c0 = Array(c.c0[5..<10])
        short.wih = c.wih; short.whh = c.whh; short.bih = c.bih; short.bhh = c.bhh
        let alone = short.forward(ldo: 5).outputs
        assertClose(Array(full[4 * 5..<6 * 5]), Array(alone[0..<10]), atol: 1e-6, rtol: 1e-6, "outputs of sequence 1")
        XCTAssertEqual(Array(full[6 * 5..<8 * 5]), [Float](repeating: 0, count: 10), "padded outputs")
        assertClose(Array(full[45..<50]), Array(alone[10..<15]), atol: 1e-6, rtol: 1e-6, "hN of sequence 1")
        assertClose(Array(full[55..<60]), Array(alone[15..<20]), atol: 1e-6, rtol: 1e-6, "cN of sequence 1")
    }

    func testGradients() {
        for cell in RecurrentCell.allCases {
            for (reverse, packed) in [(false, false), (true, false), (false, true), (true, true)] {
                var c = Case(cell, B: 2, T: 4, I: 3, H: 5, reverse: reverse, lengths: [4, 3], seed: 21)
                c.packed = packed
                let step: Float = cell == .rnnRelu ? 1e-3 : 1e-2
                let inputs: [WritableKeyPath<Case, [Float]>] = [\.x, \.h0, \.c0, \.wih, \.whh, \.bih, \.bhh]
                for (i, path) in inputs.enumerated() where i != 2 || c.lstm {
                    gradCheck("\(cell) reverse \(reverse) packed \(packed) \(Self.names[i])", x: c[keyPath: path], outputCount: c.outputCount,
                              step: step, forward: { value in
                        var probe = c
                        probe[keyPath: path] = value
                        return probe.forward(ldo: 5).outputs
                    }, backward: { value, dout, dx in
                        var probe = c
                        probe[keyPath: path] = value
                        var prefill = [c.x, c.h0, c.c0, c.wih, c.whh, c.bih, c.bhh].map { [Float](repeating: 0, count: $0.count) }
                        prefill[i] = dx
                        dx = probe.backward(dout, ldo: 5, prefill: prefill)[i]
                    })
                }
            }
        }
    }
}
