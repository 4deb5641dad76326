import Foundation
import XCTest
@testable import TandemData

final class TokenShardTests: XCTestCase {
    func testRoundTripDocumentsSentencesTokens() throws {
        let dir = try Fixtures.temporaryDirectory()
        for vocabSize in [30522, 70000] {
            let writer = try TokenShardWriter(directory: dir, name: "s\(vocabSize)", vocabSize: vocabSize)
            let documents: [[[Int32]]] = [[[1, 2, 3], [4]], [[5, 6]], [[Int32(vocabSize - 1)], [7, 8, 9, 10], [11]]]
            for document in documents {
                writer.beginDocument()
                for sentence in document { try writer.addSentence(sentence) }
                try writer.addSentence([])
            }
            writer.beginDocument()
            try writer.finish()
            let reader = try TokenShardReader(directory: dir, name: "s\(vocabSize)")
            XCTAssertEqual(reader.tokenWidth, vocabSize <= 65536 ? 2 : 4)
            XCTAssertEqual(reader.documentCount, 3)
            XCTAssertEqual(reader.sentenceCount, 6)
            XCTAssertEqual(reader.tokenCount, 12)
            let back = (0..<reader.documentCount).map { d in reader.sentences(ofDocument: d).map { Array(reader.tokens(ofSentence: $0)) } }
            XCTAssertEqual(back, documents)
        }
    }

    func testTruncatedShardIsAnErrorNamingTheFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        let writer = try TokenShardWriter(directory: dir, name: "t", vocabSize: 100)
        writer.beginDocument()
        try writer.addSentence([1, 2, 3, 4])
        try writer.finish()
        let bin = dir + "/t.bin", idx = dir + "/t.idx"
        let full = try Data(contentsOf: URL(fileURLWithPath: bin))
        try full.prefix(full.count - 2).write(to: URL(fileURLWithPath: bin))
        XCTAssertThrowsError(try TokenShardReader(directory: dir, name: "t")) { error in
            XCTAssertTrue("\(error)".contains(bin) && "\(error)".contains("truncated"), "\(error)")
        }
        try full.write(to: URL(fileURLWithPath: bin))
        let index = try Data(contentsOf: URL(fileURLWithPath: idx))
        try index.prefix(index.count - 8).write(to: URL(fileURLWithPath: idx))
        XCTAssertThrowsError(try TokenShardReader(directory: dir, name: "t")) { error in
            XCTAssertTrue("\(error)".contains(idx) && "\(error)".contains("truncated"), "\(error)")
        }
        try Data("not a shard".utf8).write(to: URL(fileURLWithPath: bin))
        XCTAssertThrowsError(try TokenShardReader(directory: dir, name: "t")) { XCTAssertTrue("\($0)".contains(bin)) }
    }

    func testSHA256KnownAnswers() {
        XCTAssertEqual(SHA256.hex(SHA256.hash([UInt8]())), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(SHA256.hash(Array("abc".utf8))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var streamed = SHA256()
        let million = [UInt8](repeating: 0x61, count: 1_000_000)
        for start in stride(from: 0, to: million.count, by: 999) { streamed.update(Array(million[start..<min(start + 999, million.count)])) }
        XCTAssertEqual(streamed.finalizeHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
