/// Loads, stores and a chunked loop for the SIMD16 kernels. A row or buffer is walked 16 lanes at a
/// time; its tail (fewer than 16 elements) is processed by the same vector code on a padded vector, so
/// every element goes through the same arithmetic and no kernel needs a scalar copy of its math.

typealias Vector = SIMD16<Float>

/// Calls `body(i, lanes)` for i = 0, 16, 32, ... with lanes = 16, then once for the tail if any.
@inline(__always)
func forEachChunk(_ count: Int, _ body: (_ i: Int, _ lanes: Int) -> Void) {
    var i = 0
    while i + 16 <= count {
        body(i, 16)
        i += 16
    }
    if i < count { body(i, count - i) }
}

/// 16 floats from `p`, or the first `lanes` of them with the rest set to `pad`.
@inline(__always)
func load(_ p: UnsafePointer<Float>, lanes: Int, pad: Float = 0) -> Vector {
    if lanes == 16 { return UnsafeRawPointer(p).loadUnaligned(as: Vector.self) }
    var v = Vector(repeating: pad)
    for l in 0..<lanes { v[l] = p[l] }
    return v
}

/// Stores the first `lanes` lanes of `v` at `p`.
@inline(__always)
func store(_ v: Vector, to p: UnsafeMutablePointer<Float>, lanes: Int) {
    if lanes == 16 {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
        return
    }
    for l in 0..<lanes { p[l] = v[l] }
}

/// p[0..<lanes] += v.
@inline(__always)
func accumulate(_ v: Vector, into p: UnsafeMutablePointer<Float>, lanes: Int) {
    store(load(p, lanes: lanes) + v, to: p, lanes: lanes)
}

/// The largest element of a row of `count` floats (-inf for an empty row).
@inline(__always)
func rowMax(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    var m = Vector(repeating: -.infinity)
    forEachChunk(count) { i, lanes in m = FastMath.maximum(m, load(p + i, lanes: lanes, pad: -.infinity)) }
    return m.max()
}

/// The sum of a row of `count` floats, in 16 Float lanes.
@inline(__always)
func rowSum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    var s = Vector()
    forEachChunk(count) { i, lanes in s += load(p + i, lanes: lanes) }
    return s.sum()
}

/// Σ a[i] * b[i] over a row of `count` floats, in 16 Float lanes.
@inline(__always)
func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    var s = Vector()
    forEachChunk(count) { i, lanes in s = s.addingProduct(load(a + i, lanes: lanes), load(b + i, lanes: lanes)) }
    return s.sum()
}

/// Column sums of a (N, C) row-major matrix added into `out` (C): out[c] += Σ_n m[n, c].
func accumulateColumnSums(_ out: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let row = m + n * C
        forEachChunk(C) { i, lanes in accumulate(load(row + i, lanes: lanes), into: out + i, lanes: lanes) }
    }
}
