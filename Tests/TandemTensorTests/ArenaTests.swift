import XCTest
@testable import TandemTensor

final class ArenaTests: XCTestCase {
    func testParametersAreContiguousInRegistrationOrder() {
        let arena = ParameterArena()
        let a = arena.register("a", Shape(3, 5), initializer: .ones)
        let b = arena.register("b", Shape(7), initializer: .zeros, decays: false)
        let c = arena.register("c", Shape(2, 2), initializer: .normal(std: 0.02))
        arena.seal()
        XCTAssertEqual(a.offset, 0)
        XCTAssertEqual(b.offset, 16)
        XCTAssertEqual(c.offset, 32)
        XCTAssertEqual(arena.count, 36)
        XCTAssertEqual(arena.parameterCount, 15 + 7 + 4)
        XCTAssertEqual(Array(a.values), Array(repeating: 1, count: 15))
        XCTAssertEqual(Array(b.values), Array(repeating: 0, count: 7))
        XCTAssertEqual(b.grad - a.grad, 16)
        XCTAssertTrue(arena["c"] === c)
        XCTAssertFalse(b.decays)
    }

    func testValuesSurviveGrowth() {
        let arena = ParameterArena()
        let first = arena.register("first", Shape(10), initializer: .uniform(bound: 1))
        let before = Array(first.values)
        for i in 0..<50 { arena.register("p\(i)", Shape(100), initializer: .zeros) }
        arena.seal()
        XCTAssertEqual(Array(first.values), before)
    }

    func testTruncatedNormalStaysInsideTwoStd() {
        let arena = ParameterArena()
        let p = arena.register("w", Shape(10_000), initializer: .truncatedNormal(std: 0.02))
        arena.seal()
        XCTAssert(p.values.allSatisfy { abs($0) <= 0.04 })
        let mean = p.values.reduce(0, +) / Float(p.count)
        XCTAssertEqual(mean, 0, accuracy: 0.002)
    }

    func testActivationArenaReplaysTheSameMemory() {
        let arena = ActivationArena(minimumBlockBytes: 1024)
        let p1 = arena.allocate(Float.self, count: 100)
        let p2 = arena.allocate(Float.self, count: 1000)
        let p3 = arena.allocate(Int32.self, count: 7)
        let capacity = arena.capacity
        arena.rewind()
        XCTAssertEqual(arena.allocate(Float.self, count: 100), p1)
        XCTAssertEqual(arena.allocate(Float.self, count: 1000), p2)
        XCTAssertEqual(arena.allocate(Int32.self, count: 7), p3)
        XCTAssertEqual(arena.capacity, capacity)
        XCTAssertEqual(Int(bitPattern: p2) % 64, 0)
    }
}
