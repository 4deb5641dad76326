import Foundation
import XCTest
@testable import TandemData

final class PretrainingExamplesTests: XCTestCase {
    let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (0..<40).map { "w\($0)" } + (0..<10).map { "##p\($0)" }

    /// 30 documents of 3-6 sentences of 4-12 tokens; a quarter of the tokens are `##` pieces.
    func makeData(T: Int, wholeWord: Bool = false) throws -> (PretrainingExamples, WordPieceTokenizer) {
        let dir = NSTemporaryDirectory() + "tandem-pretrain-\(getpid())-\(T)-\(wholeWord)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokenizer = try WordPieceTokenizer(tokens: tokens)
        let writer = try TokenShardWriter(directory: dir, name: "shard-0", vocabSize: tokens.count)
        let rng = Philox(seed: 1)
        var k: UInt64 = 0
        for _ in 0..<30 {
            writer.beginDocument()
            for _ in 0..<(3 + rng.below(4, stream: 0, step: 0, index: k)) {
                k += 1
                let n = 4 + rng.below(9, stream: 0, step: 1, index: k)
                try writer.addSentence((0..<n).map { i in
                    k += 1
                    return i > 0 && rng.uniform(stream: 0, step: 2, index: k) < 0.25
                        ? Int32(45 + rng.below(10, stream: 0, step: 3, index: k)) : Int32(5 + rng.below(40, stream: 0, step: 4, index: k))
                })
            }
        }
        try writer.finish()
        try TokenShardManifest.build(directory: dir, names: ["shard-0"], vocabSize: tokens.count,
                                     vocabHash: tokenizer.vocabHash).write(directory: dir)
        var options = PretrainingOptions()
        options.maxSequence = T
        options.maxPredictions = 5
        options.wholeWordMasking = wholeWord
        let dataset = try ShardDataset(directory: dir, tokenizer: tokenizer)
        return (try PretrainingExamples(dataset: dataset, tokenizer: tokenizer, options: options, seed: 7), tokenizer)
    }

    struct Example: Equatable {
        var ids: [Int32], types: [Int32], mask: [Float], positions: [Int32], labels: [Int32], nsp: Int32
    }

    func example(_ e: PretrainingExamples, _ i: Int, epoch: Int) -> Example {
        let T = e.options.maxSequence, P = e.options.maxPredictions
        var ids = [Int32](repeating: 0, count: T), types = ids, positions = [Int32](repeating: 0, count: P), labels = positions
        var mask = [Float](repeating: 0, count: T)
        var nsp: Int32 = 0
        ids.withUnsafeMutableBufferPointer { a in types.withUnsafeMutableBufferPointer { b in mask.withUnsafeMutableBufferPointer { c in
            positions.withUnsafeMutableBufferPointer { d in labels.withUnsafeMutableBufferPointer { f in
                withUnsafeMutablePointer(to: &nsp) { g in
                    e.fill(example: i, epoch: epoch, into: PretrainingSlots(
                        inputIDs: a.baseAddress!, tokenTypeIDs: b.baseAddress!, attentionMask: c.baseAddress!,
                        maskedPositions: d.baseAddress!, maskedLabels: f.baseAddress!, nextSentenceLabel: g))
                } } } } } }
        return Example(ids: ids, types: types, mask: mask, positions: positions, labels: labels, nsp: nsp)
    }

    func testLayoutMaskingAndReplay() throws {
        let (e, _) = try makeData(T: 24)
        XCTAssertGreaterThan(e.count, 30)
        var random = 0, maskedTotal = 0, maskTokens = 0
        for i in 0..<e.count {
            let x = example(e, i, epoch: 0)
            XCTAssertEqual(x, example(e, i, epoch: 0), "examples replay exactly")
            XCTAssertEqual(x.ids[0], 2, "[CLS] first")
            let used = Int(x.mask.reduce(0, +))
            XCTAssertEqual(x.ids[used - 1], 3, "[SEP] last")
            XCTAssertEqual(x.ids.filter { $0 == 3 }.count, 2, "two [SEP]")
            XCTAssertTrue(x.ids[used...].allSatisfy { $0 == 0 }, "padding")
            let firstSep = x.ids.firstIndex(of: 3)!
            XCTAssertEqual(Array(x.types[0...firstSep]), Array(repeating: 0, count: firstSep + 1))
            XCTAssertEqual(Array(x.types[(firstSep + 1)..<used]), Array(repeating: 1, count: used - firstSep - 1))
            let masked = x.labels.filter { $0 != -100 }.count
            XCTAssertEqual(masked, min(5, max(1, Int((Double(used) * 0.15).rounded()))))
            XCTAssertEqual(x.positions.prefix(masked).sorted(), Array(x.positions.prefix(masked)), "ascending positions")
            for m in 0..<masked {
                let p = Int(x.positions[m])
                XCTAssertTrue(p > 0 && p < used - 1 && p != firstSep, "never a special position")
                XCTAssertTrue(x.labels[m] >= 5, "labels are real tokens")
                if x.ids[p] == 4 { maskTokens += 1 }
            }
            maskedTotal += masked
            random += Int(x.nsp)
        }
        let fraction = Double(random) / Double(e.count)
        XCTAssertTrue(fraction > 0.4 && fraction < 0.8, "random-next fraction \(fraction) (one-sentence chunks are always random)")
        XCTAssertEqual(Double(maskTokens) / Double(maskedTotal), 0.8, accuracy: 0.08, "80% become [MASK]")
        XCTAssertNotEqual(example(e, 3, epoch: 0), example(e, 3, epoch: 1), "each epoch draws a new pair and mask")
    }

    func testWholeWordMaskingMasksContinuationsWithTheirWord() throws {
        let (e, _) = try makeData(T: 40, wholeWord: true)
        var checked = 0
        for i in 0..<e.count {
            let x = example(e, i, epoch: 2)
            let used = Int(x.mask.reduce(0, +))
            let masked = Set((0..<x.labels.count).filter { x.labels[$0] != -100 }.map { Int(x.positions[$0]) })
            // The piece after a masked piece is masked too when it continues the same word (`##`).
            for p in masked where p + 1 < used && !masked.contains(p + 1) {
                XCTAssertLessThan(x.ids[p + 1], 45, "example \(i): the ## piece after masked position \(p) was left unmasked")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0)
    }
}
