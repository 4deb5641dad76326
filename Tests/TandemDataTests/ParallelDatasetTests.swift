import Foundation
import XCTest
@testable import TandemData

final class ParallelDatasetTests: XCTestCase {
    let vocab = try! WordPieceTokenizer(tokens: BasicTokenizerTests.vocab)
    let otherVocab = try! WordPieceTokenizer(tokens: BasicTokenizerTests.vocab + ["extra"])

    /// Writes `text` to `directory/name` and tokenizes it line-aligned into `directory/name-shards`.
    private func side(_ directory: String, _ name: String, _ text: String, vocab: WordPieceTokenizer) throws -> String {
        let path = "\(directory)/\(name)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try prepareText(vocab: vocab, out: path + "-shards", inputs: TextShardJob.plan(inputs: [path]), lineAligned: true, log: { _ in })
        return path + "-shards"
    }

    /// Line i of each side is pair i, in order, also a line whose characters all vanish in clean_text
    /// (it becomes [UNK]: without --line-aligned prepare-text drops it and every later pair would shift).
    func testPairsStayAligned() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let src = try side(directory, "train.src", "hello world\na b\n\u{200B}\u{FFFD}\nb a e , 5\n", vocab: vocab)
        let tgt = try side(directory, "train.tgt", "cafe\nx\nhello\n\u{1}\n", vocab: otherVocab)
        let data = try ParallelDataset(sourceDirectory: src, sourceVocab: vocab, targetDirectory: tgt, targetVocab: otherVocab)
        XCTAssertEqual(data.count, 4)
        let sources = ["hello world", "a b", "\u{200B}\u{FFFD}", "b a e , 5"], targets = ["cafe", "x", "hello", "\u{1}"]
        for i in 0..<4 {
            let (s, t) = data.pair(i)
            let expectedSource = vocab.encode(sources[i]), expectedTarget = otherVocab.encode(targets[i])
            XCTAssertEqual(Array(s), expectedSource.isEmpty ? [vocab.unkID] : expectedSource, "pair \(i)")
            XCTAssertEqual(Array(t), expectedTarget.isEmpty ? [otherVocab.unkID] : expectedTarget, "pair \(i)")
            XCTAssertEqual(data.sourceLengths[i], s.count)
            XCTAssertEqual(data.targetLengths[i], t.count)
        }
        XCTAssertTrue(vocab.encode(sources[2]).isEmpty, "the test needs a line without tokens")
    }

    func testMisalignedSidesAndVocabulariesAreErrors() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let src = try side(directory, "a.src", "hello\nworld\n", vocab: vocab)
        let tgt = try side(directory, "a.tgt", "hello\n", vocab: vocab)
        XCTAssertThrowsError(try ParallelDataset(sourceDirectory: src, sourceVocab: vocab, targetDirectory: tgt, targetVocab: vocab)) {
            XCTAssertTrue("\($0)".hasPrefix("\(src) and \(tgt): 2 source sentences but 1 target sentences"), "\($0)")
        }
        XCTAssertThrowsError(try ParallelDataset(sourceDirectory: src, sourceVocab: otherVocab, targetDirectory: tgt, targetVocab: vocab)) {
            XCTAssertTrue("\($0)".contains("another vocabulary"), "\($0)")
        }
        XCTAssertThrowsError(try side(directory, "b.src", "hello\n\nworld\n", vocab: vocab)) {
            XCTAssertTrue("\($0)".hasPrefix("\(directory)/b.src:2: empty line"), "\($0)")
        }
    }

    /// The bucketed order is a permutation, a function of (seed, epoch), and its global batches are
    /// tighter: padding falls well below that of plain shuffled batches.
    func testBucketingCutsPadding() {
        let rng = Philox(seed: 9)
        let lengths = (0..<5000).map { 1 + rng.below(80, stream: 1, step: 0, index: UInt64($0)) }
        let g = 32
        let bucketing = LengthBucketing(lengths: lengths, globalBatch: g, seed: 5, chunkBatches: 20)
        let order = bucketing.order(epoch: 0)
        XCTAssertEqual(order.sorted(), Array(0..<5000))
        XCTAssertEqual(order, LengthBucketing(lengths: lengths, globalBatch: g, seed: 5, chunkBatches: 20).order(epoch: 0))
        XCTAssertNotEqual(order, bucketing.order(epoch: 1))
        let plain = Array(0..<5000)   // any order independent of length pads like a shuffle
        let bucketed = LengthBucketing.meanPaddingFraction(lengths: lengths, order: order, batch: g)
        let unbucketed = LengthBucketing.meanPaddingFraction(lengths: lengths, order: plain, batch: g)
        XCTAssertGreaterThan(unbucketed, 0.4)
        XCTAssertLessThan(bucketed, 0.1)   // 80 lengths over 640-sample chunks: about 8 of each length per chunk
        // The last count mod G samples are the leftovers of the last chunk; every full batch is sorted.
        for k in 0..<(5000 / g) {
            let batch = order[(k * g)..<((k + 1) * g)].map { lengths[$0] }
            XCTAssertEqual(batch, batch.sorted())
        }
    }
}
