import Foundation
import XCTest
@testable import TandemData

final class VocabularyOverlapTests: XCTestCase {
    /// Two vocab.txt files of 4 and 5 ordinary tokens sharing 2, specials and [unusedN] on both sides: the
    /// specials are left out and the overlap is shared / each size.
    func testSharedTokensOfTwoVocabTxtFilesLeaveSpecialsOut() throws {
        let dir = try Fixtures.temporaryDirectory()
        let a = dir + "/a.txt", b = dir + "/b.txt"
        try "[PAD]\n[unused0]\n[unused1]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nprotein\n##ase\ngene \nthe\n".write(toFile: a, atomically: true, encoding: .utf8)
        try "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ngene\nking\n##eth\nlord\n[unused]\n".write(toFile: b, atomically: true, encoding: .utf8)
        let overlap = VocabularyOverlap(first: try VocabularyOverlap.tokens(path: a), second: try VocabularyOverlap.tokens(path: b))
        XCTAssertEqual(overlap.first, ["protein", "##ase", "gene", "the"])
        // "[unused]" has no number: an ordinary token.
        XCTAssertEqual(overlap.second, ["the", "gene", "king", "##eth", "lord", "[unused]"])
        XCTAssertEqual(overlap.shared, 2)
        XCTAssertEqual(overlap.ofFirst, 0.5)
        XCTAssertEqual(overlap.ofSecond, 2.0 / 6.0, accuracy: 1e-12)
    }

    /// A BPE tokenizer.json: model.vocab less the added tokens marked special and the known specials.
    func testTokenizerJSONVocabulary() throws {
        let dir = try Fixtures.temporaryDirectory()
        let path = dir + "/tokenizer.json"
        try #"{"model": {"type": "BPE", "vocab": {"<|endoftext|>": 0, "<sep>": 1, "Ġthe": 2, "gene": 3}}, "added_tokens": [{"id": 1, "content": "<sep>", "special": true}]}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try VocabularyOverlap.tokens(path: path), ["Ġthe", "gene"])
    }

    /// A missing file and a vocabulary of special tokens alone are errors naming the file.
    func testMissingAndEmptyVocabulariesNameTheFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        let missing = dir + "/missing/vocab.txt", empty = dir + "/vocab.txt"
        try "[PAD]\n[UNK]\n\n".write(toFile: empty, atomically: true, encoding: .utf8)
        for (path, reason) in [(missing, "cannot read"), (empty, "empty vocabulary")] {
            XCTAssertThrowsError(try VocabularyOverlap.tokens(path: path)) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(reason), "\(error)")
            }
        }
    }
}
