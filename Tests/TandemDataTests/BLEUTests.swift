import Foundation
import XCTest
@testable import TandemData

final class BLEUTests: XCTestCase {
    /// Every case of the fixture written by scripts/fixtures/make_bleu_fixtures.py with sacreBLEU 2.6:
    /// score, precisions, BP and ratio within 1e-9, counts and lengths exactly, and the printed line.
    func testMatchesSacreBLEU() throws {
        let cases = try Fixtures.jsonLines("bleu.jsonl")
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for c in cases {
            let name = try XCTUnwrap(c["name"] as? String)
            let hypotheses = try XCTUnwrap(c["hypotheses"] as? [String]), references = try XCTUnwrap(c["references"] as? [String])
            let s = try BLEU.corpusScore(hypotheses: hypotheses, references: references)
            func double(_ key: String) throws -> Double { try XCTUnwrap((c[key] as? NSNumber)?.doubleValue, "\(name): \(key)") }
            XCTAssertEqual(s.score, try double("score"), accuracy: 1e-9, name)
            XCTAssertEqual(s.brevityPenalty, try double("bp"), accuracy: 1e-9, name)
            XCTAssertEqual(s.ratio, try double("ratio"), accuracy: 1e-9, name)
            let precisions = try XCTUnwrap(c["precisions"] as? [NSNumber]).map(\.doubleValue)
            for (p, q) in zip(s.precisions, precisions) { XCTAssertEqual(p, q, accuracy: 1e-9, name) }
            XCTAssertEqual(s.counts, try XCTUnwrap(c["counts"] as? [Int]), name)
            XCTAssertEqual(s.totals, try XCTUnwrap(c["totals"] as? [Int]), name)
            XCTAssertEqual(s.hypothesisLength, try XCTUnwrap(c["sys_len"] as? Int), name)
            XCTAssertEqual(s.referenceLength, try XCTUnwrap(c["ref_len"] as? Int), name)
            XCTAssertEqual(s.formatted, try XCTUnwrap(c["formatted"] as? String), name)
        }
    }

    /// mteval-v13a's rules one by one: symbols split, period and comma split unless between digits, a dash
    /// split after a digit, apostrophes and inner hyphens kept, entities unescaped, non-ASCII untouched.
    /// Per-segment statistics summed (as ranks sum their shares at evaluation) give the corpus score, and
    /// survive the round trip through the Doubles a reduction carries.
    func testStatisticsAddUpToTheCorpusScore() throws {
        let hypotheses = ["En el principio creó Dios los cielos y la tierra.", "Y la tierra estaba desordenada", "Y dijo Dios: Sea la luz."]
        let references = ["EN el principio crió Dios los cielos y la tierra.", "Y la tierra estaba desordenada y vacía,", "Y dijo Dios: Sea la luz: y fué la luz."]
        var total = BLEU.Statistics()
        for (h, r) in zip(hypotheses, references) { total.add(BLEU.statistics(hypothesis: h, reference: r)) }
        XCTAssertEqual(total.score, try BLEU.corpusScore(hypotheses: hypotheses, references: references))
        XCTAssertEqual(BLEU.Statistics(values: total.values), total)
        XCTAssertGreaterThan(total.score.score, 0)
    }

    /// Punctuation split off by the pre-tokenizer is rejoined as Moses detokenises (Spanish's inverted
    /// marks, Hindi's danda), and other spacing stays.
    func testDetokenizer() {
        XCTAssertEqual(Detokenizer.detokenize("Y dijo : ¿ Qué es esto ? ( dijo él ) ."), "Y dijo: ¿Qué es esto? (dijo él).")
        XCTAssertEqual(Detokenizer.detokenize("फ़ाइल खोलें । ¡ Hola !"), "फ़ाइल खोलें। ¡Hola!")
        XCTAssertEqual(Detokenizer.detokenize("a - b \" c \" 50 %"), "a - b \" c \" 50%")
        XCTAssertEqual(Detokenizer.detokenize(""), "")
    }

    func testTokenize13a() {
        XCTAssertEqual(BLEU.tokenize13a("Hello, world!"), ["Hello", ",", "world", "!"])
        XCTAssertEqual(BLEU.tokenize13a("3.14 and 1,000 but end."), ["3.14", "and", "1,000", "but", "end", "."])
        XCTAssertEqual(BLEU.tokenize13a("10-20 well-known it's"), ["10", "-", "20", "well-known", "it's"])
        XCTAssertEqual(BLEU.tokenize13a("&quot;a&quot; &amp; b<skipped>"), ["\"", "a", "\"", "&", "b"])
        XCTAssertEqual(BLEU.tokenize13a("¿Dónde está? नमस्ते।"), ["¿Dónde", "está", "?", "नमस्ते।"])
        XCTAssertEqual(BLEU.tokenize13a("a..b"), ["a", ".", ".", "b"])
        XCTAssertEqual(BLEU.tokenize13a(" \u{A0} "), [])
    }

    func testCountMismatchIsAnError() {
        XCTAssertThrowsError(try BLEU.corpusScore(hypotheses: ["a"], references: [])) { error in
            XCTAssertTrue("\(error)".contains("1 hypotheses but 0 references"), "\(error)")
        }
    }
}
