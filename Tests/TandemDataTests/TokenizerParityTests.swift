import Foundation
import XCTest
@testable import TandemData

/// Ids against HF tokenizers on real and adversarial lines (fixtures written by scripts/tokenizer/make_fixture.py).
final class TokenizerParityTests: XCTestCase {
    func testMiniLMVocabMatchesHFOnEveryFixtureLine() throws {
        let uncased = try WordPieceTokenizer(vocabFile: Fixtures.path("minilm-vocab.txt"))
        let cased = try WordPieceTokenizer(vocabFile: Fixtures.path("minilm-vocab.txt"), cased: true)
        let records = try Fixtures.jsonLines("parity.jsonl")
        XCTAssertGreaterThan(records.count, 250)
        var mismatches: [String] = []
        for (n, record) in records.enumerated() {
            let bytes: [UInt8]
            if let hex = record["hex"] as? String { bytes = Fixtures.bytes(fromHex: hex) } else { bytes = Array((record["text"] as! String).utf8) }
            if uncased.encode(utf8: bytes) != Fixtures.ints(record["ids"]) { mismatches.append("uncased line \(n + 1)") }
            if cased.encode(utf8: bytes) != Fixtures.ints(record["cased"]) { mismatches.append("cased line \(n + 1)") }
            if let text = record["text"] as? String {
                XCTAssertEqual(uncased.encode(text), uncased.encode(utf8: bytes), "String and byte entry points differ on line \(n + 1)")
            }
        }
        XCTAssertEqual(mismatches, [])
    }

    func testTokenizerJSONReadsNormalizerAndVocabulary() throws {
        let tokenizer = try WordPieceTokenizer(tokenizerJSON: Fixtures.path("tokenizer-small.json"))
        XCTAssertEqual(tokenizer.normalization, WordPieceTokenizer.Normalization(stripAccents: false, lowercase: true))
        XCTAssertEqual(tokenizer.maxInputCharsPerWord, 100)
        XCTAssertEqual(tokenizer.vocabSize, 30241, "largest id kept in the small file + 1")
        for (n, record) in try Fixtures.jsonLines("small.jsonl").enumerated() {
            let text = record["text"] as! String
            XCTAssertEqual(tokenizer.encode(text), Fixtures.ints(record["ids"]), "line \(n + 1)")
            XCTAssertEqual(tokenizer.encodePair(text, "second segment").ids, Fixtures.ints(record["pair"]), "pair line \(n + 1)")
            XCTAssertEqual(tokenizer.decode(Fixtures.ints(record["pair"])), record["decoded"] as? String, "decoded line \(n + 1)")
        }
    }

    func testVocabHashIsTheSameFromVocabTxtAndItsBytes() throws {
        let tokenizer = try WordPieceTokenizer(vocabFile: Fixtures.path("minilm-vocab.txt"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("minilm-vocab.txt")))
        XCTAssertEqual(tokenizer.vocabHash, SHA256.hex(SHA256.hash([UInt8](bytes))))
    }
}

final class TokenizerJSONErrorTests: XCTestCase {
    func testUnsupportedPipelinesAreErrorsNamingTheFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        let good = try String(contentsOfFile: Fixtures.path("tokenizer-small.json"), encoding: .utf8)
        for (name, text) in [("bpe.json", good.replacingOccurrences(of: "\"type\": \"WordPiece\", \"unk_token\"", with: "\"type\": \"BPE\", \"unk_token\"")),
                             ("norm.json", good.replacingOccurrences(of: "\"BertNormalizer\"", with: "\"NFKC\"")),
                             ("broken.json", String(good.prefix(100)))] {
            XCTAssertNotEqual(text, good, name)
            try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try WordPieceTokenizer(tokenizerJSON: dir + "/" + name)) { XCTAssertTrue("\($0)".contains(name), "\($0)") }
        }
    }
}
