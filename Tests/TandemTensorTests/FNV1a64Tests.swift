import XCTest
import TandemTensor

final class FNV1a64Tests: XCTestCase {
    /// The published FNV-1a 64-bit test vectors (Fowler, Noll, Vo: the FNV reference code's test suite).
    func testPublishedVectors() {
        XCTAssertEqual(FNV1a64.hash(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(FNV1a64.hash("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(FNV1a64.hash("foobar"), 0x8594_4171_f739_67e8)
        XCTAssertEqual(FNV1a64().value, 0xcbf2_9ce4_8422_2325)
    }

    /// Bytes and strings, whole or in pieces, give the same hash.
    func testCombiningInPiecesEqualsOneShot() {
        var h = FNV1a64()
        h.combine("foo")
        Array("ba".utf8).withUnsafeBytes { h.combine(bytes: $0) }
        h.combine("r")
        XCTAssertEqual(h.value, 0x8594_4171_f739_67e8)
    }

    func testWordwiseSeesEveryBitAndLength() {
        var bytes = (0..<1037).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let base = bytes.withUnsafeBytes { FNV1a64.wordwise($0) }
        XCTAssertEqual(base, bytes.withUnsafeBytes { FNV1a64.wordwise($0) })
        for position in [0, 7, 8, 31, 32, 500, 1031, 1036] {
            for bit in [0, 3, 7] {
                bytes[position] ^= UInt8(1 << bit)
                XCTAssertNotEqual(bytes.withUnsafeBytes { FNV1a64.wordwise($0) }, base, "byte \(position) bit \(bit)")
                bytes[position] ^= UInt8(1 << bit)
            }
        }
        // Swapping two words must change it (the lanes are not a plain xor of words).
        bytes.swapAt(0, 8)
        XCTAssertNotEqual(bytes.withUnsafeBytes { FNV1a64.wordwise($0) }, base)
        XCTAssertNotEqual(wordwise(""), wordwise("\0"))
    }

    func testWordwiseBelowOneWordIsItsByteWiseTail() {
        // Below 8 bytes only the byte-wise tail runs: compare with a direct FNV-1a-based construction.
        let offset: UInt64 = 0xcbf2_9ce4_8422_2325, prime: UInt64 = 0x100_0000_01b3
        var h = offset
        for lane in [offset, offset ^ 1, offset ^ 2, offset ^ 3] { h = (h ^ lane) &* prime }
        for b in Array("abc".utf8) { h = (h ^ UInt64(b)) &* prime }
        h = (h ^ 3) &* prime
        XCTAssertEqual(wordwise("abc"), h)
    }

    private func wordwise(_ s: String) -> UInt64 { Array(s.utf8).withUnsafeBytes { FNV1a64.wordwise($0) } }
}
