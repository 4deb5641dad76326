import Foundation

/// An open-addressing hash map from byte strings to token ids, looked up by pointer and length so that
/// WordPiece can probe every candidate prefix of a word without building a `String` for it.
final class ByteSliceTable: @unchecked Sendable {
    private var slots: [Int32]          // entry index, or -1 when empty; count is a power of two
    private var keyBytes: [UInt8] = []  // all keys, concatenated
    private var keyStart: [Int32] = []
    private var keyLength: [Int32] = []
    private var values: [Int32] = []
    private var hashes: [UInt64] = []
    /// The length in bytes of the longest key: no candidate longer than it needs a probe.
    private(set) var maxKeyLength = 0

    init(expectedCount: Int) {
        var capacity = 16
        while capacity < expectedCount * 2 { capacity *= 2 }
        slots = [Int32](repeating: -1, count: capacity)
    }

    /// FNV-1a over the bytes.
    @inline(__always) static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<n { h = (h ^ UInt64(p[i])) &* 0x0000_0100_0000_01b3 }
        return h ^ (h >> 29)
    }

    /// Inserts `key` with `value`, replacing the value of an equal key (as a later line of vocab.txt does in HF).
    func insert(_ key: [UInt8], value: Int32) {
        let (slot, existing) = key.withUnsafeBufferPointer { find($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        if let existing { values[existing] = value; return }
        let h = key.withUnsafeBufferPointer { ByteSliceTable.hash($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        slots[slot] = Int32(values.count)
        keyStart.append(Int32(keyBytes.count))
        keyLength.append(Int32(key.count))
        keyBytes += key
        values.append(value)
        hashes.append(h)
        maxKeyLength = max(maxKeyLength, key.count)
        if values.count * 2 > slots.count { grow() }
    }

    private func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        let mask = UInt64(slots.count - 1)
        for e in 0..<values.count {
            var s = Int(hashes[e] & mask)
            while slots[s] >= 0 { s = (s + 1) & Int(mask) }
            slots[s] = Int32(e)
        }
    }

    /// The slot where `key` is or would go, and the entry index when it is present.
    private func find(_ p: UnsafePointer<UInt8>, _ n: Int) -> (slot: Int, entry: Int?) {
        let h = ByteSliceTable.hash(p, n)
        let mask = slots.count - 1
        var s = Int(h & UInt64(mask))
        while true {
            let e = Int(slots[s])
            if e < 0 { return (s, nil) }
            if hashes[e] == h && Int(keyLength[e]) == n {
                let start = Int(keyStart[e])
                let equal = n == 0 || keyBytes.withUnsafeBufferPointer { memcmp($0.baseAddress! + start, p, n) == 0 }
                if equal { return (s, e) }
            }
            s = (s + 1) & mask
        }
    }

    /// The value of the `n` bytes at `p`, or nil.
    @inline(__always) func lookup(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32? {
        if let e = find(p, n).entry { return values[e] }
        return nil
    }
}
