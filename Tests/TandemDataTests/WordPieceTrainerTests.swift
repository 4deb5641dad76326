import Foundation
import XCTest
@testable import TandemData

final class WordPieceTrainerTests: XCTestCase {
    /// The corpus of HF's BPE examples; HF tokenizers 0.23 gives exactly this vocabulary (in one of its
    /// hash orders: the ids of ##n and ##g swap between its runs).
    func testMergesFollowTheReference() throws {
        var trainer = WordPieceTrainer(vocabSize: 30, minFrequency: 5)
        trainer.feed(String(repeating: "hug ", count: 10) + String(repeating: "pug ", count: 5) + String(repeating: "Pun ", count: 12))
        trainer.feed(String(repeating: "bun ", count: 4) + String(repeating: "hugs ", count: 5))
        XCTAssertEqual(trainer.train(), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b", "g", "h", "n", "p", "s", "u",
                                         "##u", "##n", "##g", "##s", "##ug", "##un", "hug", "pun", "pug", "hugs"])
    }

    /// Devanagari: a vowel sign (ि, U+093F) joins the "#" before it in one grapheme cluster, so "##ि" does
    /// not have the Character prefix "##". Merges must strip the prefix by scalars ("द" + "##ि" -> "दि"), or
    /// the vocabulary fills with pieces like "द##िन" that no text contains (and Hindi took three times the
    /// tokens); decoding glues such pieces to the word as well.
    func testMergesStripThePrefixOfCombiningMarks() throws {
        var trainer = WordPieceTrainer(vocabSize: 40, minFrequency: 2, normalization: .cased)
        trainer.feed(String(repeating: "दिन दिनों हिंदी ", count: 5))
        let tokens = trainer.train()
        for t in tokens { XCTAssertFalse((t.droppingScalarPrefix("##") ?? t).contains("#"), "\(t)") }
        XCTAssertTrue(tokens.contains("दिन"), "\(tokens)")
        let tokenizer = try WordPieceTokenizer(tokens: tokens, normalization: .cased)
        let ids = tokenizer.encode("दिन हिंदी")
        XCTAssertEqual(ids.count, 2, "\(ids.map { tokenizer.tokens[Int($0)] })")
        XCTAssertEqual(tokenizer.decode(tokenizer.encode("दिनों")), "दिनों", "\(tokenizer.encode("दिनों").map { tokenizer.tokens[Int($0)] })")
    }

    func testVocabSizeMinFrequencyAndAlphabetLimit() {
        var trainer = WordPieceTrainer(vocabSize: 18, minFrequency: 1)
        trainer.feed("hug hug hug pug pun pun bun hugs")
        XCTAssertEqual(trainer.train().count, 18, "16 specials, characters and ## pieces, then 2 merges")
        trainer.vocabSize = 10
        XCTAssertEqual(trainer.train().count, 16, "as in HF, the characters are kept even past the size")
        trainer.vocabSize = 1000
        trainer.minFrequency = 100
        XCTAssertEqual(trainer.train().suffix(2), ["##g", "##s"], "no pair is frequent enough: alphabet and ## pieces only")
        var limited = WordPieceTrainer(vocabSize: 1000, minFrequency: 100, limitAlphabet: 2)
        limited.feed("aaa bb c, d")
        XCTAssertEqual(limited.train(), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##a", "##b"],
                       "the two most frequent characters are kept; the others vanish from the words")
    }

    func testTrainedVocabularyTokenizesItsCorpusAndIsWritten() throws {
        let dir = try Fixtures.temporaryDirectory()
        let corpus = dir + "/corpus.txt"
        try "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.\n"
            .write(toFile: corpus, atomically: true, encoding: .utf8)
        var trainer = WordPieceTrainer(vocabSize: 60, minFrequency: 2)
        let tokens = try trainer.train(files: [corpus], output: dir + "/vocab.txt")
        XCTAssertEqual(Array(tokens.prefix(5)), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        XCTAssertTrue(tokens.contains("the"))
        let tokenizer = try WordPieceTokenizer(vocabFile: dir + "/vocab.txt")
        XCTAssertEqual(tokenizer.tokens, tokens)
        XCTAssertFalse(tokenizer.encode("And the earth was without form").contains(tokenizer.unkID))
        XCTAssertThrowsError(try trainer.train(files: [dir + "/missing.txt"], output: dir + "/v.txt")) { XCTAssertTrue("\($0)".contains("missing.txt")) }
    }
}
