import XCTest
@testable import TandemTensor

final class PhiloxTests: XCTestCase {
    /// Known-answer test from the Random123 distribution (kat_vectors, philox4x32_10):
    /// counter = 0, key = 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8 is for the raw function, which our
    /// keyed wrapper does not expose; so we test the properties we rely on instead.
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
