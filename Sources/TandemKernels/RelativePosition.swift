/// BEiT's relative position bias (Bao et al. 2022, §2.2; transformers' `BeitRelativePositionBias`): a
/// learned table of NH biases per relative offset between two patches of a Wh x Ww grid, plus three
/// entries for [CLS] to a patch, a patch to [CLS] and [CLS] to itself, looked up into an (NH, T, T) bias
/// on the attention scores, T = Wh Ww + 1 tokens with [CLS] first.

/// The (T, T) index into the table of R = (2Wh - 1)(2Ww - 1) + 3 rows, row-major, as transformers'
/// `generate_relative_position_index`: for patches p = (y, x) and q = (y', x') (1 + row-major position in
/// the grid), (y - y' + Wh - 1)(2Ww - 1) + (x - x' + Ww - 1); row 0 ([CLS] to every token) R - 3, column
/// 0 (every token to [CLS]) R - 2, and R - 1 at (0, 0).
public func relativePositionIndex(height Wh: Int, width Ww: Int) -> [Int32] {
    precondition(Wh >= 1 && Ww >= 1, "relative position index: grid \(Wh) x \(Ww)")
    let A = Wh * Ww, T = A + 1, R = (2 * Wh - 1) * (2 * Ww - 1) + 3
    var index = [Int32](repeating: 0, count: T * T)
    for p in 0..<A {
        for q in 0..<A {
            let dy = p / Ww - q / Ww + Wh - 1, dx = p % Ww - q % Ww + Ww - 1
            index[(1 + p) * T + 1 + q] = Int32(dy * (2 * Ww - 1) + dx)
        }
    }
    for t in 0..<T {
        index[t] = Int32(R - 3)
        index[t * T] = Int32(R - 2)
    }
    index[0] = Int32(R - 1)
    return index
}

/// out (NH, Tq, T) = table (R, NH) gathered by the first Tq rows of `index` (T, T): out[h, i, j] =
/// table[index[i T + j], h]. Every index must be in 0..<R (`relativePositionIndex` makes them so).
public func relativePositionBiasForward(out: UnsafeMutablePointer<Float>, table: UnsafePointer<Float>,
                                        index: UnsafePointer<Int32>, NH: Int, queries Tq: Int, T: Int) {
    for i in 0..<Tq {
        for j in 0..<T {
            let row = table + Int(index[i * T + j]) * NH
            for h in 0..<NH { out[(h * Tq + i) * T + j] = row[h] }
        }
    }
}

/// dtable (R, NH) += the scatter of dout (NH, Tq, T) back along `index`: entries sharing an offset add up.
public func relativePositionBiasBackward(dtable: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                                         index: UnsafePointer<Int32>, NH: Int, queries Tq: Int, T: Int) {
    for i in 0..<Tq {
        for j in 0..<T {
            let row = dtable + Int(index[i * T + j]) * NH
            for h in 0..<NH { row[h] += dout[(h * Tq + i) * T + j] }
        }
    }
}

// MARK: - Reference

/// Naive `relativePositionIndex`, transcribing transformers' tensor code: coordinate differences shifted
/// to start at 0, the row offset scaled by 2Ww - 1, then the [CLS] row, column and corner.
public func relativePositionIndexReference(height Wh: Int, width Ww: Int) -> [Int32] {
    let coords = (0..<Wh).flatMap { y in (0..<Ww).map { x in (y, x) } }
    let A = coords.count, T = A + 1, R = (2 * Wh - 1) * (2 * Ww - 1) + 3
    var index = [[Int]](repeating: [Int](repeating: 0, count: T), count: T)
    for p in 0..<A {
        for q in 0..<A {
            var dy = coords[p].0 - coords[q].0, dx = coords[p].1 - coords[q].1
            dy += Wh - 1; dx += Ww - 1; dy *= 2 * Ww - 1
            index[p + 1][q + 1] = dy + dx
        }
    }
    for j in 0..<T { index[0][j] = R - 3 }
    for i in 0..<T { index[i][0] = R - 2 }
    index[0][0] = R - 1
    return index.flatMap { $0.map { Int32($0) } }
}

/// Naive `relativePositionBiasBackward`: every table entry summed in Double over the scores it feeds.
public func relativePositionBiasBackwardReference(dtable: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                                                  index: UnsafePointer<Int32>, rows R: Int, NH: Int, queries Tq: Int,
                                                  T: Int) {
    for r in 0..<R {
        for h in 0..<NH {
            var acc = 0.0
            for i in 0..<Tq { for j in 0..<T where Int(index[i * T + j]) == r { acc += Double(dout[(h * Tq + i) * T + j]) } }
            dtable[r * NH + h] += Float(acc)
        }
    }
}
