// Where `Tape.recordGraph` puts activation gradients: buffers whose lifetimes in backward do not overlap
// share memory, as a compiler allocates registers to variables that are never live together.

/// The layout of a graph's activation gradients, made from its dry recording (`Tape.recordGraph`).
struct GradientPlan {
    /// Per gradient buffer, in allocation order: its element count and its byte offset in the block.
    let counts: [Int]
    let offsets: [Int]
    /// The block's size: the most bytes live at any op of backward, plus what packing leaves unused.
    let bytes: Int
    /// Per buffer, the op whose backward writes it first (the highest op index listing it), nil if none does.
    let firstWriter: [Int?]
    /// Per buffer, whether that first write stores (so the buffer is never zeroed).
    let stored: [Bool]
    /// Per op, the positions in its `inputs` gradients whose write stores.
    let stores: [Set<Int>]

    /// A buffer of `count` floats in 64-byte lines, as the arenas hand them out.
    static func bytes(count: Int) -> Int { (max(1, count) * MemoryLayout<Float>.stride + 63) / 64 * 64 }

    /// Offsets for buffers of `bytes` alive over op ranges `lifetimes` (inclusive: an op that reads one
    /// buffer and writes another needs both), such that buffers alive at the same op never overlap.
    /// Greedy by size, largest first, each at the lowest offset clear of the buffers already placed that
    /// it lives with (the "greedy by size" offset planner of TensorFlow Lite's arena). Deterministic: ties
    /// go by allocation order.
    static func place(bytes: [Int], lifetimes: [ClosedRange<Int>]) -> (offsets: [Int], total: Int) {
        let order = bytes.indices.sorted { bytes[$0] != bytes[$1] ? bytes[$0] > bytes[$1] : $0 < $1 }
        var offsets = [Int](repeating: 0, count: bytes.count)
        var placed: [Int] = []
        var total = 0
        var neighbours: [(offset: Int, end: Int)] = []
        for k in order {
            neighbours.removeAll(keepingCapacity: true)
            for l in placed where lifetimes[l].overlaps(lifetimes[k]) {
                neighbours.append((offsets[l], offsets[l] + bytes[l]))
            }
            neighbours.sort { $0.offset < $1.offset }
            var offset = 0
            for c in neighbours {
                if offset + bytes[k] <= c.offset { break }
                offset = max(offset, c.end)
            }
            offsets[k] = offset
            placed.append(k)
            total = max(total, offset + bytes[k])
        }
        return (offsets, total)
    }
}
