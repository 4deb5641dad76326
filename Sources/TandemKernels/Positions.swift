#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Fixed sinusoidal position encodings (Vaswani et al. 2017, §3.5) and the op that adds them to scaled
/// token embeddings.

/// The (P, C) table of Hugging Face's `MarianSinusoidalPositionalEmbedding`: with angle(p, j) =
/// p / 10000^(2 ⌊j/2⌋ / C) for column j, the first ⌈C/2⌉ columns hold sin(angle(p, j)) for the even
/// j and the last ⌊C/2⌋ cos(angle(p, j)) for the odd j (not interleaved as in the paper's formula).
/// Computed in Double and rounded once, as HF computes it in float64 with numpy.
public func sinusoidalPositions(count P: Int, dimensions C: Int) -> [Float] {
    let sines = (C + 1) / 2
    var table = [Float](repeating: 0, count: P * C)
    for p in 0..<P {
        for j in 0..<C {
            let angle = Double(p) / pow(10000, Double(2 * (j / 2)) / Double(C))
            if j % 2 == 0 { table[p * C + j / 2] = Float(sin(angle)) } else { table[p * C + sines + j / 2] = Float(cos(angle)) }
        }
    }
    return table
}

/// out (N, C) = scale inp (N, C) + table[positions[n]] row by row (token embeddings times √C plus their
/// positions' encodings). `out` may be `inp`.
public func scaledPositionsForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, table: UnsafePointer<Float>,
                                   positions: UnsafePointer<Int32>, scale: Float, N: Int, C: Int) {
    let s = Vector(repeating: scale)
    for n in 0..<N {
        let row = table + Int(positions[n]) * C, x = inp + n * C, y = out + n * C
        for (i, lanes) in chunks(C) { store(load(x + i, lanes: lanes) * s + load(row + i, lanes: lanes), to: y + i, lanes: lanes) }
    }
}

/// dinp (N, C) += scale dout (the table is a constant).
public func scaledPositionsBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, scale: Float, count: Int) {
    let s = Vector(repeating: scale)
    for (i, lanes) in chunks(count) { accumulate(load(dout + i, lanes: lanes) * s, into: dinp + i, lanes: lanes) }
}

// MARK: - Reference

/// Naive `scaledPositionsForward`.
public func scaledPositionsForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                            table: UnsafePointer<Float>, positions: UnsafePointer<Int32>, scale: Float,
                                            N: Int, C: Int) {
    for n in 0..<N { for c in 0..<C { out[n * C + c] = scale * inp[n * C + c] + table[Int(positions[n]) * C + c] } }
}
