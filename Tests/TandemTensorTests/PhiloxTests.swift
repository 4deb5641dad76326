import XCTest
@testable import TandemTensor

final class PhiloxTests: XCTestCase {
    /// Known-answer tests from Random123's kat_vectors (philox4x32, 10 rounds): counter (4 words), key
    /// (2 words) -> output (4 words), all as printed there.
    func testRandom123KnownAnswers() {
        let vectors: [((UInt32, UInt32, UInt32, UInt32), (UInt32, UInt32), [UInt32])] = [
            ((0, 0, 0, 0), (0, 0), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
            ((0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), (0xffff_ffff, 0xffff_ffff),
             [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
            ((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), (0xa409_3822, 0x299f_31d0),
             [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]),
        ]
        for (counter, key, expected) in vectors {
            let out = Philox.philox4x32_10(counter: counter, key: key)
            XCTAssertEqual([out.0, out.1, out.2, out.3], expected, "counter \(counter) key \(key)")
        }
    }

    func testDeterministicAndDistinct() {
        let r = Philox(seed: 42)
        XCTAssertEqual(r.uniform(stream: 1, step: 2, index: 3), r.uniform(stream: 1, step: 2, index: 3))
        XCTAssertNotEqual(r.uniform(stream: 1, step: 2, index: 3), r.uniform(stream: 1, step: 2, index: 4))
        XCTAssertNotEqual(r.uniform(stream: 1, step: 2, index: 3), r.uniform(stream: 2, step: 2, index: 3))
        XCTAssertNotEqual(r.uniform(stream: 1, step: 2, index: 3), Philox(seed: 43).uniform(stream: 1, step: 2, index: 3))
    }

    func testUniformAndNormalMoments() {
        let r = Philox(seed: 7)
        let n = 200_000
        var s = 0.0, s2 = 0.0, ns = 0.0, ns2 = 0.0
        for i in 0..<n {
            let u = Double(r.uniform(stream: 0, step: 0, index: UInt64(i)))
            XCTAssert(u >= 0 && u < 1)
            s += u; s2 += u * u
            let z = Double(r.normal(stream: 0, step: 1, index: UInt64(i)))
            ns += z; ns2 += z * z
        }
        XCTAssertEqual(s / Double(n), 0.5, accuracy: 0.005)
        XCTAssertEqual(s2 / Double(n) - 0.25, 1.0 / 12, accuracy: 0.002)
        XCTAssertEqual(ns / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(ns2 / Double(n), 1, accuracy: 0.01)
    }

    func testBelowCoversRange() {
        let r = Philox(seed: 1)
        var seen = Set<Int>()
        for i in 0..<1000 { seen.insert(r.below(7, stream: 3, step: 0, index: UInt64(i))) }
        XCTAssertEqual(seen, Set(0..<7))
    }
}
