/// Reductions over flat buffers. Sums run in 16 Float lanes within blocks of 1024 elements and in Double
/// across blocks: vector speed, and an error that does not grow with the buffer (each block's Float
/// error is relative to 1024 terms only).

let reductionBlock = 1024

/// Σ x[i] over `count` Floats (blocked: Float lanes inside 1024-element blocks, Double across them).
public func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    Float(blockedSum(count) { p, n in rowSum(x + p, n) })
}

/// The mean of `count` Floats (0 for an empty buffer), from `sum`'s blocked accumulation.
public func mean(_ x: UnsafePointer<Float>, count: Int) -> Float {
    count == 0 ? 0 : Float(blockedSum(count) { p, n in rowSum(x + p, n) } / Double(count))
}

/// Σ x[i]² over `count` Floats, blocked as `sum` and returned in Double (gradient norms add these up
/// over many buffers).
public func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
    blockedSum(count) { p, n in rowDot(x + p, x + p, n) }
}

/// x (count) *= factor, in place.
public func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
    let f = Vector(repeating: factor)
    for (i, lanes) in chunks(count) { store(load(x + i, lanes: lanes) * f, to: x + i, lanes: lanes) }
}

@inline(__always)
func blockedSum(_ count: Int, _ block: (_ start: Int, _ count: Int) -> Float) -> Double {
    var total = 0.0
    var start = 0
    while start < count {
        let n = min(reductionBlock, count - start)
        total += Double(block(start, n))
        start += n
    }
    return total
}

// MARK: - Reference

/// Naive `sum`: one Double accumulator.
public func sumReference(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var total = 0.0
    for i in 0..<count { total += Double(x[i]) }
    return Float(total)
}

/// Naive `sumOfSquares`: one Double accumulator.
public func sumOfSquaresReference(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var total = 0.0
    for i in 0..<count { total += Double(x[i]) * Double(x[i]) }
    return total
}
