import Foundation
import XCTest
import TandemData

/// GPT-2's byte-level BPE against HF tokenizers (the fixtures of scripts/tokenizer/make_bpe_fixture.py): a
/// tokenizer.json trained by HF gives HF's ids on real and adversarial lines; `BPETrainer` learns the same
/// vocabulary and merges as HF's trainer from the same text; decoding gives back the bytes; what Tandem
/// does not implement, and merges that do not parse, are errors naming the file.
final class ByteLevelBPETests: XCTestCase {
    static let tokenizerPath = Fixtures.path("bpe/tokenizer.json")

    func testIDsEqualHFTokenizers() throws {
        let tokenizer = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerPath)
        let cases = try Fixtures.jsonLines("bpe/parity.jsonl")
        XCTAssertGreaterThan(cases.count, 250)
        for c in cases {
            let text = c["text"] as! String, expected = (c["ids"] as! [NSNumber]).map { $0.int32Value }
            XCTAssertEqual(tokenizer.encode(text), expected, text)
        }
    }

    func testDecodeGivesBackTheText() throws {
        let tokenizer = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerPath)
        for c in try Fixtures.jsonLines("bpe/parity.jsonl") {
            let text = c["text"] as! String
            XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text)
        }
        XCTAssertEqual(tokenizer.encode("<|endoftext|>"), [tokenizer.endOfTextID!])
    }

    func testTrainerLearnsHFsMergesAndVocabulary() throws {
        let trained = try BPETrainer(vocabSize: 900).train(words: BPETrainer.countWords(files: [Fixtures.path("bpe/train.txt")]))
        let hf = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.tokenizerPath))) as! [String: Any]
        let model = hf["model"] as! [String: Any]
        let merges = (model["merges"] as! [Any]).map { m -> String in (m as? String) ?? (m as! [String]).joined(separator: " ") }
        XCTAssertEqual(trained.merges.map { "\($0.0) \($0.1)" }, merges)
        XCTAssertEqual(trained.vocab, (model["vocab"] as! [String: NSNumber]).mapValues { $0.int32Value })
    }

    func testTrainedFilesReloadWithTheSameIDs() throws {
        let dir = try Fixtures.temporaryDirectory()
        let trained = try BPETrainer(vocabSize: 700).train(files: [Fixtures.path("bpe/train.txt")], directory: dir)
        let again = try BPETrainer(vocabSize: 700).train(files: [Fixtures.path("bpe/train.txt")], directory: dir + "/again")
        XCTAssertEqual(trained.vocabHash, again.vocabHash, "training is deterministic")
        let pair = try ByteLevelBPETokenizer(vocabJSON: dir + "/vocab.json", mergesTXT: dir + "/merges.txt")
        for c in try Fixtures.jsonLines("bpe/parity.jsonl") {
            let text = c["text"] as! String
            XCTAssertEqual(pair.encode(text), trained.encode(text), text)
        }
        XCTAssertEqual(trained.vocabSize, 700)
    }

    /// RoBERTa's variant (`tandem vocab --type bpe --roberta`): its special tokens first, a RobertaProcessing
    /// post-processor in tokenizer.json (HF frames sequences as <s> ... </s>), and `special` framing lines
    /// the same way in `tandem tokenize`; GPT-2's adds nothing.
    func testRobertaSpecialTokensComeFirstAndFrameSequences() throws {
        let dir = try Fixtures.temporaryDirectory()
        let specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        let roberta = try BPETrainer(vocabSize: 600, specialTokens: specials).train(files: [Fixtures.path("bpe/train.txt")], directory: dir)
        XCTAssertEqual(Array(roberta.tokens.prefix(5)), specials)
        let json = try String(contentsOfFile: dir + "/tokenizer.json", encoding: .utf8)
        XCTAssertTrue(json.contains("\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", 2], \"cls\": [\"<s>\", 0]"), json.prefix(900).description)
        let reloaded = try ByteLevelBPETokenizer(tokenizerJSON: dir + "/tokenizer.json")
        XCTAssertEqual(reloaded.vocabHash, roberta.vocabHash)
        func tokenize(_ t: ByteLevelBPETokenizer, special: Bool) -> [Int32] {
            var ids: [Int32] = []
            Array("In the beginning".utf8).withUnsafeBytes { t.appendTokenizeIDs(utf8: $0, special: special, to: &ids) }
            return ids
        }
        let plain = tokenize(roberta, special: false)
        XCTAssertEqual(tokenize(roberta, special: true), [0] + plain + [2])
        let gpt2 = try BPETrainer(vocabSize: 600).train(files: [Fixtures.path("bpe/train.txt")], directory: dir + "/gpt2")
        XCTAssertEqual(tokenize(gpt2, special: true), tokenize(gpt2, special: false))
    }

    /// prepare-text hands byte-level BPE whole documents: the lines' ids back to back are the encoding of
    /// the document's text (every line ended by "\n"), also where a pre-token spans a line end ("  \n "
    /// before an indented line, which encoding line by line would cut), and every line gets the ids of the
    /// pre-tokens that start in it.
    func testDocumentLinesAreTheWholeDocumentsEncoding() throws {
        let tokenizer = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerPath)
        let documents = [["In the beginning  ", "  God created\tthe heaven", "and the earth.", " x", "'s 'S", "end   "],
                         ["x  ", "B"], ["x", "  B", "<|endoftext|> after", "\u{3000}ideographic space"], ["one line"]]
        for document in documents {
            let perLine = tokenizer.documentLineIDs(document.map { Array($0.utf8) })
            XCTAssertEqual(perLine.count, document.count)
            XCTAssertEqual(Array(perLine.joined()), tokenizer.encode(document.map { $0 + "\n" }.joined()), "\(document)")
            XCTAssertFalse(perLine.contains { $0.isEmpty }, "every line has a token: \(perLine)")
        }
        // "x  \nB": the whole text splits "  " | "\n" where the line alone would give "  \n".
        let whole = tokenizer.documentLineIDs([Array("x  ".utf8), Array("B".utf8)])
        XCTAssertEqual(tokenizer.decode(whole[0]), "x  \n")
        XCTAssertEqual(whole[0], tokenizer.encode("x") + tokenizer.encode("  ") + tokenizer.encode("\n"))
    }

    /// prepare-text with a tokenizer.json writes each document's encoding, a sentence per line.
    func testShardsHoldEachDocumentsEncoding() throws {
        let tokenizer = try ByteLevelBPETokenizer(tokenizerJSON: Self.tokenizerPath)
        let dir = try Fixtures.temporaryDirectory()
        let documents = [["In the beginning  ", "  God created"], ["x  ", "B", "\tC"], ["<|endoftext|> last"]]
        let text = documents.map { $0.joined(separator: "\n") + "\n" }.joined(separator: "\n")
        try text.write(toFile: dir + "/text.txt", atomically: true, encoding: .utf8)
        try prepareText(vocab: tokenizer, out: dir + "/shards", inputs: TextShardJob.plan(inputs: [dir + "/text.txt"]), log: { _ in })
        let dataset = try ShardDataset(directory: dir + "/shards", tokenizer: tokenizer)
        XCTAssertEqual(dataset.documentCount, documents.count)
        for (d, document) in documents.enumerated() {
            let sentences = dataset.sentences(ofDocument: d)
            XCTAssertEqual(sentences.count, document.count)
            XCTAssertEqual(sentences.flatMap { Array($0) }, tokenizer.encode(document.map { $0 + "\n" }.joined()), "document \(d)")
        }
    }

    func testPreTokenizationFollowsGPT2sPattern() {
        func pieces(_ s: String) -> [String] {
            let scalars = Array(s.unicodeScalars)
            var out: [String] = []
            ByteLevel.preTokenize(scalars) { r in var t = ""; t.unicodeScalars.append(contentsOf: scalars[r]); out.append(t) }
            return out
        }
        XCTAssertEqual(pieces("Hello world's  end!! 42x"), ["Hello", " world", "'s", " ", " end", "!!", " 42", "x"])
        XCTAssertEqual(pieces("a  \n b"), ["a", "  \n", " b"])
        XCTAssertEqual(pieces("I'LL it'll"), ["I", "'", "LL", " it", "'ll"])
        XCTAssertEqual(pieces("   "), ["   "])
        XCTAssertEqual(ByteLevel.characters[0x20], "Ġ")
        XCTAssertEqual(ByteLevel.characters[0x0A], "Ċ")
    }

    func testUnsupportedTokenizersAndBadMergesAreErrorsNamingTheFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        func write(_ name: String, _ json: String) -> String {
            let path = dir + "/" + name
            try! json.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let bpe = """
        {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": MERGES},
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "added_tokens": []}
        """
        let cases: [(String, String, String)] = [
            ("unigram.json", #"{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"#, "model.type is Unigram, expected BPE"),
            ("wordpiece.json", #"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#, "model.type is WordPiece, expected BPE"),
            ("split.json", #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split"}, {"type": "ByteLevel"}]}}"#,
             "only a ByteLevel pre-tokenizer"),
            ("whitespace.json", #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Whitespace"}}"#,
             "pre_tokenizer is Whitespace, expected ByteLevel"),
            ("arity.json", bpe.replacingOccurrences(of: "MERGES", with: #"["a b", "a b c"]"#), "model.merges[1] = \"a b c\" is not two tokens"),
            ("unknown.json", bpe.replacingOccurrences(of: "MERGES", with: #"["a z"]"#), "merge 0 (a z): z is not in the vocabulary"),
            ("shape.json", bpe.replacingOccurrences(of: "MERGES", with: #"[7]"#), "model.merges[0] is neither"),
            ("broken.json", "{\"model\": ", "not a JSON object"),
            ("lstrip.json", bpe.replacingOccurrences(of: "MERGES", with: "[]").replacingOccurrences(of: #""added_tokens": []"#, with: #""added_tokens": [{"id": 2, "content": "ab", "lstrip": true}]"#),
             "has lstrip: true, which Tandem does not implement"),
        ]
        for (name, json, expected) in cases {
            let path = write(name, json)
            XCTAssertThrowsError(try ByteLevelBPETokenizer(tokenizerJSON: path), name) { error in
                XCTAssertTrue("\(error)".contains(path), "\(error)")
                XCTAssertTrue("\(error)".contains(expected), "\(name): \(error)")
            }
        }
        XCTAssertThrowsError(try openTokenizer(path: dir + "/unigram.json")) {
            XCTAssertTrue("\($0)".contains("model.type is Unigram, a tokenizer Tandem does not implement"), "\($0)")
        }
        XCTAssertNoThrow(try ByteLevelBPETokenizer(tokenizerJSON: write("good.json", bpe.replacingOccurrences(of: "MERGES", with: #"[["a", "b"]]"#))))
    }
}
