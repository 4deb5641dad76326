import Foundation
import XCTest
@testable import TandemData

final class TokenStreamTests: XCTestCase {
    /// The stream is every sentence of every shard in order, each followed by the separator, and any
    /// window of it copies the same tokens as the naive concatenation, across sentence and shard ends.
    func testShardStreamIsTheSentencesWithSeparators() throws {
        let dir = try Fixtures.temporaryDirectory()
        let shards: [[[[Int32]]]] = [[[[1, 2, 3], [4]], [[5, 6]]], [[[7], [8, 9, 10, 11]], [[12, 13]]]]
        for (k, documents) in shards.enumerated() {
            let writer = try TokenShardWriter(directory: dir, name: "s\(k)", vocabSize: 100)
            for document in documents {
                writer.beginDocument()
                for sentence in document { try writer.addSentence(sentence) }
            }
            try writer.finish()
        }
        try TokenShardManifest.build(directory: dir, names: ["s0", "s1"], vocabSize: 100, vocabHash: "h").write(directory: dir)
        let stream = try ShardTokenStream(dataset: ShardDataset(directory: dir, vocabHash: "h"), separator: 99)
        let expected: [Int32] = shards.joined().joined().flatMap { sentence -> [Int32] in sentence + [99] }
        XCTAssertEqual(stream.count, expected.count)
        XCTAssertEqual(stream.vocabSize, 100)
        let out = UnsafeMutablePointer<Int32>.allocate(capacity: expected.count)
        defer { out.deallocate() }
        for start in 0..<expected.count {
            for n in 0...(expected.count - start) {
                stream.copy(from: start, count: n, into: out)
                XCTAssertEqual(Array(UnsafeBufferPointer(start: out, count: n)), Array(expected[start..<(start + n)]),
                               "window \(start)..<\(start + n)")
            }
        }
        XCTAssertThrowsError(try ShardTokenStream(dataset: ShardDataset(directory: dir, vocabHash: "h"), separator: 100)) {
            XCTAssertTrue("\($0)".contains("separator id 100 is outside the vocabulary of 100"), "\($0)")
        }

        // GPT-2's packing: each document's sentences back to back, the end-of-text id before every document.
        let documents = try ShardTokenStream(dataset: ShardDataset(directory: dir, vocabHash: "h"), separator: 99,
                                             segments: .documentsEachPreceded)
        let packed: [Int32] = shards.joined().flatMap { document -> [Int32] in [99] + document.joined() }
        XCTAssertEqual(documents.count, packed.count)
        XCTAssertEqual(documents.segmentCount, 4)
        for start in 0..<packed.count {
            for n in 0...(packed.count - start) {
                documents.copy(from: start, count: n, into: out)
                XCTAssertEqual(Array(UnsafeBufferPointer(start: out, count: n)), Array(packed[start..<(start + n)]),
                               "documents, window \(start)..<\(start + n)")
            }
        }
    }
}
