import Foundation
import XCTest
@testable import TandemData

/// RoBERTa's FULL-SENTENCES samples: whole sentences packed up to T - 2 tokens across documents (with
/// </s> between them) but not across shard files, long sentences split, every token used once, and
/// masks redrawn per epoch but replayable.
final class FullSentenceExamplesTests: XCTestCase {
    let tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + (0..<40).map { "w\($0)" }
    let bos: Int32 = 0, pad: Int32 = 1, eos: Int32 = 2, mask: Int32 = 4

    /// Two shards of 12 documents of 1-5 sentences of 1-14 tokens, and one sentence of 40 tokens.
    func makeData(T: Int) throws -> (FullSentenceExamples, [[[Int32]]]) {
        let dir = NSTemporaryDirectory() + "tandem-full-sentences-\(getpid())-\(T)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokenizer = try ByteLevelBPETokenizer(vocab: Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, Int32($0)) }),
                                                  merges: [], addedTokens: Array(tokens.prefix(5)), source: "test")
        let rng = Philox(seed: 5)
        var k: UInt64 = 0
        var documents: [[[Int32]]] = []  // per shard, the documents' token lists joined by sentence
        for s in 0..<2 {
            let writer = try TokenShardWriter(directory: dir, name: "shard-\(s)", vocabSize: tokens.count)
            var shard: [[Int32]] = []
            for d in 0..<12 {
                writer.beginDocument()
                var document: [Int32] = []
                for j in 0..<(1 + rng.below(5, stream: 0, step: 0, index: k)) {
                    k += 1
                    let n = s == 1 && d == 3 && j == 0 ? 40 : 1 + rng.below(14, stream: 0, step: 1, index: k)
                    let sentence = (0..<n).map { _ in k += 1; return Int32(5 + rng.below(40, stream: 0, step: 2, index: k)) }
                    try writer.addSentence(sentence)
                    document += sentence
                }
                shard.append(document)
            }
            try writer.finish()
            documents.append(shard)
        }
        try TokenShardManifest.build(directory: dir, names: ["shard-0", "shard-1"], vocabSize: tokens.count,
                                     vocabHash: tokenizer.vocabHash).write(directory: dir)
        var options = PretrainingOptions()
        options.maxSequence = T
        options.maxPredictions = 4
        let examples = try FullSentenceExamples(dataset: ShardDataset(directory: dir, tokenizer: tokenizer), options: options, seed: 11,
                                                bos: bos, eos: eos, pad: pad, mask: mask, special: [0, 1, 2, 3, 4],
                                                isContinuation: [Bool](repeating: false, count: tokens.count))
        return (examples, documents)
    }

    func testChunksPackWholeSentencesAcrossDocumentsAndUseEveryTokenOnce() throws {
        let T = 24
        let (e, documents) = try makeData(T: T)
        var interiors: [[Int32]] = []
        for i in 0..<e.count {
            let t = e.tokens(ofExample: i)
            XCTAssertEqual(t.first, bos)
            XCTAssertEqual(t.last, eos)
            XCTAssertLessThanOrEqual(t.count, T)
            let inner = Array(t.dropFirst().dropLast())
            XCTAssertFalse(inner.isEmpty)
            XCTAssertNotEqual(inner.first, eos, "a chunk starts at a sentence, not at a separator")
            interiors.append(inner)
        }
        // Without separators, the chunks in order are every token of the shards once, in order.
        XCTAssertEqual(Array(interiors.joined()).filter { $0 != eos }, Array(documents.joined().joined()))
        // A separator sits inside a chunk exactly where one document ends and the next one (of the same
        // shard) begins: offsets counted in tokens.
        var documentEnds = Set<Int>(), shardEnds = Set<Int>(), offset = 0
        for shard in documents {
            for document in shard { offset += document.count; documentEnds.insert(offset) }
            shardEnds.insert(offset)
        }
        var seen = 0, separatorsAt = Set<Int>(), chunkStarts = Set<Int>()
        for inner in interiors {
            chunkStarts.insert(seen)
            for t in inner { if t == eos { separatorsAt.insert(seen) } else { seen += 1 } }
        }
        XCTAssertFalse(separatorsAt.isEmpty, "some chunks cross a document boundary")
        XCTAssertEqual(separatorsAt, documentEnds.subtracting(chunkStarts).subtracting(shardEnds))
        XCTAssertTrue(shardEnds.isSubset(of: chunkStarts.union([offset])), "no chunk spans two shard files")
        // The 40-token sentence is split into pieces of T - 2 and a rest.
        XCTAssertTrue(interiors.contains { $0.count == T - 2 && !$0.contains(eos) })
        // Packing is greedy: a chunk that is not the last of its shard could not take its successor's
        // first sentence (at most 14 tokens, plus a separator).
        let short = interiors.dropLast().filter { $0.count < T - 2 - 15 }
        XCTAssertLessThanOrEqual(short.count, 1, "only shard 0's last chunk may be short")
    }

    func testMasksAreDynamicReplayableAndNeverOnSpecialTokens() throws {
        let T = 24, P = 4
        let (e, _) = try makeData(T: T)
        func example(_ i: Int, epoch: Int) -> (ids: [Int32], positions: [Int32], labels: [Int32], mask: [Float]) {
            var ids = [Int32](repeating: -1, count: T), types = ids, positions = [Int32](repeating: 0, count: P), labels = positions
            var attention = [Float](repeating: -1, count: T)
            var nsp: Int32 = 0
            ids.withUnsafeMutableBufferPointer { a in types.withUnsafeMutableBufferPointer { b in attention.withUnsafeMutableBufferPointer { c in
                positions.withUnsafeMutableBufferPointer { d in labels.withUnsafeMutableBufferPointer { f in
                    withUnsafeMutablePointer(to: &nsp) { g in
                        e.fill(example: i, epoch: epoch, into: PretrainingSlots(
                            inputIDs: a.baseAddress!, tokenTypeIDs: b.baseAddress!, attentionMask: c.baseAddress!,
                            maskedPositions: d.baseAddress!, maskedLabels: f.baseAddress!, nextSentenceLabel: g))
                    } } } } } }
            XCTAssertEqual(nsp, -100)
            XCTAssertEqual(types, [Int32](repeating: 0, count: T))
            return (ids, positions, labels, attention)
        }
        var differ = 0
        for i in 0..<e.count {
            let original = e.tokens(ofExample: i)
            let a = example(i, epoch: 0), again = example(i, epoch: 0), b = example(i, epoch: 1)
            XCTAssertEqual(a.ids, again.ids)
            XCTAssertEqual(a.positions, again.positions)
            if a.positions != b.positions { differ += 1 }
            XCTAssertEqual(a.mask, (0..<T).map { $0 < original.count ? 1 : 0 })
            XCTAssertEqual(Array(a.ids[original.count...]), [Int32](repeating: pad, count: T - original.count))
            let expected = min(P, max(1, Int((Double(original.count) * 0.15).rounded())))
            let scored = zip(a.positions, a.labels).filter { $0.1 != -100 }
            XCTAssertEqual(scored.count, expected)
            for (p, label) in scored {
                XCTAssertEqual(label, original[Int(p)])
                XCTAssertGreaterThanOrEqual(label, 5, "special tokens are never masked")
            }
            for t in 0..<original.count where !scored.contains(where: { Int($0.0) == t }) {
                XCTAssertEqual(a.ids[t], original[t], "unmasked positions keep their token")
            }
        }
        XCTAssertGreaterThan(differ, e.count / 2, "masks are redrawn each epoch")
    }
}
