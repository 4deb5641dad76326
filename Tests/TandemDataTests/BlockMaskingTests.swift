import XCTest
@testable import TandemData
import TandemTensor

/// `BlockMasking`, BEiT's blockwise masking: the exact count at BEiT's setting, blocks of at least
/// min_num_patches (but the remainder), determinism from (seed, epoch, sample) alone, the documented
/// bound when the count cannot be reached, and settings that would mask nothing rejected.
final class BlockMaskingTests: XCTestCase {
    /// Masks `samples` samples, checking each one's count against its mask and its blocks against the grid
    /// and the minimum size; returns the counts.
    private func counts(_ m: BlockMasking, samples: Int, epoch: Int = 0, file: StaticString = #filePath, line: UInt = #line) -> [Int] {
        var out = [Float](repeating: .nan, count: m.numPatches)
        return (0..<samples).map { sample in
            var blocks: [(BlockMasking.Block, Int)] = []
            let count = out.withUnsafeMutableBufferPointer { p in
                m.fill(epoch: epoch, sample: sample, into: p.baseAddress!) { blocks.append(($0, $1)) }
            }
            XCTAssertEqual(out.filter { $0 == 1 }.count, count, "sample \(sample)", file: file, line: line)
            XCTAssertEqual(out.filter { $0 == 0 }.count, m.numPatches - count, "sample \(sample): only 0 and 1", file: file, line: line)
            XCTAssertLessThanOrEqual(count, m.numMaskingPatches, file: file, line: line)
            for (block, remaining) in blocks {
                XCTAssertGreaterThanOrEqual(block.area, min(m.minNumPatches, remaining), "sample \(sample) \(block)", file: file, line: line)
                XCTAssertTrue(block.height < m.height && block.width < m.width && block.top + block.height <= m.height
                              && block.left + block.width <= m.width, "sample \(sample) \(block)", file: file, line: line)
            }
            if let first = blocks.first?.0 {
                XCTAssertGreaterThanOrEqual(first.area, min(m.minNumPatches, m.numMaskingPatches), file: file, line: line)
            }
            return count
        }
    }

    func testBEiTSettingMasksExactlyTheCount() throws {
        for (target, ratio) in [(75, nil), (78, 0.4)] as [(Int, Double?)] {
            let m = try ratio.map { try BlockMasking(grid: 14, ratio: $0, seed: 5) }
                ?? BlockMasking(height: 14, width: 14, numMaskingPatches: 75, seed: 5)
            XCTAssertEqual(m.numMaskingPatches, target)
            let c = counts(m, samples: 1000)
            XCTAssertEqual(c.filter { $0 != target }.count, 0, "samples short of \(target): \(c.filter { $0 != target })")
        }
        // Odd, non-square grids and the 40% default.
        for (h, w) in [(7, 9), (5, 5)] {
            let m = try BlockMasking(height: h, width: w, numMaskingPatches: Int((0.4 * Double(h * w)).rounded()), minNumPatches: 4, seed: 1)
            let c = counts(m, samples: 300)
            XCTAssertEqual(c.filter { $0 != m.numMaskingPatches }.count, 0, "\(h)x\(w)")
        }
    }

    /// One failed draw allowed (harder than unilm's 10): the count may fall short, never over.
    func testCountNeverExceedsTheTargetAndFallsShortOnlyWhenDrawsRunOut() throws {
        let strict = try BlockMasking(height: 14, width: 14, numMaskingPatches: 75, maxAttempts: 1, seed: 2)
        let c = counts(strict, samples: 300)
        XCTAssertTrue(c.contains { $0 < 75 }, "one attempt per block should run out sometimes")
        let all = try BlockMasking(height: 6, width: 6, numMaskingPatches: 36, minNumPatches: 4, seed: 2)
        XCTAssertTrue(counts(all, samples: 100).allSatisfy { $0 > 18 && $0 <= 36 })
    }

    func testDeterministicFromSeedEpochAndSample() throws {
        let a = try BlockMasking(grid: 14, seed: 9), b = try BlockMasking(grid: 14, seed: 9)
        XCTAssertEqual(a.mask(epoch: 3, sample: 17), b.mask(epoch: 3, sample: 17), "another rank, the same sample")
        XCTAssertNotEqual(a.mask(epoch: 3, sample: 17), a.mask(epoch: 3, sample: 18))
        XCTAssertNotEqual(a.mask(epoch: 3, sample: 17), a.mask(epoch: 4, sample: 17))
        XCTAssertNotEqual(a.mask(epoch: 3, sample: 17), try BlockMasking(grid: 14, seed: 10).mask(epoch: 3, sample: 17))
        // Rows of 16 samples as two ranks of 8 would mask them: the same masks.
        let whole = (0..<16).map { a.mask(epoch: 0, sample: $0) }
        let ranks = (0..<2).flatMap { r in (0..<8).map { b.mask(epoch: 0, sample: r * 8 + $0) } }
        XCTAssertEqual(whole, ranks)
    }

    func testSettingsThatWouldMaskNothingAreErrors() {
        func message(_ make: () throws -> BlockMasking) -> String {
            do { _ = try make(); return "" } catch { return "\(error)" }
        }
        // A 4x4 grid's largest block below its size is 3x3 = 9 < 16 patches.
        let small = message { try BlockMasking(grid: 4, ratio: 0.5, seed: 0) }
        XCTAssertTrue(small.contains("would mask nothing") && small.contains("4x4"), small)
        // Aspect ratios that allow only squares, and a count no square matches.
        let squares = message { try BlockMasking(height: 14, width: 14, numMaskingPatches: 20, minNumPatches: 17, minAspect: 1, seed: 0) }
        XCTAssertTrue(squares.contains("would mask nothing"), squares)
        XCTAssertTrue(message { try BlockMasking(height: 1, width: 9, numMaskingPatches: 3, minNumPatches: 1, seed: 0) }.contains("1x9"))
        XCTAssertTrue(message { try BlockMasking(grid: 14, ratio: 0, seed: 0) }.contains("num_masking_patches"))
        XCTAssertTrue(message { try BlockMasking(height: 14, width: 14, numMaskingPatches: 10, minAspect: -1, seed: 0) }.contains("aspect"))
        XCTAssertEqual(message { try BlockMasking(height: 14, width: 14, numMaskingPatches: 10, seed: 0) }, "",
                       "fewer than min_num_patches is fine: a block of the remainder")
    }
}
