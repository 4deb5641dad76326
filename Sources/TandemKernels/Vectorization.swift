/// Loads, stores and a chunked loop for the SIMD16 kernels. A row or buffer is walked 16 lanes at a
/// time; its tail (fewer than 16 elements) is processed by the same vector code on a padded vector, so
/// every element goes through the same arithmetic and no kernel needs a scalar copy of its math.

typealias Vector = SIMD16<Float>

/// The chunks of a buffer of `count` floats: (i, lanes) for i = 0, 16, 32, ... with
/// lanes = min(16, count - i). Loops are written `for (i, lanes) in chunks(count)` rather than with a
/// closure, because the optimiser kept large closure bodies out of line and called them for every chunk.
struct Chunks: Sequence, IteratorProtocol {
    let count: Int
    var i = 0

    @inline(__always)
    mutating func next() -> (i: Int, lanes: Int)? {
        guard i < count else { return nil }
        // Wrapping arithmetic: i < count rules out overflow, and it spares the loop two overflow checks.
        defer { i &+= 16 }
        return (i, Swift.min(16, count &- i))
    }
}

@inline(__always)
func chunks(_ count: Int) -> Chunks { Chunks(count: count) }

/// 16 floats from `p`, or the first `lanes` of them with the rest set to `pad`. The partial case goes
/// through a stack copy rather than lane-by-lane inserts, which the vectoriser would otherwise spread
/// over the whole loop body.
@_transparent
func load(_ p: UnsafePointer<Float>, lanes: Int, pad: Float = 0) -> Vector {
    if lanes == 16 { return UnsafeRawPointer(p).loadUnaligned(as: Vector.self) }
    var v = Vector(repeating: pad)
    withUnsafeMutableBytes(of: &v) { $0.baseAddress!.copyMemory(from: p, byteCount: lanes * 4) }
    return v
}

/// Stores the first `lanes` lanes of `v` at `p` (all 16 directly, fewer through a stack copy).
@_transparent
func store(_ v: Vector, to p: UnsafeMutablePointer<Float>, lanes: Int) {
    if lanes == 16 {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
        return
    }
    withUnsafeBytes(of: v) { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: lanes * 4) }
}

/// p[0..<lanes] += v.
@_transparent
func accumulate(_ v: Vector, into p: UnsafeMutablePointer<Float>, lanes: Int) {
    store(load(p, lanes: lanes) + v, to: p, lanes: lanes)
}

/// A backward kernel's write of a gradient: p[0..<lanes] += v when `adding`, else p[0..<lanes] = v + 0,
/// exactly what adding v into zeros writes (-0 becomes +0) whatever p held (the tape's first writer).
@_transparent
func writeGradient(_ v: Vector, into p: UnsafeMutablePointer<Float>, lanes: Int, adding: Bool) {
    if adding { accumulate(v, into: p, lanes: lanes) } else { store(v + Vector(), to: p, lanes: lanes) }
}

// The row reductions stay out of line: inlined into a larger kernel, LLVM's SLP vectoriser has split
// their 16-lane accumulators into scalar shuffles, and a call per row costs nothing by comparison.

/// The largest element of a row of `count` floats (-inf for an empty row).
@inline(never)
func rowMax(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    var m = Vector(repeating: -.infinity)
    for (i, lanes) in chunks(count) { m = FastMath.maximum(m, load(p + i, lanes: lanes, pad: -.infinity)) }
    return horizontalMax(m)
}

/// The sum of a row of `count` floats, in 16 Float lanes.
@inline(never)
func rowSum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    var s = Vector()
    for (i, lanes) in chunks(count) { s += load(p + i, lanes: lanes) }
    return horizontalSum(s)
}

/// Σ a[i] * b[i] over a row of `count` floats, in 16 Float lanes.
@inline(never)
func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    var s = Vector()
    for (i, lanes) in chunks(count) { s = s.addingProduct(load(a + i, lanes: lanes), load(b + i, lanes: lanes)) }
    return horizontalSum(s)
}

/// The sum of the 16 lanes, by halving: four adds on ever shorter vectors, which matters on short rows
/// such as attention's.
@inline(__always)
func horizontalSum(_ v: Vector) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

/// The largest of the 16 lanes, by halving.
@inline(__always)
func horizontalMax(_ v: Vector) -> Float {
    let a = v.lowHalf.replacing(with: v.highHalf, where: v.highHalf .> v.lowHalf)
    let b = a.lowHalf.replacing(with: a.highHalf, where: a.highHalf .> a.lowHalf)
    let c = b.lowHalf.replacing(with: b.highHalf, where: b.highHalf .> b.lowHalf)
    return max(c[0], c[1])
}

/// Column sums of a (N, C) row-major matrix added into `out` (C): out[c] += Σ_n m[n, c].
func accumulateColumnSums(_ out: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let row = m + n * C
        for (i, lanes) in chunks(C) { accumulate(load(row + i, lanes: lanes), into: out + i, lanes: lanes) }
    }
}
