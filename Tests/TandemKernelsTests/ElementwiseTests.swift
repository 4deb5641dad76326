import XCTest
import TandemKernels
import TandemTestSupport

/// Embedding, residual and dropout kernels.
final class ElementwiseTests: KernelTestCase {
    func testEmbedding() {
        let V = 6, C = 19, N = 5
        let table0 = GradCheck.random(count: V * C, seed: 1)
        let ids = IntBuffer([4, 0, 4, 5, 2])  // a repeated id must add up in backward
        let out = Buffer(zeros: N * C), outRef = Buffer(zeros: N * C)
        embeddingForward(out: out.p, ids: ids.c, table: Buffer(table0).c, N: N, C: C)
        embeddingForwardReference(out: outRef.p, ids: ids.c, table: Buffer(table0).c, N: N, C: C)
        XCTAssertEqual(out.array, outRef.array)

        let dout = Buffer(random: N * C, seed: 2), d0 = GradCheck.random(count: V * C, seed: 3)
        let d = Buffer(d0), dRef = Buffer(d0)
        embeddingBackward(dtable: d.p, dout: dout.c, ids: ids.c, N: N, C: C)
        embeddingBackwardReference(dtable: dRef.p, dout: dout.c, ids: ids.c, N: N, C: C)
        assertClose(d.array, dRef.array, atol: 1e-6, rtol: 1e-6, "dtable")

        gradCheck("embedding", x: table0, outputCount: N * C, forward: { table in
            let o = Buffer(zeros: N * C)
            embeddingForward(out: o.p, ids: ids.c, table: Buffer(table).c, N: N, C: C)
            return o.array
        }) { _, dout, dtable in
            let g = Buffer(dtable)
            embeddingBackward(dtable: g.p, dout: Buffer(dout).c, ids: ids.c, N: N, C: C)
            dtable = g.array
        }
    }

    func testResidual() {
        let n = 37
        let a = Buffer(random: n, seed: 1), b = Buffer(random: n, seed: 2)
        let out = Buffer(zeros: n), outRef = Buffer(zeros: n)
        residualForward(out: out.p, a: a.c, b: b.c, count: n)
        residualForwardReference(out: outRef.p, a: a.c, b: b.c, count: n)
        XCTAssertEqual(out.array, outRef.array)

        let dout = Buffer(random: n, seed: 3)
        let da0 = GradCheck.random(count: n, seed: 4), db0 = GradCheck.random(count: n, seed: 5)
        let da = Buffer(da0), db = Buffer(db0), daRef = Buffer(da0), dbRef = Buffer(db0)
        residualBackward(da: da.p, db: db.p, dout: dout.c, count: n)
        residualBackwardReference(da: daRef.p, db: dbRef.p, dout: dout.c, count: n)
        XCTAssertEqual(da.array, daRef.array)
        XCTAssertEqual(db.array, dbRef.array)

        gradCheck("residual", x: a.array, outputCount: n, forward: { x in
            let o = Buffer(zeros: n)
            residualForward(out: o.p, a: Buffer(x).c, b: b.c, count: n)
            return o.array
        }) { _, dout, dx in
            let g = Buffer(dx)
            residualBackward(da: g.p, db: nil, dout: Buffer(dout).c, count: n)
            dx = g.array
        }
    }

    func testDropout() {
        let rng = Philox(seed: 42)
        let n = 150  // two groups of 64 elements (16 Philox blocks each) and a partial one
        let inp = Buffer(random: n, seed: 1)
        let out = Buffer(zeros: n), outRef = Buffer(zeros: n)
        dropoutForward(out: out.p, inp: inp.c, count: n, p: 0.3, rng: rng, stream: 5, step: 9)
        dropoutForwardReference(out: outRef.p, inp: inp.c, count: n, p: 0.3, rng: rng, stream: 5, step: 9)
        XCTAssertEqual(out.array, outRef.array, "vectorised Philox must match Philox.block bit for bit")
        let stepped = Buffer(zeros: n), steppedRef = Buffer(zeros: n)
        dropoutForward(out: stepped.p, inp: inp.c, count: n, p: 0.5, rng: rng, stream: 1 << 40, step: (1 << 35) + 3)
        dropoutForwardReference(out: steppedRef.p, inp: inp.c, count: n, p: 0.5, rng: rng, stream: 1 << 40,
                                step: (1 << 35) + 3)
        XCTAssertEqual(stepped.array, steppedRef.array, "64-bit stream and step")
        for i in 0..<n { XCTAssertTrue(out.array[i] == 0 || abs(out.array[i] - inp.array[i] / 0.7) < 1e-6) }

        dropoutForward(out: out.p, inp: inp.c, count: n, p: 0, rng: rng, stream: 5, step: 9)
        XCTAssertEqual(out.array, inp.array)
        dropoutForward(out: out.p, inp: inp.c, count: n, p: 1, rng: rng, stream: 5, step: 9)
        XCTAssertEqual(out.array, [Float](repeating: 0, count: n))

        let big = 20_000
        let ones = Buffer([Float](repeating: 1, count: big)), dropped = Buffer(zeros: big), other = Buffer(zeros: big)
        dropoutForward(out: dropped.p, inp: ones.c, count: big, p: 0.25, rng: rng, stream: 1, step: 2)
        let kept = Double(dropped.array.filter { $0 != 0 }.count) / Double(big)
        XCTAssertEqual(kept, 0.75, accuracy: 0.015)
        dropoutForward(out: other.p, inp: ones.c, count: big, p: 0.25, rng: rng, stream: 1, step: 3)
        XCTAssertNotEqual(dropped.array, other.array, "another step must draw another mask")

        let dout = Buffer(random: n, seed: 2), d0 = GradCheck.random(count: n, seed: 3)
        let d = Buffer(d0), dRef = Buffer(d0)
        dropoutBackward(dinp: d.p, dout: dout.c, count: n, p: 0.3, rng: rng, stream: 5, step: 9)
        dropoutBackwardReference(dinp: dRef.p, dout: dout.c, count: n, p: 0.3, rng: rng, stream: 5, step: 9)
        XCTAssertEqual(d.array, dRef.array)

        for p: Float in [0, 0.3] {
            gradCheck("dropout p \(p)", x: Array(inp.array[0..<37]), outputCount: 37, forward: { x in
                let o = Buffer(zeros: 37)
                dropoutForward(out: o.p, inp: Buffer(x).c, count: 37, p: p, rng: rng, stream: 5, step: 9)
                return o.array
            }) { _, dout, dx in
                let g = Buffer(dx)
                dropoutBackward(dinp: g.p, dout: Buffer(dout).c, count: 37, p: p, rng: rng, stream: 5, step: 9)
                dx = g.array
            }
        }
    }
}
