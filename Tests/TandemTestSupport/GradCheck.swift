import XCTest
import TandemTensor

/// Finite-difference gradient checking for forward/backward kernel pairs.
///
/// The scalar loss is L(x) = Σ_i out(x)_i R_i with a fixed pseudo-random R (so every output element
/// counts, each with its own weight), summed in Double. `backward` gets dout = R and must return
/// dL/dx by accumulating into the gradient buffer it is given. The analytic gradient g is compared with
/// central differences (L(x + h e_j) - L(x - h e_j)) / 2h, one coordinate at a time.
///
/// Tolerances, for Float kernels with the default step h = 1e-2 (truncation error O(h²) ~ 1e-5 relative,
/// Float rounding of L ~ 1e-7 |L| / h):
/// - the relative L2 error ‖g - numeric‖ / ‖numeric‖ must be below `tolerance` (default 1e-2);
/// - every element must satisfy |g_j - numeric_j| <= atol + elementTolerance |numeric_j|
///   (defaults 2e-3 and 2e-2).
///
/// It also checks that backward ACCUMULATES: on a buffer prefilled with G, two calls must leave
/// G + 2g (to 1e-5 relative), which is what fan-out in the autograd tape relies on.
public func gradCheck(_ name: String, x: [Float], outputCount: Int, step: Float = 1e-2,
                      tolerance: Double = 1e-2, atol: Float = 2e-3, elementTolerance: Float = 2e-2,
                      seed: UInt64 = 7,
                      forward: (_ x: [Float]) -> [Float],
                      backward: (_ x: [Float], _ dout: [Float], _ dx: inout [Float]) -> Void,
                      file: StaticString = #filePath, line: UInt = #line) {
    let r = GradCheck.random(count: outputCount, seed: seed)
    func loss(_ input: [Float]) -> Double {
        let out = forward(input)
        precondition(out.count == outputCount, "\(name): forward returned \(out.count) values, expected \(outputCount)")
        var total = 0.0
        for i in 0..<outputCount { total += Double(out[i]) * Double(r[i]) }
        return total
    }

    var analytic = [Float](repeating: 0, count: x.count)
    backward(x, r, &analytic)

    var numeric = [Float](repeating: 0, count: x.count)
    var probe = x
    for j in 0..<x.count {
        probe[j] = x[j] + step
        let plus = loss(probe)
        probe[j] = x[j] - step
        let minus = loss(probe)
        probe[j] = x[j]
        // The step actually taken in Float, not the nominal one.
        let h = Double(x[j] + step) - Double(x[j] - step)
        numeric[j] = Float((plus - minus) / h)
    }

    let error = relativeError(analytic, numeric)
    XCTAssertLessThan(error, tolerance, "\(name): relative gradient error \(error)", file: file, line: line)
    assertClose(analytic, numeric, atol: atol, rtol: elementTolerance, "\(name): analytic vs numeric gradient",
                 file: file, line: line)

    let prefill = GradCheck.random(count: x.count, seed: seed &+ 1)
    var accumulated = prefill
    backward(x, r, &accumulated)
    backward(x, r, &accumulated)
    let expected = (0..<x.count).map { prefill[$0] + 2 * analytic[$0] }
    assertClose(accumulated, expected, atol: 1e-5, rtol: 1e-5, "\(name): backward does not accumulate",
                file: file, line: line)
}

/// Deterministic test data.
public enum GradCheck {
    /// `count` standard normal Floats times `scale`, a pure function of `seed` (Philox, stream 0).
    public static func random(count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        let rng = Philox(seed: seed)
        return (0..<count).map { scale * rng.normal(stream: 0, step: 0, index: UInt64($0)) }
    }
}
