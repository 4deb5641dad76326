import Foundation
import XCTest
@testable import TandemData

final class GettextCatalogTests: XCTestCase {
    /// Fixtures/gettext/sample.mo, compiled by msgfmt from sample.po beside it.
    func testReadsMsgfmtOutput() throws {
        let catalog = try GettextCatalog(path: Fixtures.path("gettext/sample.mo"))
        XCTAssertEqual(catalog.entries.count, 8)   // the fuzzy entry is not compiled
        XCTAssertEqual(catalog.entries[0].id, "")  // the header
        let save = try XCTUnwrap(catalog.entries.first { $0.context == "dialog|save" })
        XCTAssertEqual(save.id, "_Save As...")
        XCTAssertEqual(save.translations, ["इस रूप में सहेजें (_A)..."])
        let plural = try XCTUnwrap(catalog.entries.first { $0.pluralID != nil })
        XCTAssertEqual(plural.id, "One file")
        XCTAssertEqual(plural.pluralID, "%d files")
        XCTAssertEqual(plural.translations, ["एक फ़ाइल", "%d फ़ाइलें"])
    }

    /// Header, untranslated, identical, format-only and plural entries dropped; accelerators stripped.
    func testTranslationPairs() throws {
        let pairs = translationPairs(of: try GettextCatalog(path: Fixtures.path("gettext/sample.mo")))
        XCTAssertEqual(Set(pairs.map { "\($0.source) -> \($0.target)" }),
                       ["Save As... -> इस रूप में सहेजें...", "Cancel -> रद्द करें", "Find & Replace now -> ढूँढें & बदलें"])
    }

    /// The same catalogue with every integer big-endian reads the same.
    func testBigEndian() throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("gettext/sample.mo"))))
        let little = try GettextCatalog(bytes: bytes, path: "le.mo")
        func swapWord(at i: Int) { bytes[i..<(i + 4)].reverse() }
        func u32(_ i: Int) -> Int { Int(bytes[i]) | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 24 }
        let n = u32(8), tables = [u32(12), u32(16)]
        for table in tables { for w in 0..<(2 * n) { swapWord(at: table + 4 * w) } }
        for w in 0..<7 { swapWord(at: 4 * w) }
        XCTAssertEqual(try GettextCatalog(bytes: bytes, path: "be.mo").entries, little.entries)
    }

    func testBadFilesNameThemselves() {
        XCTAssertThrowsError(try GettextCatalog(bytes: [1, 2, 3], path: "x.mo")) { XCTAssertTrue("\($0)".hasPrefix("x.mo: truncated"), "\($0)") }
        XCTAssertThrowsError(try GettextCatalog(bytes: [UInt8](repeating: 0, count: 28), path: "y.mo")) {
            XCTAssertTrue("\($0)".contains("y.mo: not a gettext .mo file"), "\($0)")
        }
        var header: [UInt8] = [0xDE, 0x12, 0x04, 0x95, 0, 0, 0, 0, 9, 0, 0, 0, 28, 0, 0, 0, 28, 0, 0, 0]
        header += [UInt8](repeating: 0, count: 8)
        XCTAssertThrowsError(try GettextCatalog(bytes: header, path: "z.mo")) { XCTAssertTrue("\($0)".contains("z.mo: string tables"), "\($0)") }
    }

    func testAcceleratorsAndPlaceholders() {
        XCTAssertEqual(UIStrings.stripAccelerators("~Width:", gtkMnemonics: false), "Width:")
        XCTAssertEqual(UIStrings.stripAccelerators("चौड़ाई (~W):", gtkMnemonics: false), "चौड़ाई:")
        XCTAssertEqual(UIStrings.stripAccelerators("Mouse pointer as _pen", gtkMnemonics: true), "Mouse pointer as pen")
        XCTAssertEqual(UIStrings.stripAccelerators("file__name %EXTENSION_NAME", gtkMnemonics: true), "file_name %EXTENSION_NAME")
        XCTAssertEqual(UIStrings.stripAccelerators("%EXTENSION_NAME", gtkMnemonics: false), "%EXTENSION_NAME")
        XCTAssertEqual(UIStrings.stripAccelerators("&File and Find & Replace", gtkMnemonics: false), "File and Find & Replace")
        XCTAssertFalse(UIStrings.hasWords("%1 $(ARG1) $name$ {0} %PRODUCTNAME 200%"))
        XCTAssertTrue(UIStrings.hasWords("Add-On %num%"))
    }
}

final class BibleAndHelpTests: XCTestCase {
    /// A Psalm title printed before verse 1 belongs to it; diatheke's copy before verse 2 does not.
    /// Strong's numbers, other tags, pilcrows and the module line go; an empty verse is skipped.
    func testSwordParsing() throws {
        let output = """
        Genesis 1:1: In the <w savlm="strong:H7225">beginning</w> God <transChange type="added">was</transChange>. <div eID="gen3" type="x-p"/>
        Genesis 1:2: ¶ And &lt;the&gt; earth.
        <title canonical="true" type="psalm">A <w savlm="strong:H4210">Psalm</w> of David.</title> <lg sID="g1"/> <l level="1" sID="g2"/> Psalms 3:1: LORD, how <l eID="g2" level="1"/>
        <title canonical="true" type="psalm">A <w savlm="strong:H4210">Psalm</w> of David.</title> <lg sID="g1"/> <l level="1" sID="g2"/> Psalms 3:2: Many <l eID="g3" level="1"/>
        I Samuel 23:29: <w savlm="strong:H1"></w>
        (engKJV2006eb)
        """
        let verses = try SwordBible.parse(output, name: "kjv")
        XCTAssertEqual(verses.map(\.reference), ["Genesis 1:1", "Genesis 1:2", "Psalms 3:1", "Psalms 3:2"])
        XCTAssertEqual(verses.map(\.text), ["In the beginning God was.", "And <the> earth.", "A Psalm of David. LORD, how", "Many"])
        XCTAssertThrowsError(try SwordBible.parse("Genesis 1:1: a\nno reference here\n", name: "kjv")) {
            XCTAssertTrue("\($0)".hasPrefix("kjv:2: no verse reference"), "\($0)")
        }
        let spanish = try SwordBible.parse("Psalms 3:2: Muchos\nGenesis 1:1: EN el principio\n", name: "rv")
        let documents = SwordBible.align(source: verses, target: spanish)
        XCTAssertEqual(documents, [ParallelDocument(name: "Genesis", pairs: [SentencePair(source: "In the beginning God was.", target: "EN el principio")]),
                                   ParallelDocument(name: "Psalms", pairs: [SentencePair(source: "Many", target: "Muchos")])])
    }

    /// The real modules, when launch/common.sh has installed them: Psalm 3's title joins verse 1 in both.
    func testRealBiblesAlignPsalmTitles() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/diatheke"),
              FileManager.default.fileExists(atPath: "/usr/share/sword/mods.d/spaRV1909eb.conf") else {
            throw XCTSkip("diatheke and sword-text-kjv/sparv are not installed")
        }
        func verses(_ module: String) throws -> [SwordBible.Verse] {
            let process = Process(), pipe = Pipe()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/diatheke")
            process.arguments = ["-b", module, "-k", "Psalms 2:12-4:2"]
            process.standardOutput = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return try SwordBible.parse(String(decoding: data, as: UTF8.self), name: module)
        }
        let pairs = SwordBible.align(source: try verses("engKJV2006eb"), target: try verses("spaRV1909eb")).flatMap(\.pairs)
        XCTAssertEqual(pairs.count, 11)
        XCTAssertTrue(pairs[1].source.hasPrefix("A Psalm of David, when he fled from Absalom his son. LORD, how are they increased"), pairs[1].source)
        XCTAssertTrue(pairs[1].target.hasPrefix("Salmo de David, cuando huía"), pairs[1].target)
        XCTAssertTrue(pairs[2].source.hasPrefix("Many there be which say"), pairs[2].source)
        XCTAssertFalse(pairs.contains { $0.source.contains("<") || $0.source.contains("strong") || $0.source.contains("¶") })
    }

    func testHelpParagraphsAlignByID() {
        let english = """
        <h1 id="hd_id1" dir="auto"><a name="x"></a>Creating Lists</h1>
        <p id="par_id2" class="paragraph">Choose <span class="menuitem">Tools</span> &amp; go.</p>
        <p id="par_id3">Untranslated text.</p><p id="par_id4">Only in English.</p><p id="bm_id5">bookmark</p>
        """
        let hindi = """
        <h1 id="hd_id1" dir="auto"><a name="x"></a>सूची बनाना</h1>
        <p id="par_id2" class="paragraph">चुनें <span class="menuitem">Tools</span>
         &amp; जाएँ.</p>
        <p id="par_id3">Untranslated text.</p><p id="bm_id5">बुकमार्क</p>
        """
        XCTAssertEqual(LibreOfficeHelp.align(english: english, translated: hindi),
                       [SentencePair(source: "Creating Lists", target: "सूची बनाना"),
                        SentencePair(source: "Choose Tools & go.", target: "चुनें Tools & जाएँ.")])
    }
}

final class ParallelCorpusTests: XCTestCase {
    private func documents() -> [ParallelDocument] {
        (0..<40).map { d in ParallelDocument(name: "doc\(d)", pairs: (0..<(1 + d % 7)).map { SentencePair(source: "s\(d).\($0)", target: "t\(d).\($0)") }) }
    }

    /// Whole documents, each in one split, the held-out ones at least the asked fractions, the same for the
    /// same seed and different for another.
    func testSplitByDocument() {
        let docs = documents()
        let total = docs.reduce(0) { $0 + $1.pairs.count }
        let split = splitByDocument(docs, seed: 3, validFraction: 0.1, testFraction: 0.1)
        XCTAssertEqual(Set(split.values.flatMap { $0.map(\.name) }).count, docs.count)
        XCTAssertEqual(split.values.reduce(0) { $0 + $1.count }, docs.count)
        for part in [CorpusSplit.valid, .test] {
            let pairs = split[part]!.reduce(0) { $0 + $1.pairs.count }
            XCTAssertGreaterThanOrEqual(Double(pairs), 0.1 * Double(total))
            XCTAssertLessThan(Double(pairs), 0.1 * Double(total) + 7)
        }
        XCTAssertEqual(splitByDocument(docs, seed: 3, validFraction: 0.1, testFraction: 0.1), split)
        XCTAssertNotEqual(splitByDocument(docs, seed: 4, validFraction: 0.1, testFraction: 0.1)[.test], split[.test])
    }

    func testWriteAndReadBack() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let split = splitByDocument(documents(), seed: 0)
        let manifest = try writeParallelCorpus(directory: directory, pair: "xx-yy", seed: 0,
                                               sources: [.init(name: "test", packages: ["p": "1"], license: "CC0", documents: 40, pairs: 160)],
                                               splits: split)
        XCTAssertEqual(try ParallelCorpusManifest.read(directory: directory), manifest)
        for part in CorpusSplit.allCases {
            let pairs = try readParallelText(sourcePath: "\(directory)/\(part.rawValue).src", targetPath: "\(directory)/\(part.rawValue).tgt")
            XCTAssertEqual(pairs, split[part]!.flatMap(\.pairs))
            XCTAssertEqual(manifest.splits[part.rawValue]?.pairs, pairs.count)
            XCTAssertEqual(manifest.files["\(part.rawValue).src"], try sha256(ofFile: "\(directory)/\(part.rawValue).src"))
        }
    }

    /// A misaligned corpus fails naming the file and line: an empty line on either side, or line counts
    /// that differ.
    func testMisalignedCorpusErrors() throws {
        let directory = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let src = "\(directory)/a.src", tgt = "\(directory)/a.tgt"
        func check(_ source: String, _ target: String, _ expected: String) throws {
            try source.write(toFile: src, atomically: true, encoding: .utf8)
            try target.write(toFile: tgt, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try readParallelText(sourcePath: src, targetPath: tgt)) { XCTAssertTrue("\($0)".hasPrefix(expected), "\($0)") }
        }
        try check("a\nb\nc\n", "x\ny\n", "\(src):3: 3 lines but \(tgt) has 2")
        try check("a\nb\n", "x\ny\nz\n", "\(tgt):3: 3 lines but \(src) has 2")
        try check("a\n \nc\n", "x\ny\nz\n", "\(src):2: empty line")
        try check("a\nb\n", "x\n\n", "\(tgt):2: empty line")
        XCTAssertEqual(normalizeWhitespace("  a\t b\u{A0}\u{2028}c \r"), "a b c")
    }
}
