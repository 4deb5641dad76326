import XCTest
import TandemAutograd
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

/// Compares a model's loss and its parameters' gradients (after backward) with a PyTorch fixture holding
/// `loss` and one gradient per parameter name: the same names, the loss within 1e-5 relative, every
/// gradient within 1e-4 relative and not negligible (norm above 1e-6, so that it tests something).
/// `zeroGradientNames` are parameters whose exact gradient is zero (a bias softmax ignores): both norms
/// must be below 1e-6 instead; `others` are reference tensors that are not gradients (outputs). Returns
/// the loss's relative difference and the worst gradient.
@discardableResult
func assertParameterGradientsMatch(loss: Float, parameters: [Parameter], reference: SafeTensorsFile,
                                   zeroGradientNames: Set<String> = [], ignoring others: Set<String> = [], _ label: String,
                                   file: StaticString = #filePath, line: UInt = #line) throws
    -> (lossError: Float, worst: (name: String, error: Double)) {
    let expected = try reference.floats("loss")[0]
    let lossError = abs(loss - expected) / abs(expected)
    XCTAssertLessThanOrEqual(lossError, 1e-5, "\(label) loss \(loss) vs \(expected)", file: file, line: line)
    XCTAssertEqual(Set(reference.names).subtracting(others), Set(parameters.map(\.name) + ["loss"]), label, file: file, line: line)
    var worst = (name: "", error: 0.0)
    for p in parameters {
        let ours = Array(p.grads), theirs = try reference.floats(p.name)
        if zeroGradientNames.contains(p.name) {
            XCTAssertLessThanOrEqual(l2Norm(ours), 1e-6, "\(label) \(p.name)", file: file, line: line)
            XCTAssertLessThanOrEqual(l2Norm(theirs), 1e-6, "\(label) \(p.name)", file: file, line: line)
            continue
        }
        XCTAssertGreaterThan(l2Norm(theirs), 1e-6, "\(label) \(p.name) does not matter in the fixture", file: file, line: line)
        let error = relativeError(ours, theirs)
        XCTAssertLessThanOrEqual(error, 1e-4, "\(label) \(p.name)", file: file, line: line)
        if error > worst.error { worst = (p.name, error) }
    }
    return (lossError, worst)
}

/// Euclidean norm, in Double.
func l2Norm(_ a: [Float]) -> Double { a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
