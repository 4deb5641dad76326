/// Token (and position / token-type) embedding lookup.

/// out (N, C) = rows ids[n] of table (V, C). Every id must be in 0..<V: the kernel does not know V and
/// only checks ids >= 0, so callers validate ids against the vocabulary (the data loader does).
public func embeddingForward(out: UnsafeMutablePointer<Float>, ids: UnsafePointer<Int32>,
                             table: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let id = Int(ids[n])
        precondition(id >= 0, "embedding: negative id \(id) at \(n)")
        (out + n * C).update(from: table + id * C, count: C)
    }
}

/// dtable (V, C) += scatter of dout (N, C) into rows ids[n]; repeated ids add up. Ids as in
/// `embeddingForward`.
public func embeddingBackward(dtable: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                              ids: UnsafePointer<Int32>, N: Int, C: Int) {
    for n in 0..<N {
        let id = Int(ids[n])
        precondition(id >= 0, "embedding: negative id \(id) at \(n)")
        let row = dtable + id * C, d = dout + n * C
        for (i, lanes) in chunks(C) { accumulate(load(d + i, lanes: lanes), into: row + i, lanes: lanes) }
    }
}

// MARK: - Reference

/// Naive `embeddingForward`.
public func embeddingForwardReference(out: UnsafeMutablePointer<Float>, ids: UnsafePointer<Int32>,
                                      table: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N { for c in 0..<C { out[n * C + c] = table[Int(ids[n]) * C + c] } }
}

/// Naive `embeddingBackward`.
public func embeddingBackwardReference(dtable: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                                       ids: UnsafePointer<Int32>, N: Int, C: Int) {
    for n in 0..<N { for c in 0..<C { dtable[Int(ids[n]) * C + c] += dout[n * C + c] } }
}
