/// Streaming SHA-256 (FIPS 180-4, "Secure Hash Standard", section 6.2).
///
/// `update` takes any number of chunks; `finalize` pads the message (a 1 bit, zeros, the 64-bit
/// big-endian bit length) and returns the 32-byte digest.
public struct SHA256 {
    /// The first 32 bits of the fractional parts of the cube roots of the first 64 primes (FIPS 180-4, 4.2.2).
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    /// The first 32 bits of the fractional parts of the square roots of the first 8 primes (5.3.3).
    private var h: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
    /// A partial block carried between `update` calls.
    private var pending = [UInt8](repeating: 0, count: 64)
    private var pendingCount = 0
    private var messageLength: UInt64 = 0

    /// A hasher over the empty message.
    public init() {}

    /// Hashes more message bytes.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var left = bytes.count
        messageLength &+= UInt64(left)
        if pendingCount > 0 {
            let take = min(64 - pendingCount, left)
            let offset = pendingCount
            pending.withUnsafeMutableBytes { ($0.baseAddress! + offset).copyMemory(from: p, byteCount: take) }
            pendingCount += take
            p += take
            left -= take
            guard pendingCount == 64 else { return }
            // A local reference, so that `compress` (which mutates self) does not overlap an access to `pending`.
            let block = pending
            block.withUnsafeBytes { compress(blocks: $0.baseAddress!, count: 1) }
            pendingCount = 0
        }
        let blocks = left / 64
        if blocks > 0 {
            compress(blocks: p, count: blocks)
            p += blocks * 64
            left -= blocks * 64
        }
        if left > 0 {
            pending.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: p, byteCount: left) }
            pendingCount = left
        }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// Pads the message and returns the digest. The hasher must not be used afterwards.
    public mutating func finalize() -> [UInt8] {
        let bitLength = messageLength &* 8
        var tail: [UInt8] = [0x80]
        let padding = (64 + 56 - (pendingCount + 1) % 64) % 64
        tail += [UInt8](repeating: 0, count: padding)
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        let savedLength = messageLength
        update(tail)
        messageLength = savedLength
        precondition(pendingCount == 0)
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for word in [h.0, h.1, h.2, h.3, h.4, h.5, h.6, h.7] {
            out += [UInt8(word >> 24), UInt8(word >> 16 & 0xff), UInt8(word >> 8 & 0xff), UInt8(word & 0xff)]
        }
        return out
    }

    /// The digest of `bytes`.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var s = SHA256()
        s.update(bytes)
        return s.finalize()
    }

    public static func hash(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBytes { hash($0) } }

    /// Pads the message and returns the digest as lower-case hexadecimal text.
    public mutating func finalizeHex() -> String { Self.hex(finalize()) }

    /// Lower-case hexadecimal text of a digest.
    public static func hex(_ digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(digest.count * 2)
        for b in digest { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// One round (FIPS 180-4, 6.2.2 step 3) with the working variables passed in rotated order, so
    /// eight calls in a row replace the eight assignments that shift them by one.
    @inline(__always)
    private static func round(_ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: inout UInt32,
                              _ e: UInt32, _ f: UInt32, _ g: UInt32, _ h: inout UInt32, _ kw: UInt32) {
        @inline(__always) func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ (g ^ (e & (f ^ g))) &+ kw
        d &+= t1
        h = t1 &+ (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) | (c & (a | b)))
    }

    /// The compression function over `count` consecutive 64-byte blocks (FIPS 180-4, 6.2.2).
    private mutating func compress(blocks: UnsafeRawPointer, count: Int) {
        @inline(__always) func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var (h0, h1, h2, h3, h4, h5, h6, h7) = h
        SHA256.k.withUnsafeBufferPointer { k in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                for block in 0..<count {
                    let m = blocks + block * 64
                    for t in 0..<16 {
                        w[t] = UInt32(bigEndian: m.loadUnaligned(fromByteOffset: t * 4, as: UInt32.self))
                    }
                    for t in 16..<64 {
                        let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                        let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                        w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
                    }
                    var (a, b, c, d, e, f, g, h) = (h0, h1, h2, h3, h4, h5, h6, h7)
                    for t in stride(from: 0, to: 64, by: 8) {
                        SHA256.round(a, b, c, &d, e, f, g, &h, k[t] &+ w[t])
                        SHA256.round(h, a, b, &c, d, e, f, &g, k[t + 1] &+ w[t + 1])
                        SHA256.round(g, h, a, &b, c, d, e, &f, k[t + 2] &+ w[t + 2])
                        SHA256.round(f, g, h, &a, b, c, d, &e, k[t + 3] &+ w[t + 3])
                        SHA256.round(e, f, g, &h, a, b, c, &d, k[t + 4] &+ w[t + 4])
                        SHA256.round(d, e, f, &g, h, a, b, &c, k[t + 5] &+ w[t + 5])
                        SHA256.round(c, d, e, &f, g, h, a, &b, k[t + 6] &+ w[t + 6])
                        SHA256.round(b, c, d, &e, f, g, h, &a, k[t + 7] &+ w[t + 7])
                    }
                    h0 &+= a; h1 &+= b; h2 &+= c; h3 &+= d; h4 &+= e; h5 &+= f; h6 &+= g; h7 &+= h
                }
            }
        }
        h = (h0, h1, h2, h3, h4, h5, h6, h7)
    }
}
