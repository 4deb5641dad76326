import XCTest

/// Fails unless every |a - b| <= atol + rtol * |b|; reports the worst index.
public func assertClose(_ a: [Float], _ b: [Float], atol: Float = 1e-5, rtol: Float = 1e-4,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "length \(message())", file: file, line: line)
    var worst = -1
    var worstExcess: Float = 0
    for i in 0..<min(a.count, b.count) {
        let excess = abs(a[i] - b[i]) - (atol + rtol * abs(b[i]))
        if !(excess <= 0) && (worst < 0 || excess > worstExcess || excess.isNaN) { worst = i; worstExcess = excess }
    }
    if worst >= 0 {
        XCTFail("\(message()) differs at \(worst): \(a[worst]) vs \(b[worst]) (atol \(atol), rtol \(rtol))",
                file: file, line: line)
    }
}

/// Relative error ||a - b|| / max(||b||, tiny), in Double.
public func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i])
    }
    return (num.squareRoot()) / max(den.squareRoot(), 1e-30)
}

/// The largest |a[i] - b[i]|.
public func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
