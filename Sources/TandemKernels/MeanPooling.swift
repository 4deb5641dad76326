/// Mean pooling over a sequence's tokens (BEiT's `BeitPooler` with `use_mean_pooling`: the mean of the
/// patch tokens, [CLS] excluded).

/// out (B, C) = the mean of rows first..<T of each sequence of inp (B, T, C), summed in Float in row order.
public func meanRowsForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, first: Int, B: Int, T: Int, C: Int) {
    precondition(first >= 0 && first < T, "mean rows: rows \(first)..<\(T)")
    let scale = Vector(repeating: 1 / Float(T - first))
    for b in 0..<B {
        for (i, lanes) in chunks(C) {
            var s = Vector()
            for t in first..<T { s += load(inp + (b * T + t) * C + i, lanes: lanes) }
            store(s * scale, to: out + b * C + i, lanes: lanes)
        }
    }
}

/// dinp (B, T, C) += dout[b] / (T - first) at rows first..<T of each sequence; the rows before get nothing.
public func meanRowsBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, first: Int, B: Int, T: Int, C: Int) {
    let scale = Vector(repeating: 1 / Float(T - first))
    for b in 0..<B {
        for (i, lanes) in chunks(C) {
            let g = load(dout + b * C + i, lanes: lanes) * scale
            for t in first..<T { accumulate(g, into: dinp + (b * T + t) * C + i, lanes: lanes) }
        }
    }
}

// MARK: - Reference

/// Naive `meanRowsForward`, in Double.
public func meanRowsForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, first: Int, B: Int,
                                     T: Int, C: Int) {
    for b in 0..<B {
        for c in 0..<C {
            var acc = 0.0
            for t in first..<T { acc += Double(inp[(b * T + t) * C + c]) }
            out[b * C + c] = Float(acc / Double(T - first))
        }
    }
}
