import Foundation
import TandemCheckpoint
import XCTest

final class SHA256Tests: XCTestCase {
    private func hex(_ s: String) -> String { SHA256.hex(SHA256.hash(Array(s.utf8))) }

    /// FIPS 180-2 appendix B and the NIST example values.
    func testNISTVectors() {
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(SHA256.hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Chunked updates of every split across the 55/56/64-byte padding boundaries equal one-shot hashing.
    func testStreamingMatchesOneShot() {
        let message: [UInt8] = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for length in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 300] {
            let whole = SHA256.hash(Array(message.prefix(length)))
            for split in stride(from: 0, through: length, by: 7) {
                var s = SHA256()
                s.update(Array(message[0..<split]))
                s.update(Array(message[split..<length]))
                XCTAssertEqual(s.finalize(), whole, "length \(length) split \(split)")
            }
        }
    }

    /// A random file of an odd size, hashed through mmap, against coreutils' sha256sum.
    func testFileMatchesSha256sum() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sha256sum") else {
            throw XCTSkip("/usr/bin/sha256sum is not installed")
        }
        let dir = TestDirectory()
        defer { dir.remove() }
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<(1 << 20) + 12_345).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let path = dir.write("random.bin", bytes)
        let expected = try runProcess("/usr/bin/sha256sum", [path]).output.split(separator: " ").first.map(String.init)
        XCTAssertEqual(SHA256.hex(try SHA256.hash(file: path)), expected)
        XCTAssertEqual(SHA256.hex(SHA256.hash(bytes)), expected)
        XCTAssertEqual(SHA256.hex(try SHA256.hash(file: dir.write("empty", []))),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
