import Foundation
import XCTest
import TandemKernels

/// Checks the error bounds stated in FastMath's doc comments against Double libm over dense sweeps
/// (2^20 evenly spaced points per range, 2^16 for the small ranges near 0) and the special values.
final class FastMathTests: KernelTestCase {
    /// (max relative error, max absolute error) of `f` against `reference` over `points` points in [lo, hi].
    private func sweep(_ lo: Float, _ hi: Float, points: Int = 1 << 20,
                       _ f: (SIMD16<Float>) -> SIMD16<Float>, _ reference: (Double) -> Double) -> (Double, Double) {
        var maxRel = 0.0, maxAbs = 0.0
        let step = (Double(hi) - Double(lo)) / Double(points - 1)
        var i = 0
        while i < points {
            var v = SIMD16<Float>()
            for l in 0..<16 { v[l] = Float(Double(lo) + Double(min(i + l, points - 1)) * step) }
            let y = f(v)
            for l in 0..<16 {
                let exact = reference(Double(v[l]))
                let err = abs(Double(y[l]) - exact)
                maxAbs = max(maxAbs, err)
                if exact != 0 { maxRel = max(maxRel, err / abs(exact)) }
            }
            i += 16
        }
        return (maxRel, maxAbs)
    }

    private func special(_ values: [Float], _ f: (SIMD16<Float>) -> SIMD16<Float>) -> [Float] {
        var v = SIMD16<Float>()
        for (l, x) in values.enumerated() { v[l] = x }
        let y = f(v)
        return (0..<values.count).map { y[$0] }
    }

    func testExp() {
        let (rel, _) = sweep(-86.98, 88.72, FastMath.exp, Foundation.exp)
        XCTAssertLessThan(rel, 2.0e-7)
        XCTAssertLessThan(sweep(-1, 1, points: 1 << 16, FastMath.exp, Foundation.exp).0, 2.0e-7)
        let y = special([0, -0.0, 1, -87.5, -100, 88.73, 1000, .infinity, -.infinity, .nan], FastMath.exp)
        XCTAssertEqual(y[0], 1)
        XCTAssertEqual(y[1], 1)
        XCTAssertEqual(y[2], Float(M_E), accuracy: 3e-7)
        XCTAssertEqual(y[3], 0)
        XCTAssertEqual(y[4], 0)
        XCTAssertEqual(y[5], .infinity)
        XCTAssertEqual(y[6], .infinity)
        XCTAssertEqual(y[7], .infinity)
        XCTAssertEqual(y[8], 0)
        XCTAssertTrue(y[9].isNaN)
    }

    func testTanh() {
        XCTAssertLessThan(sweep(-12, 12, FastMath.tanh, Foundation.tanh).0, 4.5e-7)
        XCTAssertLessThan(sweep(-1e-3, 1e-3, points: 1 << 16, FastMath.tanh, Foundation.tanh).0, 4.5e-7)
        let y = special([0, -0.0, 1e-30, 10, -10, 100, .infinity, -.infinity, .nan], FastMath.tanh)
        XCTAssertEqual(y[0], 0)
        XCTAssertEqual(y[1].sign, .minus)
        XCTAssertEqual(y[2], 1e-30, accuracy: 1e-37)
        XCTAssertEqual(y[3], 1)
        XCTAssertEqual(y[4], -1)
        XCTAssertEqual(y[5], 1)
        XCTAssertEqual(y[6], 1)
        XCTAssertEqual(y[7], -1)
        XCTAssertTrue(y[8].isNaN)
    }

    func testErf() {
        let (rel, abs) = sweep(-6, 6, FastMath.erf, Foundation.erf)
        XCTAssertLessThan(rel, 4.5e-7)
        XCTAssertLessThan(abs, 4.5e-7)
        XCTAssertLessThan(sweep(-1e-3, 1e-3, points: 1 << 16, FastMath.erf, Foundation.erf).0, 4.5e-7)
        let y = special([0, 1e-30, 4, -4, 50, .infinity, -.infinity, .nan], FastMath.erf)
        XCTAssertEqual(y[0], 0)
        XCTAssertEqual(y[1], Float(1e-30 * 2 / Double.pi.squareRoot()), accuracy: 1e-36)
        XCTAssertEqual(y[2], 1)
        XCTAssertEqual(y[3], -1)
        XCTAssertEqual(y[4], 1)
        XCTAssertEqual(y[5], 1)
        XCTAssertEqual(y[6], -1)
        XCTAssertTrue(y[7].isNaN)
    }
}
