import Foundation
import XCTest
@testable import TandemData

final class PrepareTextTests: XCTestCase {
    let tokenizer = try! WordPieceTokenizer(tokens: BasicTokenizerTests.vocab)

    /// A corpus of `documents` documents of 1-3 sentences each, blank lines apart (with stray blank lines).
    func writeCorpus(_ path: String, documents: Int) throws {
        var text = "\n\n"
        for d in 0..<documents {
            for s in 0...(d % 3) { text += s == 0 ? "hello world \(d)\n" : "unaffable, a b!\r\n" }
            text += d % 5 == 0 ? " \t\n\n" : "\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func testShardsRoundTripThroughTheDataset() throws {
        let dir = try Fixtures.temporaryDirectory()
        try writeCorpus(dir + "/a.txt", documents: 10)
        try writeCorpus(dir + "/b.txt", documents: 7)
        var reports = 0
        let summary = try prepareText(vocab: tokenizer, out: dir + "/shards",
                                      inputs: TextShardJob.plan(inputs: [dir + "/a.txt", dir + "/b.txt"], prefix: "train"),
                                      progress: { _ in reports += 1 }, log: { _ in })
        XCTAssertEqual(summary.documents, 17)
        XCTAssertEqual(summary.sentences, (0..<10).map { $0 % 3 + 1 }.reduce(0, +) + (0..<7).map { $0 % 3 + 1 }.reduce(0, +))
        XCTAssertGreaterThan(reports, 0)
        let data = try ShardDataset(directory: dir + "/shards", tokenizer: tokenizer, verifyChecksums: true)
        XCTAssertEqual(data.shards.map(\.binPath.lastPathComponentForTest), ["train-00000.bin", "train-00001.bin"])
        XCTAssertEqual(data.documentCount, 17)
        XCTAssertEqual(data.tokenCount, summary.tokens)
        let third = data.sentences(ofDocument: 2)
        XCTAssertEqual(third.count, 3)
        XCTAssertEqual(Array(third[0]), tokenizer.encode("hello world 2"))
        XCTAssertEqual(Array(third[1]), tokenizer.encode("unaffable, a b!"))
        XCTAssertEqual(Array(data.sentences(ofDocument: 11)[0]), tokenizer.encode("hello world 1"), "first of b.txt is global document 11")

        let all = (0..<data.documentCount).flatMap { data.sentences(ofDocument: $0).flatMap { Array($0) } }
        XCTAssertEqual(all.count, data.tokenCount)
        var window = [Int32](repeating: -1, count: 40)
        let start = data.shards[0].tokenCount - 15
        data.copyTokens(from: start, count: 40, into: &window)
        XCTAssertEqual(window, Array(all[start..<(start + 40)]), "a window across the shard boundary")
    }

    /// Progress counts a symbolically linked input by the size of the file it names (not of the link),
    /// so the total, the percentage and the ETA are right.
    func testProgressTotalFollowsSymbolicLinks() throws {
        let dir = try Fixtures.temporaryDirectory()
        try writeCorpus(dir + "/a.txt", documents: 40)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.txt", withDestinationPath: dir + "/a.txt")
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/a.txt")[.size] as! Int
        var last: PrepareTextProgress?
        _ = try prepareText(vocab: tokenizer, out: dir + "/shards",
                            inputs: TextShardJob.plan(inputs: [dir + "/link.txt"], prefix: "train"),
                            progress: { last = $0 }, log: { _ in })
        XCTAssertEqual(last?.bytesTotal, size)
        XCTAssertEqual(last?.bytesDone, size)
    }

    func testVocabularyMismatchIsAnErrorNamingTheManifest() throws {
        let dir = try Fixtures.temporaryDirectory()
        try writeCorpus(dir + "/a.txt", documents: 3)
        try prepareText(vocab: tokenizer, out: dir + "/shards", inputs: TextShardJob.plan(inputs: [dir + "/a.txt"]), log: { _ in })
        let other = try WordPieceTokenizer(tokens: BasicTokenizerTests.vocab + ["extra"])
        XCTAssertThrowsError(try ShardDataset(directory: dir + "/shards", tokenizer: other)) { error in
            guard case DataError.vocabMismatch(let path, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, dir + "/shards/manifest.json")
        }
    }

    func testEvalSplitHoldsOutWholeDocumentsDeterministically() throws {
        let dir = try Fixtures.temporaryDirectory()
        try writeCorpus(dir + "/a.txt", documents: 200)
        let jobs = TextShardJob.plan(inputs: [dir + "/a.txt"])
        let first = try prepareText(vocab: tokenizer, out: dir + "/x", inputs: jobs, evalFraction: 0.2, seed: 7, log: { _ in })
        let second = try prepareText(vocab: tokenizer, out: dir + "/y", inputs: jobs, evalFraction: 0.2, seed: 7, log: { _ in })
        XCTAssertEqual(first.evalDirectory, dir + "/x-eval")
        XCTAssertEqual(first.documents + first.evalDocuments, 200)
        XCTAssertGreaterThan(first.evalDocuments, 20)
        XCTAssertLessThan(first.evalDocuments, 60)
        XCTAssertEqual(try TokenShardManifest.read(directory: dir + "/x-eval").shards.map(\.idx_sha256),
                       try TokenShardManifest.read(directory: dir + "/y-eval").shards.map(\.idx_sha256))
        // Every document appears whole in exactly one split: its number is in its first sentence.
        let train = try ShardDataset(directory: dir + "/x", tokenizer: tokenizer)
        let held = try ShardDataset(directory: dir + "/x-eval", tokenizer: tokenizer)
        var seen: [Int: Int] = [:]
        for set in [train, held] {
            for d in 0..<set.documentCount {
                let sentences = set.sentences(ofDocument: d)
                let number = Int(tokenizer.decode(Array(sentences[0])).split(separator: " ").last!)!
                XCTAssertEqual(sentences.count, number % 3 + 1)
                seen[number, default: 0] += 1
            }
        }
        XCTAssertEqual(seen.count, 200)
        XCTAssertTrue(seen.values.allSatisfy { $0 == 1 })
    }

    func testMissingAndEmptyInputsAreErrorsNamingTheFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        XCTAssertThrowsError(try prepareText(vocab: tokenizer, out: dir + "/s", inputs: [TextShardJob(input: dir + "/none.txt", shard: "a")], log: { _ in })) {
            XCTAssertTrue("\($0)".contains("none.txt"))
        }
        try "\n \n\u{7}\n".write(toFile: dir + "/empty.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try prepareText(vocab: tokenizer, out: dir + "/s", inputs: [TextShardJob(input: dir + "/empty.txt", shard: "a")], log: { _ in })) {
            XCTAssertTrue("\($0)".contains("empty.txt") && "\($0)".contains("empty"))
        }
    }
}

extension String {
    var lastPathComponentForTest: String { (self as NSString).lastPathComponent }
}
