import XCTest
import TandemCheckpoint
import TandemTestSupport

/// Compares a `tandem debug grads` file with the one transformers wrote: the same tensor names and
/// shapes, the loss within 1e-5 relative, every gradient within 1e-4 relative (norm of the difference
/// over the norm of the reference). Tensors named with `zeroGradientSuffix` are the attention key bias,
/// whose exact gradient is zero (softmax over keys ignores q·b_k, the same for every key): both sides
/// hold only rounding noise there, so both norms must be below 1e-6 instead. Returns the loss's
/// relative difference and the worst gradient.
@discardableResult
func assertGradientsMatch(_ ours: SafeTensorsFile, _ reference: SafeTensorsFile, zeroGradientSuffix: String,
                          file: StaticString = #filePath, line: UInt = #line) throws
    -> (lossError: Float, worst: (name: String, error: Double)) {
    XCTAssertEqual(Set(ours.names), Set(reference.names), file: file, line: line)
    let loss = try ours.floats("loss")[0], expected = try reference.floats("loss")[0]
    let lossError = abs(loss - expected) / abs(expected)
    XCTAssertLessThanOrEqual(lossError, 1e-5, "loss \(loss) vs \(expected)", file: file, line: line)
    var worst = (name: "", error: 0.0)
    for name in reference.names where name != "loss" {
        XCTAssertEqual(try ours.info(name).shape, try reference.info(name).shape, name, file: file, line: line)
        if name.hasSuffix(zeroGradientSuffix) {
            XCTAssertLessThanOrEqual(l2Norm(try ours.floats(name)), 1e-6, name, file: file, line: line)
            XCTAssertLessThanOrEqual(l2Norm(try reference.floats(name)), 1e-6, name, file: file, line: line)
            continue
        }
        let error = relativeError(try ours.floats(name), try reference.floats(name))
        XCTAssertLessThanOrEqual(error, 1e-4, name, file: file, line: line)
        if error > worst.error { worst = (name, error) }
    }
    return (lossError, worst)
}

/// Euclidean norm, in Double.
func l2Norm(_ a: [Float]) -> Double { a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
