import XCTest
import TandemKernels
import TandemTestSupport

/// The distillation losses (soft-target KL at a temperature, cosine loss) against their naive references
/// and finite differences, with a padding row that must count for nothing.
final class DistillationTests: KernelTestCase {
    let N = 4, V = 7, C = 5
    let mask: [Float] = [1, 1, 0, 1]

    func testSoftKLMatchesReference() {
        let s = Buffer(random: N * V, seed: 1, scale: 3), t = Buffer(random: N * V, seed: 2, scale: 3), m = Buffer(mask)
        let q = Buffer(zeros: N * V), p = Buffer(zeros: N * V), qRef = Buffer(zeros: N * V), pRef = Buffer(zeros: N * V)
        let loss = softKLForward(studentProbs: q.p, teacherProbs: p.p, student: s.c, teacher: t.c, rowMask: m.c, N: N, V: V, temperature: 2)
        let lossRef = softKLForwardReference(studentProbs: qRef.p, teacherProbs: pRef.p, student: s.c, teacher: t.c, rowMask: m.c,
                                             N: N, V: V, temperature: 2)
        XCTAssertEqual(loss, lossRef, accuracy: 1e-5 * abs(lossRef))
        assertClose(q.array, qRef.array, atol: 1e-7, rtol: 1e-5, "student probs")
        assertClose(p.array, pRef.array, atol: 1e-7, rtol: 1e-5, "teacher probs")

        let d0 = GradCheck.random(count: N * V, seed: 3)
        let d = Buffer(d0), dRef = Buffer(d0)
        softKLBackward(dstudent: d.p, studentProbs: q.c, teacherProbs: p.c, rowMask: m.c, N: N, V: V, temperature: 2, dloss: 0.7)
        softKLBackwardReference(dstudent: dRef.p, studentProbs: q.c, teacherProbs: p.c, rowMask: m.c, N: N, V: V, temperature: 2, dloss: 0.7)
        assertClose(d.array, dRef.array, atol: 1e-6, rtol: 1e-5, "dstudent")
        XCTAssertEqual(Array(d.array[2 * V..<3 * V]), Array(d0[2 * V..<3 * V]), "the padding row gets no gradient")
    }

    func testSoftKLIsZeroForEqualLogitsAndWithNoRows() {
        let s = Buffer(random: N * V, seed: 4, scale: 3)
        let equal = softKLForward(studentProbs: Buffer(zeros: N * V).p, teacherProbs: Buffer(zeros: N * V).p, student: s.c, teacher: s.c,
                                  rowMask: Buffer(mask).c, N: N, V: V, temperature: 3)
        XCTAssertEqual(equal, 0, accuracy: 1e-5)
        let none = softKLForward(studentProbs: Buffer(zeros: N * V).p, teacherProbs: Buffer(zeros: N * V).p, student: s.c,
                                 teacher: Buffer(random: N * V, seed: 5).c, rowMask: Buffer(zeros: N).c, N: N, V: V, temperature: 2)
        XCTAssertEqual(none, 0)
    }

    func testSoftKLGradients() {
        let t = Buffer(random: N * V, seed: 6, scale: 3), m = Buffer(mask)
        for temperature: Float in [1, 2.5] {
            gradCheck("softKL τ=\(temperature)", x: GradCheck.random(count: N * V, seed: 7, scale: 3), outputCount: 1, forward: { x in
                [softKLForward(studentProbs: Buffer(zeros: self.N * self.V).p, teacherProbs: Buffer(zeros: self.N * self.V).p,
                               student: Buffer(x).c, teacher: t.c, rowMask: m.c, N: self.N, V: self.V, temperature: temperature)]
            }) { x, dout, dx in
                let q = Buffer(zeros: self.N * self.V), p = Buffer(zeros: self.N * self.V), g = Buffer(dx)
                _ = softKLForward(studentProbs: q.p, teacherProbs: p.p, student: Buffer(x).c, teacher: t.c, rowMask: m.c,
                                  N: self.N, V: self.V, temperature: temperature)
                softKLBackward(dstudent: g.p, studentProbs: q.c, teacherProbs: p.c, rowMask: m.c, N: self.N, V: self.V,
                               temperature: temperature, dloss: dout[0])
                dx = g.array
            }
        }
    }

    func testCosineLossMatchesReference() {
        let s = Buffer(random: N * C, seed: 8, scale: 2), t = Buffer(random: N * C, seed: 9, scale: 2), m = Buffer(mask)
        let loss = cosineLossForward(student: s.c, teacher: t.c, rowMask: m.c, N: N, C: C)
        let lossRef = cosineLossForwardReference(student: s.c, teacher: t.c, rowMask: m.c, N: N, C: C)
        XCTAssertEqual(loss, lossRef, accuracy: 1e-6 * max(abs(lossRef), 1))
        let d0 = GradCheck.random(count: N * C, seed: 10)
        let d = Buffer(d0), dRef = Buffer(d0)
        cosineLossBackward(dstudent: d.p, student: s.c, teacher: t.c, rowMask: m.c, N: N, C: C, dloss: 1.3)
        cosineLossBackwardReference(dstudent: dRef.p, student: s.c, teacher: t.c, rowMask: m.c, N: N, C: C, dloss: 1.3)
        assertClose(d.array, dRef.array, atol: 1e-6, rtol: 1e-5, "dstudent")
        XCTAssertEqual(Array(d.array[2 * C..<3 * C]), Array(d0[2 * C..<3 * C]), "the padding row gets no gradient")
        // Parallel rows give 0 whatever their lengths.
        let scaled = Buffer(s.array.map { 3 * $0 })
        XCTAssertEqual(cosineLossForward(student: s.c, teacher: scaled.c, rowMask: m.c, N: N, C: C), 0, accuracy: 1e-6)
    }

    func testCosineLossGradients() {
        let t = Buffer(random: N * C, seed: 11, scale: 2), m = Buffer(mask)
        gradCheck("cosineLoss", x: GradCheck.random(count: N * C, seed: 12, scale: 2), outputCount: 1, forward: { x in
            [cosineLossForward(student: Buffer(x).c, teacher: t.c, rowMask: m.c, N: self.N, C: self.C)]
        }) { x, dout, dx in
            let g = Buffer(dx)
            cosineLossBackward(dstudent: g.p, student: Buffer(x).c, teacher: t.c, rowMask: m.c, N: self.N, C: self.C, dloss: dout[0])
            dx = g.array
        }
    }
}
