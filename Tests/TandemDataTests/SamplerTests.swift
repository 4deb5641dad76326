import XCTest
import TandemData

final class SamplerTests: XCTestCase {
    func testPermutationIsAPermutationAndDiffersPerEpochAndSeed() {
        let s = Sampler(count: 1000, globalBatch: 10, seed: 3)
        let p0 = s.permutation(epoch: 0), p1 = s.permutation(epoch: 1)
        XCTAssertEqual(p0.sorted(), Array(0..<1000))
        XCTAssertEqual(p1.sorted(), Array(0..<1000))
        XCTAssertNotEqual(p0, p1)
        XCTAssertNotEqual(p0, Sampler(count: 1000, globalBatch: 10, seed: 4).permutation(epoch: 0))
        XCTAssertEqual(p0, Sampler(count: 1000, globalBatch: 10, seed: 3).permutation(epoch: 0))
    }

    /// Every sample exactly once per epoch (drop: the last partial batch's samples never) for 1..4 ranks.
    func testEverySampleOncePerEpochForOneToFourRanks() {
        for count in [1003, 960, 25] {
            for policy in LastBatchPolicy.allCases {
                let s = Sampler(count: count, globalBatch: 24, seed: 11, lastBatch: policy)
                for ranks in 1...4 {
                    for epoch in [0, 5] {
                        var seen = [Int](repeating: 0, count: count)
                        for b in 0..<s.batchesPerEpoch {
                            for r in 0..<ranks {
                                let part = s.indices(forBatchAt: s.cursor(atEpoch: epoch) + b * 24, rank: r,
                                                     worldSize: ranks)
                                XCTAssertEqual(part.count, 24 / ranks)
                                for i in part { seen[i] += 1 }
                            }
                        }
                        let label = "count \(count) \(policy) ranks \(ranks) epoch \(epoch)"
                        switch policy {
                        case .drop:
                            XCTAssertEqual(seen.filter { $0 == 1 }.count, count / 24 * 24, label)
                            XCTAssertEqual(seen.filter { $0 > 1 }.count, 0, label)
                        case .wrap:
                            XCTAssertFalse(seen.contains(0), label)
                            XCTAssertEqual(seen.reduce(0, +), s.samplesPerEpoch, label)
                            if count >= 24 { XCTAssertEqual(seen.filter { $0 == 2 }.count, s.samplesPerEpoch - count, label) }
                        }
                    }
                }
            }
        }
    }

    /// The ranks' parts concatenate to the global batch, whatever the rank count.
    func testIndependentOfRankCount() {
        let s = Sampler(count: 500, globalBatch: 12, seed: 1)
        for cursor in stride(from: 0, to: 3 * s.samplesPerEpoch, by: 12 * 7) {
            let global = s.globalBatch(at: cursor)
            for ranks in [1, 2, 3, 4, 6] {
                let joined = (0..<ranks).flatMap { s.indices(forBatchAt: cursor, rank: $0, worldSize: ranks) }
                XCTAssertEqual(joined, global, "cursor \(cursor), \(ranks) ranks")
            }
        }
    }

    /// Resuming from any saved cursor (another sampler, another rank count) continues the same stream.
    func testResumeFromAnyCursor() {
        let s = Sampler(count: 300, globalBatch: 8, seed: 9, lastBatch: .wrap)
        let full = (0..<100).flatMap { s.globalBatch(at: $0 * 8) }
        for resumeBatch in [0, 1, 37, 38, 75] {
            let resumed = Sampler(count: 300, globalBatch: 8, seed: 9, lastBatch: .wrap)
            let tail = (resumeBatch..<100).flatMap { b in
                (0..<4).flatMap { resumed.indices(forBatchAt: b * 8, rank: $0, worldSize: 4) }
            }
            XCTAssertEqual(tail, Array(full[(resumeBatch * 8)...]))
        }
        XCTAssertEqual(s.epoch(ofCursor: s.samplesPerEpoch - 8), 0)
        XCTAssertEqual(s.epoch(ofCursor: s.samplesPerEpoch), 1)
        XCTAssertEqual(s.batchInEpoch(ofCursor: s.samplesPerEpoch + 16), 2)
        XCTAssertEqual(s.batchesPerEpoch, 38)
    }

    /// Without shuffling every epoch takes the samples in order, and ranks still take contiguous parts.
    func testSequentialOrderKeepsTheSamplesOwnOrder() {
        let s = Sampler(count: 100, globalBatch: 8, seed: 5, order: .sequential)
        XCTAssertEqual(s.batchesPerEpoch, 12)
        XCTAssertEqual(s.permutation(epoch: 3), Array(0..<100))
        XCTAssertEqual(s.indices(forBatchAt: 8 * 13, rank: 1, worldSize: 2), [12, 13, 14, 15])
        XCTAssertEqual(s.sample(atCursor: 96 + 5), 5)
    }
}

final class CustomOrderSamplerTests: XCTestCase {
    /// With a custom order (length bucketing's), global batch k is positions [kG, (k+1)G) of it and rank r
    /// of W takes the contiguous part [rG/W, (r+1)G/W), for any W; resume from a cursor is unchanged.
    func testBatchesAreContiguousPartsOfTheOrder() {
        let count = 103, g = 12
        let order: (Int) -> [Int] = { epoch in (0..<count).map { ($0 * 7 + epoch) % count } }
        let s = Sampler(count: count, globalBatch: g, seed: 0, lastBatch: .drop, order: .custom(order))
        XCTAssertEqual(s.batchesPerEpoch, 8)
        for epoch in 0..<2 {
            for k in 0..<s.batchesPerEpoch {
                let cursor = s.cursor(atEpoch: epoch) + k * g
                let expected = Array(order(epoch)[(k * g)..<((k + 1) * g)])
                XCTAssertEqual(s.globalBatch(at: cursor), expected)
                for w in [1, 2, 3, 4] {
                    XCTAssertEqual((0..<w).flatMap { s.indices(forBatchAt: cursor, rank: $0, worldSize: w) }, expected)
                }
            }
        }
    }
}
