import XCTest
@testable import TandemData

/// Each BasicTokenizer / WordPiece rule on a tiny vocabulary, so a failure names the rule.
final class BasicTokenizerTests: XCTestCase {
    static let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff", "##able", "##a",
                        "a", "b", "e", "cafe", "!", ",", "'", "s", "中", "国", "##ll", "he", "x", "##x", "。", "naive", "ç", "##b"]
        + (0...9).flatMap { ["\($0)", "##\($0)"] } + ["c"]

    func tokenizer(_ normalization: WordPieceTokenizer.Normalization = .uncased) throws -> WordPieceTokenizer {
        try WordPieceTokenizer(tokens: Self.vocab, normalization: normalization)
    }

    func testCleanTextDropsControlsAndMapsWhitespace() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.tokenize("hel\u{0}lo\u{FFFD}\u{200B}\u{7}"), ["hello"])
        XCTAssertEqual(t.tokenize("hello\tworld\r\nhello\u{A0}world\u{3000}a"), ["hello", "world", "hello", "world", "a"])
        XCTAssertEqual(t.tokenize("he\u{AD}llo"), ["hello"], "soft hyphen (Cf) is dropped")
        var off = WordPieceTokenizer.Normalization.uncased
        off.cleanText = false
        XCTAssertEqual(try tokenizer(off).tokenize("hel\u{0}lo"), ["[UNK]"], "without clean_text NUL stays in the word")
    }

    func testChineseCharactersBecomeWords() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.tokenize("a中国b"), ["a", "中", "国", "b"])
        XCTAssertEqual(t.tokenize("中国。"), ["中", "国", "。"])
        var off = WordPieceTokenizer.Normalization.uncased
        off.handleChineseChars = false
        XCTAssertEqual(try tokenizer(off).tokenize("a中国b"), ["[UNK]"])
    }

    func testLowercaseAndAccentStripping() throws {
        XCTAssertEqual(try tokenizer().tokenize("HeLLo CAFÉ Naïve"), ["hello", "cafe", "naive"])
        XCTAssertEqual(try tokenizer().tokenize("ç"), ["c"], "NFD then Mn removed: ç is c plus a cedilla")
        XCTAssertEqual(try tokenizer(.cased).tokenize("Hello ç"), ["[UNK]", "ç"])
        XCTAssertEqual(try tokenizer(.init(stripAccents: false, lowercase: true)).tokenize("CAFÉ"), ["[UNK]"], "é kept without strip_accents")
    }

    func testPunctuationIsSplit() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.tokenize("hello,world!"), ["hello", ",", "world", "!"])
        XCTAssertEqual(t.tokenize("a's"), ["a", "'", "s"])
        XCTAssertEqual(t.tokenize("hello$world"), ["hello", "[UNK]", "world"], "$ is ASCII punctuation (36) for BERT")
        XCTAssertEqual(t.tokenize("hello«world»"), ["hello", "[UNK]", "world", "[UNK]"], "Unicode Pi/Pf")
    }

    func testGreedyLongestMatchFirst() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.tokenize("unaffable"), ["un", "##aff", "##able"])
        XCTAssertEqual(t.tokenize("hell"), ["he", "##ll"])
        XCTAssertEqual(t.tokenize("xxx"), ["x", "##x", "##x"])
        XCTAssertEqual(t.tokenize("abb"), ["a", "##b", "##b"])
    }

    func testUnknownWords() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.tokenize("unaffablez hello"), ["[UNK]", "hello"], "an unmatched rest makes the whole word [UNK]")
        XCTAssertEqual(t.tokenize(String(repeating: "x", count: 100)), ["x"] + [String](repeating: "##x", count: 99))
        XCTAssertEqual(t.tokenize(String(repeating: "x", count: 101)), ["[UNK]"], "more than 100 scalars")
        XCTAssertEqual(t.tokenize(String(repeating: "x", count: 10_000) + " a"), ["[UNK]", "a"])
    }

    func testSpecialTokensInTextAndAround() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.tokenize("hello[MASK]world [SEP]"), ["hello", "[MASK]", "world", "[SEP]"])
        XCTAssertEqual(t.encode("hello", addSpecialTokens: true), [2, 5, 3])
        let pair = t.encodePair("hello", "world")
        XCTAssertEqual(pair.ids, [2, 5, 3, 6, 3])
        XCTAssertEqual(pair.typeIDs, [0, 0, 0, 1, 1])
    }

    func testInvalidUTF8BecomesReplacementAndIsDropped() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.encode(utf8: Array("hel".utf8) + [0xFF, 0xC3] + Array("lo".utf8)), t.encode("hello"))
        XCTAssertEqual(t.encode(utf8: [0xE2, 0x82] + Array(" a".utf8)), t.encode("a"))
        let f = decodeUTF8([0xE2, 0x41].withUnsafeBytes { UnsafeRawBufferPointer(start: $0.baseAddress, count: 2) }, at: 0)
        XCTAssertEqual(f.0, 0xFFFD)
        XCTAssertEqual(f.1, 1, "a bad continuation byte is not swallowed")
    }

    func testDecodeJoinsPiecesAndCleansUp() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.decode(t.encode("unaffable hello , world!", addSpecialTokens: true)), "unaffable hello, world!")
    }

    func testVocabTxtLoadingErrorsNameTheFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        let path = dir + "/vocab.txt"
        try "a\nb\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try WordPieceTokenizer(vocabFile: path)) { XCTAssertTrue("\($0)".contains(path)) }
        XCTAssertThrowsError(try WordPieceTokenizer(vocabFile: dir + "/missing.txt")) { XCTAssertTrue("\($0)".contains("missing.txt")) }
    }
}

final class TokenizeLinesTests: XCTestCase {
    func testOneLineOfIdsPerInputLine() throws {
        let t = try WordPieceTokenizer(tokens: BasicTokenizerTests.vocab)
        let dir = try Fixtures.temporaryDirectory()
        try "hello world\n\nunaffable!\nhello".write(toFile: dir + "/in.txt", atomically: true, encoding: .utf8)
        let input = open(dir + "/in.txt", O_RDONLY)
        let output = open(dir + "/out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        defer { close(input) }
        let counts = try t.tokenizeLines(input: input, output: output, addSpecialTokens: true)
        close(output)
        XCTAssertEqual(counts.lines, 4)
        XCTAssertEqual(counts.bytes, 29)
        XCTAssertEqual(try String(contentsOfFile: dir + "/out.txt", encoding: .utf8), "2 5 6 3\n2 3\n2 7 8 9 15 3\n2 5 3\n")
    }
}
