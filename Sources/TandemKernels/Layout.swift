/// Copies that rearrange activations between the shapes ops expect, and their gradients (which
/// accumulate): columns side by side, the first two axes swapped, adjacent blocks summed, and images
/// from channels-first to channels-last.

// MARK: - Columns side by side

/// out (N, Σ C_i) = [x_1 | x_2 | ...] row by row, with inputs[i] (N, C_i) of `columns[i]` columns.
public func concatenateColumnsForward(out: UnsafeMutablePointer<Float>, inputs: [UnsafePointer<Float>], columns: [Int], N: Int) {
    let width = columns.reduce(0, +)
    for n in 0..<N {
        var at = out + n * width
        for (x, C) in zip(inputs, columns) {
            at.update(from: x + n * C, count: C)
            at += C
        }
    }
}

/// dinputs[i] (N, C_i) += its columns of dout (N, Σ C_i); a nil gradient is skipped.
public func concatenateColumnsBackward(dinputs: [UnsafeMutablePointer<Float>?], dout: UnsafePointer<Float>, columns: [Int], N: Int) {
    let width = columns.reduce(0, +)
    for n in 0..<N {
        var at = dout + n * width
        for (dx, C) in zip(dinputs, columns) {
            if let dx { residualBackward(da: dx + n * C, db: nil, dout: at, count: C) }
            at += C
        }
    }
}

// MARK: - Swapping the first two axes

/// out (B, A, C) = inp (A, B, C) with the first two axes swapped (a time-major stack of steps to
/// batch-major sequences, or back).
public func swapLeadingAxesForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, A: Int, B: Int, C: Int) {
    for a in 0..<A {
        for b in 0..<B { (out + (b * A + a) * C).update(from: inp + (a * B + b) * C, count: C) }
    }
}

/// dinp (A, B, C) += dout (B, A, C) with the axes swapped back.
public func swapLeadingAxesBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, A: Int, B: Int, C: Int) {
    for a in 0..<A {
        for b in 0..<B { residualBackward(da: dinp + (a * B + b) * C, db: nil, dout: dout + (b * A + a) * C, count: C) }
    }
}

// MARK: - Summing adjacent blocks

/// out (N, C) = Σ_k inp[n, k] over inp (N, K, C): the two directions of a bidirectional recurrent
/// layer's outputs (B T, 2, H) or final states (L, 2, B H) added.
public func sumBlocksForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int, K: Int, C: Int) {
    for n in 0..<N {
        let o = out + n * C
        o.update(from: inp + n * K * C, count: C)
        for k in 1..<max(K, 1) { residualForward(out: o, a: o, b: inp + (n * K + k) * C, count: C) }
    }
}

/// dinp[n, k] (N, K, C) += dout[n] (N, C) for every k.
public func sumBlocksBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, N: Int, K: Int, C: Int) {
    for n in 0..<N {
        for k in 0..<K { residualBackward(da: dinp + (n * K + k) * C, db: nil, dout: dout + n * C, count: C) }
    }
}

// MARK: - Channels last

/// out (B, HW, C) = inp (B, C, HW) with the last two axes swapped: images as pixel_values arrive,
/// (B, C, H, W), to the channels-last pixels (B, H, W, C) that `conv2dForward` reads. Element by
/// element: for RGB images (C 3) a row of the output is 3 floats, too short for row copies to gain.
public func channelsLastForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, B: Int, C: Int, HW: Int) {
    for b in 0..<B {
        let x = inp + b * C * HW, y = out + b * HW * C
        for c in 0..<C {
            for s in 0..<HW { y[s * C + c] = x[c * HW + s] }
        }
    }
}

/// dinp (B, C, HW) += dout (B, HW, C) with the axes swapped back.
public func channelsLastBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, B: Int, C: Int, HW: Int) {
    for b in 0..<B {
        let dx = dinp + b * C * HW, dy = dout + b * HW * C
        for c in 0..<C {
            for s in 0..<HW { dx[c * HW + s] += dy[s * C + c] }
        }
    }
}

// MARK: - Reference

/// Naive `concatenateColumnsForward`, element by element.
public func concatenateColumnsForwardReference(out: UnsafeMutablePointer<Float>, inputs: [UnsafePointer<Float>], columns: [Int], N: Int) {
    let width = columns.reduce(0, +)
    for n in 0..<N {
        var j = 0
        for (x, C) in zip(inputs, columns) {
            for c in 0..<C { out[n * width + j] = x[n * C + c]; j += 1 }
        }
    }
}

/// Naive `swapLeadingAxesForward`, element by element.
public func swapLeadingAxesForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, A: Int, B: Int, C: Int) {
    for a in 0..<A { for b in 0..<B { for c in 0..<C { out[(b * A + a) * C + c] = inp[(a * B + b) * C + c] } } }
}

/// Naive `sumBlocksForward` in Double.
public func sumBlocksForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int, K: Int, C: Int) {
    for n in 0..<N {
        for c in 0..<C { out[n * C + c] = Float((0..<K).reduce(0.0) { $0 + Double(inp[(n * K + $1) * C + c]) }) }
    }
}
