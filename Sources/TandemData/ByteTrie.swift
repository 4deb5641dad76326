/// An immutable trie over the UTF-8 bytes of the vocabulary, for WordPiece's "longest vocabulary entry that
/// prefixes the rest of the word" in one walk along the word (probing every candidate length through a hash
/// map costs a hash of each candidate, quadratic in the word length). Edges of a node are sorted by byte and
/// searched by bisection; storage is raw memory fixed at init, so lookups pay no bounds or exclusivity checks.
final class ByteTrie: @unchecked Sendable {
    private let edgeStart: UnsafeMutablePointer<Int32>   // (nodes + 1): node i's edges are edgeStart[i]..<edgeStart[i+1]
    private let edgeLabel: UnsafeMutablePointer<UInt8>   // (edges)
    private let edgeChild: UnsafeMutablePointer<Int32>   // (edges)
    private let value: UnsafeMutablePointer<Int32>       // (nodes): the id of the key ending at the node, or -1

    /// A trie of `pairs`; for equal keys the last value wins.
    init(_ pairs: [(key: [UInt8], value: Int32)]) {
        var children: [[(label: UInt8, child: Int32)]] = [[]]
        var values: [Int32] = [-1]
        for (key, v) in pairs {
            var node = 0
            for b in key {
                if let edge = children[node].first(where: { $0.label == b }) {
                    node = Int(edge.child)
                } else {
                    let child = Int32(values.count)
                    children.append([])
                    values.append(-1)
                    children[node].append((b, child))
                    node = Int(child)
                }
            }
            values[node] = v
        }
        let nodeCount = values.count
        let edgeCount = nodeCount - 1
        edgeStart = .allocate(capacity: nodeCount + 1)
        edgeLabel = .allocate(capacity: max(1, edgeCount))
        edgeChild = .allocate(capacity: max(1, edgeCount))
        value = .allocate(capacity: nodeCount)
        var e = 0
        for node in 0..<nodeCount {
            edgeStart[node] = Int32(e)
            value[node] = values[node]
            for edge in children[node].sorted(by: { $0.label < $1.label }) {
                edgeLabel[e] = edge.label
                edgeChild[e] = edge.child
                e += 1
            }
        }
        edgeStart[nodeCount] = Int32(e)
    }

    deinit {
        edgeStart.deallocate()
        edgeLabel.deallocate()
        edgeChild.deallocate()
        value.deallocate()
    }

    /// The longest key that is a prefix of the `n` bytes at `p`: its length in bytes and its value, or
    /// (0, -1) when none is. Keys and text being valid UTF-8, a match always ends on a scalar boundary.
    @inline(__always) func longestPrefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> (length: Int, value: Int32) {
        var node = 0
        var best: (length: Int, value: Int32) = (0, -1)
        var i = 0
        while i < n {
            let b = p[i]
            var lo = Int(edgeStart[node])
            let end = Int(edgeStart[node + 1])
            var hi = end
            while lo < hi {
                let mid = (lo + hi) >> 1
                if edgeLabel[mid] < b { lo = mid + 1 } else { hi = mid }
            }
            if lo == end || edgeLabel[lo] != b { break }
            node = Int(edgeChild[lo])
            i += 1
            let v = value[node]
            if v >= 0 { best = (i, v) }
        }
        return best
    }
}
