import XCTest
import TandemKernels
import TandemTestSupport

final class LinearTests: KernelTestCase {
    let N = 5, C = 7, OC = 3

    func testForwardMatchesReference() {
        let inp = Buffer(random: N * C, seed: 1), weight = Buffer(random: OC * C, seed: 2), bias = Buffer(random: OC, seed: 3)
        for b in [bias, nil] {
            let fast = Buffer([Float](repeating: .nan, count: N * OC)), reference = Buffer(zeros: N * OC)
            linearForward(out: fast.p, inp: inp.c, weight: weight.c, bias: b?.c, N: N, C: C, OC: OC)
            linearForwardReference(out: reference.p, inp: inp.c, weight: weight.c, bias: b?.c, N: N, C: C, OC: OC)
            assertClose(fast.array, reference.array, atol: 1e-5, rtol: 1e-5, "linear bias \(b != nil)")
        }
    }

    func testBackwardMatchesReference() {
        let inp = Buffer(random: N * C, seed: 1), weight = Buffer(random: OC * C, seed: 2), dout = Buffer(random: N * OC, seed: 4)
        let g0 = (GradCheck.random(count: N * C, seed: 5), GradCheck.random(count: OC * C, seed: 6), GradCheck.random(count: OC, seed: 7))
        let fast = (Buffer(g0.0), Buffer(g0.1), Buffer(g0.2)), reference = (Buffer(g0.0), Buffer(g0.1), Buffer(g0.2))
        linearBackward(dinp: fast.0.p, dweight: fast.1.p, dbias: fast.2.p, dout: dout.c, inp: inp.c, weight: weight.c,
                       N: N, C: C, OC: OC)
        linearBackwardReference(dinp: reference.0.p, dweight: reference.1.p, dbias: reference.2.p, dout: dout.c,
                                inp: inp.c, weight: weight.c, N: N, C: C, OC: OC)
        assertClose(fast.0.array, reference.0.array, atol: 1e-5, rtol: 1e-5, "dinp")
        assertClose(fast.1.array, reference.1.array, atol: 1e-5, rtol: 1e-5, "dweight")
        assertClose(fast.2.array, reference.2.array, atol: 1e-5, rtol: 1e-5, "dbias")
    }

    func testGradients() {
        let inp0 = GradCheck.random(count: N * C, seed: 1), w0 = GradCheck.random(count: OC * C, seed: 2)
        let b0 = GradCheck.random(count: OC, seed: 3)
        func forward(_ inp: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
            let out = Buffer(zeros: N * OC)
            linearForward(out: out.p, inp: Buffer(inp).c, weight: Buffer(w).c, bias: Buffer(b).c, N: N, C: C, OC: OC)
            return out.array
        }
        gradCheck("linear dinp", x: inp0, outputCount: N * OC, forward: { forward($0, w0, b0) }) { x, dout, dx in
            let g = Buffer(dx)
            linearBackward(dinp: g.p, dweight: nil, dbias: nil, dout: Buffer(dout).c, inp: Buffer(x).c,
                           weight: Buffer(w0).c, N: self.N, C: self.C, OC: self.OC)
            dx = g.array
        }
        gradCheck("linear dweight", x: w0, outputCount: N * OC, forward: { forward(inp0, $0, b0) }) { w, dout, dw in
            let g = Buffer(dw)
            linearBackward(dinp: nil, dweight: g.p, dbias: nil, dout: Buffer(dout).c, inp: Buffer(inp0).c,
                           weight: Buffer(w).c, N: self.N, C: self.C, OC: self.OC)
            dw = g.array
        }
        gradCheck("linear dbias", x: b0, outputCount: N * OC, forward: { forward(inp0, w0, $0) }) { _, dout, db in
            let g = Buffer(db)
            linearBackward(dinp: nil, dweight: nil, dbias: g.p, dout: Buffer(dout).c, inp: Buffer(inp0).c,
                           weight: Buffer(w0).c, N: self.N, C: self.C, OC: self.OC)
            db = g.array
        }
    }

    /// GPT-2's Conv1D layout: with the weight stored (C, OC), forward and backward equal nn.Linear's on the
    /// transposed (OC, C) weight (checked against the reference and gradients above), and dweight arrives
    /// transposed; the (C, OC) weight's gradient passes a finite-difference check of its own.
    func testInputsByOutputsLayoutIsTheTransposedWeight() {
        let inp = Buffer(random: N * C, seed: 1), w = Buffer(random: OC * C, seed: 2), bias = Buffer(random: OC, seed: 3)
        let wt = Buffer((0..<C * OC).map { i in w.array[(i % OC) * C + i / OC] })  // (C, OC)
        let a = Buffer(zeros: N * OC), b = Buffer(zeros: N * OC)
        linearForward(out: a.p, inp: inp.c, weight: w.c, bias: bias.c, N: N, C: C, OC: OC)
        linearForward(out: b.p, inp: inp.c, weight: wt.c, bias: bias.c, N: N, C: C, OC: OC, layout: .inputsByOutputs)
        assertClose(b.array, a.array, atol: 1e-6, rtol: 1e-6, "forward")
        let dout = Buffer(random: N * OC, seed: 4)
        let dinpA = Buffer(zeros: N * C), dinpB = Buffer(zeros: N * C), dwA = Buffer(zeros: OC * C), dwB = Buffer(zeros: C * OC)
        linearBackward(dinp: dinpA.p, dweight: dwA.p, dbias: nil, dout: dout.c, inp: inp.c, weight: w.c, N: N, C: C, OC: OC)
        linearBackward(dinp: dinpB.p, dweight: dwB.p, dbias: nil, dout: dout.c, inp: inp.c, weight: wt.c, N: N, C: C, OC: OC,
                       layout: .inputsByOutputs)
        assertClose(dinpB.array, dinpA.array, atol: 1e-6, rtol: 1e-6, "dinp")
        assertClose(dwB.array, (0..<C * OC).map { i in dwA.array[(i % OC) * C + i / OC] }, atol: 1e-6, rtol: 1e-6, "dweight")
        gradCheck("conv1d dweight", x: wt.array, outputCount: N * OC, forward: { w in
            let out = Buffer(zeros: self.N * self.OC)
            linearForward(out: out.p, inp: inp.c, weight: Buffer(w).c, bias: nil, N: self.N, C: self.C, OC: self.OC,
                          layout: .inputsByOutputs)
            return out.array
        }) { w, dout, dw in
            let g = Buffer(dw)
            linearBackward(dinp: nil, dweight: g.p, dbias: nil, dout: Buffer(dout).c, inp: inp.c, weight: Buffer(w).c,
                           N: self.N, C: self.C, OC: self.OC, layout: .inputsByOutputs)
            dw = g.array
        }
    }

    /// The one-row matrix-vector form (generation steps) gives linearForward's row for both layouts.
    func testRowFormMatchesLinearForward() {
        let inp = Buffer(random: C, seed: 1), w = Buffer(random: OC * C, seed: 2), bias = Buffer(random: OC, seed: 3)
        for layout in [WeightLayout.outputsByInputs, .inputsByOutputs] {
            for b in [bias, nil] {
                let row = Buffer(zeros: OC), full = Buffer(zeros: OC)
                linearForwardRow(out: row.p, inp: inp.c, weight: w.c, bias: b?.c, C: C, OC: OC, layout: layout)
                linearForward(out: full.p, inp: inp.c, weight: w.c, bias: b?.c, N: 1, C: C, OC: OC, layout: layout)
                assertClose(row.array, full.array, atol: 1e-6, rtol: 1e-6, "\(layout), bias \(b != nil)")
            }
        }
    }

    func testBiasAdd() {
        let N = 3, C = 19
        let inp = Buffer(random: N * C, seed: 1), bias = Buffer(random: C, seed: 2)
        let fast = Buffer(zeros: N * C), reference = Buffer(zeros: N * C)
        biasAddForward(out: fast.p, inp: inp.c, bias: bias.c, N: N, C: C)
        biasAddForwardReference(out: reference.p, inp: inp.c, bias: bias.c, N: N, C: C)
        XCTAssertEqual(fast.array, reference.array)

        let dout = Buffer(random: N * C, seed: 3)
        let d0 = GradCheck.random(count: N * C, seed: 4), db0 = GradCheck.random(count: C, seed: 5)
        let dinp = Buffer(d0), dbias = Buffer(db0), dinpRef = Buffer(d0), dbiasRef = Buffer(db0)
        biasAddBackward(dinp: dinp.p, dbias: dbias.p, dout: dout.c, N: N, C: C)
        biasAddBackwardReference(dinp: dinpRef.p, dbias: dbiasRef.p, dout: dout.c, N: N, C: C)
        assertClose(dinp.array, dinpRef.array, atol: 1e-6, rtol: 1e-6, "dinp")
        assertClose(dbias.array, dbiasRef.array, atol: 1e-5, rtol: 1e-5, "dbias")

        let bias0 = GradCheck.random(count: C, seed: 2)
        gradCheck("bias add dbias", x: bias0, outputCount: N * C, forward: { b in
            let out = Buffer(zeros: N * C)
            biasAddForward(out: out.p, inp: inp.c, bias: Buffer(b).c, N: N, C: C)
            return out.array
        }) { _, dout, db in
            let g = Buffer(db)
            biasAddBackward(dinp: nil, dbias: g.p, dout: Buffer(dout).c, N: N, C: C)
            db = g.array
        }
    }
}
