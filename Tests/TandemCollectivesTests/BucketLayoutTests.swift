import XCTest
import TandemCollectives

final class BucketLayoutTests: XCTestCase {
    /// Parameters packed without padding, to reason about sizes exactly.
    private func packed(_ counts: [Int]) -> [(offset: Int, count: Int)] {
        var offset = 0
        return counts.map { c in defer { offset += c }; return (offset, c) }
    }

    func testReverseRegistrationOrderAndSizes() {
        // 5 parameters of 10 floats (40 B) and buckets of 100 B: two parameters per bucket, from the end.
        let layout = BucketLayout(parameters: packed([10, 10, 10, 10, 10]), bucketBytes: 100)
        XCTAssertEqual(layout.buckets.map(\.parameters), [3..<5, 1..<3, 0..<1])
        XCTAssertEqual(layout.buckets.map(\.elements), [30..<50, 10..<30, 0..<10])
        XCTAssertEqual(layout.bucketOfParameter, [2, 1, 1, 0, 0])
        XCTAssertEqual(layout.buckets.map(\.index), [0, 1, 2])
    }

    func testExactFitStaysInOneBucket() {
        let layout = BucketLayout(parameters: packed([25, 25, 25, 25]), bucketBytes: 200)
        XCTAssertEqual(layout.buckets.map(\.parameters), [2..<4, 0..<2])
    }

    func testOversizedParameterIsItsOwnBucket() {
        let layout = BucketLayout(parameters: packed([3, 1000, 2, 5, 700, 1]), bucketBytes: 64)
        XCTAssertEqual(layout.buckets.map(\.parameters), [5..<6, 4..<5, 2..<4, 1..<2, 0..<1])
        XCTAssertEqual(layout.maxElements, 1000)
    }

    func testBucketsTileTheArenaWithoutStraddling() {
        let arena = ParameterArena()
        let counts = [1, 7, 33, 1000, 5001, 17, 3, 100_003, 250, 2, 4099, 64, 999]
        for (i, n) in counts.enumerated() { arena.register("p\(i)", Shape(n), initializer: .zeros) }
        arena.seal()
        for bucketBytes in [1, 1000, 4096, 65_536, 1 << 20, 25 << 20] {
            let layout = BucketLayout(arena: arena, bucketBytes: bucketBytes)
            // Every parameter is in exactly one bucket, buckets are consecutive downwards from the end.
            XCTAssertEqual(layout.buckets.first?.parameters.upperBound, counts.count)
            XCTAssertEqual(layout.buckets.last?.parameters.lowerBound, 0)
            for (a, b) in zip(layout.buckets, layout.buckets.dropFirst()) {
                XCTAssertEqual(a.parameters.lowerBound, b.parameters.upperBound)
                XCTAssertLessThanOrEqual(b.elements.upperBound, a.elements.lowerBound)
            }
            for b in layout.buckets {
                let first = arena.parameters[b.parameters.lowerBound], last = arena.parameters[b.parameters.upperBound - 1]
                XCTAssertEqual(b.elements, first.offset..<(last.offset + last.count))
                XCTAssertTrue(b.byteCount <= bucketBytes || b.parameters.count == 1,
                              "bucket \(b.index) of \(b.byteCount) B over \(bucketBytes) B holds several parameters")
                for p in b.parameters { XCTAssertEqual(layout.bucketOfParameter[p], b.index) }
            }
        }
    }

    func testLocalBucketsAreIdentityAndSkipSyncLeavesGradients() {
        let arena = ParameterArena()
        arena.register("a", Shape(5, 3), initializer: .zeros)
        arena.register("b", Shape(7), initializer: .zeros)
        arena.seal()
        for i in 0..<arena.count { arena.grads[i] = Float(i) * 0.5 }
        let before = Array(arena.grads)
        let buckets = GradientBuckets(arena: arena, communicator: LocalCommunicator(), bucketBytes: 16)
        buckets.skipSync = true
        buckets.finish()
        buckets.skipSync = false
        for p in arena.parameters.reversed() { buckets.markReady(p) }
        buckets.finish()
        buckets.close()
        XCTAssertEqual(Array(arena.grads), before)
    }
}
