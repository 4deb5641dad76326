import Foundation

/// An immutable open-addressing hash map from byte strings to token ids, looked up by pointer and length
/// so that WordPiece can probe every candidate prefix of a word without building a `String` for it.
/// Storage is raw memory fixed at init: lookups pay neither bounds nor exclusivity checks.
final class ByteSliceTable: @unchecked Sendable {
    private struct Entry {
        var hash: UInt64
        var start: Int      // offset of the key in `keyBytes`
        var length: Int
        var value: Int32
    }

    private let slots: UnsafeMutablePointer<Int32>      // entry index, or -1 when empty
    private let mask: Int                                // slot count - 1; the slot count is a power of two
    private let entries: UnsafeMutablePointer<Entry>
    private let keyBytes: UnsafeMutablePointer<UInt8>
    /// The length in bytes of the longest key: no candidate longer than it needs a probe.
    let maxKeyLength: Int

    /// A table of `pairs`, whose keys must be distinct.
    init(_ pairs: [(key: [UInt8], value: Int32)]) {
        var capacity = 16
        while capacity < pairs.count * 2 { capacity *= 2 }
        mask = capacity - 1
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: -1, count: capacity)
        entries = .allocate(capacity: max(1, pairs.count))
        let totalBytes = pairs.reduce(0) { $0 + $1.key.count }
        keyBytes = .allocate(capacity: max(1, totalBytes))
        var offset = 0
        var longest = 0
        let empty: [UInt8] = [0]
        for (e, pair) in pairs.enumerated() {
            let h = (pair.key.isEmpty ? empty : pair.key).withUnsafeBufferPointer { ByteSliceTable.hash($0.baseAddress!, pair.key.count) }
            (entries + e).initialize(to: Entry(hash: h, start: offset, length: pair.key.count, value: pair.value))
            for b in pair.key { keyBytes[offset] = b; offset += 1 }
            longest = max(longest, pair.key.count)
            var s = Int(truncatingIfNeeded: h) & mask
            while slots[s] >= 0 { s = (s + 1) & mask }
            slots[s] = Int32(e)
        }
        maxKeyLength = longest
    }

    deinit {
        slots.deallocate()
        entries.deallocate()
        keyBytes.deallocate()
    }

    /// FNV-1a over the bytes, with the high bits folded into the low ones used for the slot.
    @inline(__always) static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<n { h = (h ^ UInt64(p[i])) &* 0x0000_0100_0000_01b3 }
        return h ^ (h >> 29)
    }

    /// The value of the `n` bytes at `p`, or nil.
    @inline(__always) func lookup(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32? {
        let h = ByteSliceTable.hash(p, n)
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let e = Int(slots[s])
            if e < 0 { return nil }
            let entry = entries[e]
            if entry.hash == h && entry.length == n && memcmp(keyBytes + entry.start, p, n) == 0 { return entry.value }
            s = (s + 1) & mask
        }
    }
}
