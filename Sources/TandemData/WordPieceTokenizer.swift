import Foundation

/// BERT's WordPiece tokenizer with the exact behaviour of HF tokenizers' `BertNormalizer` +
/// `BertPreTokenizer` + `WordPiece` model (what `BertWordPieceTokenizer(vocab.txt)` and a BERT
/// `tokenizer.json` do):
///
/// 1. special tokens ([CLS], [SEP], [PAD], [MASK], [UNK]) written literally in the text are matched first,
///    on the raw text, and become their ids;
/// 2. clean_text drops NUL, U+FFFD and control/format/unassigned/private-use characters and turns
///    whitespace into a space; handle_chinese_chars puts spaces around CJK ideographs; strip_accents
///    applies NFD and removes nonspacing marks (Mn); lowercase lowercases (strip_accents defaults to
///    lowercase, as in the reference);
/// 3. the pre-tokenizer splits on whitespace and isolates every punctuation character
///    (ASCII 33-47, 58-64, 91-96, 123-126 and Unicode P*);
/// 4. WordPiece takes the longest vocabulary entry that prefixes the rest of the word, continuation pieces
///    carrying the `##` prefix; a word with an unmatched rest, or longer than `maxInputCharsPerWord`
///    scalars, becomes one `[UNK]`.
///
/// Character classes come from `BertUnicodeTables`, measured on the reference for every scalar.
/// Text is processed as UTF-8 bytes and Unicode scalars, never as `Character`s. Invalid UTF-8 given to
/// the byte entry points is replaced by U+FFFD per maximal invalid subsequence, as Python's
/// `bytes.decode("utf-8", errors="replace")` does, so with clean_text on it disappears.
public struct WordPieceTokenizer: @unchecked Sendable {
    /// The BertNormalizer settings of a `tokenizer.json`.
    public struct Normalization: Equatable, Sendable {
        /// Drop NUL, U+FFFD and control characters; whitespace becomes a space.
        public var cleanText: Bool
        /// Surround CJK ideographs with spaces, making each one a word.
        public var handleChineseChars: Bool
        /// NFD, then remove nonspacing marks (Mn).
        public var stripAccents: Bool
        /// Lowercase (after strip_accents, as the reference does).
        public var lowercase: Bool

        /// `stripAccents` nil follows `lowercase`, as `strip_accents: null` does in HF.
        public init(cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool? = nil, lowercase: Bool = true) {
            self.cleanText = cleanText
            self.handleChineseChars = handleChineseChars
            self.stripAccents = stripAccents ?? lowercase
            self.lowercase = lowercase
        }

        /// bert-*-uncased: lowercase and strip accents.
        public static let uncased = Normalization(lowercase: true)
        /// bert-*-cased: neither lowercase nor strip accents.
        public static let cased = Normalization(lowercase: false)
    }

    /// Token strings by id (a vocab.txt line, or a `tokenizer.json` vocab key).
    public let tokens: [String]
    public let normalization: Normalization
    /// The token of a word that WordPiece cannot spell, "[UNK]" for BERT.
    public let unkToken: String
    /// The mark of a piece that continues a word, "##" for BERT.
    public let continuingSubwordPrefix: String
    /// Words with more scalars than this become `unkToken` (100 for BERT).
    public let maxInputCharsPerWord: Int
    /// Ids of [UNK], [CLS], [SEP], and of [PAD] and [MASK] when the vocabulary has them.
    public let unkID: Int32
    public let clsID: Int32
    public let sepID: Int32
    public let padID: Int32?
    public let maskID: Int32?
    /// SHA-256 (hex) of the token list in id order, one token and a "\n" per id: the bytes of the
    /// canonical vocab.txt. The same vocabulary loaded from vocab.txt or tokenizer.json has the same hash.
    public let vocabHash: String

    /// Number of ids (largest id + 1).
    public var vocabSize: Int { tokens.count }

    private let wordStarts: ByteTrie        // every token, keyed by its bytes
    private let continuations: ByteTrie     // tokens with the continuing prefix, keyed without it
    private let specials: [(bytes: [UInt8], id: Int32)]   // longest first: leftmost-longest matching
    private let specialIDs: Set<Int32>
    private let chars = BertCharacterData.shared

    // MARK: - Loading

    /// Builds a tokenizer from token strings in id order.
    /// - Parameters:
    ///   - specialTokens: tokens matched literally in the raw text before normalization; by default the
    ///     BERT special tokens that are in the vocabulary (what `BertWordPieceTokenizer` registers).
    public init(tokens: [String], normalization: Normalization = .uncased, unkToken: String = "[UNK]",
                continuingSubwordPrefix: String = "##", maxInputCharsPerWord: Int = 100,
                specialTokens: [String]? = nil, source: String = "vocabulary") throws {
        var ids: [String: Int32] = [:]
        for (i, token) in tokens.enumerated() { ids[token] = Int32(i) }
        try self.init(tokens: tokens, ids: ids, normalization: normalization, unkToken: unkToken,
                      continuingSubwordPrefix: continuingSubwordPrefix, maxInputCharsPerWord: maxInputCharsPerWord,
                      specialTokens: specialTokens ?? ["[UNK]", "[SEP]", "[CLS]", "[PAD]", "[MASK]"].filter { ids[$0] != nil },
                      source: source)
    }

    private init(tokens: [String], ids: [String: Int32], normalization: Normalization, unkToken: String,
                 continuingSubwordPrefix: String, maxInputCharsPerWord: Int, specialTokens: [String], source: String) throws {
        guard let unk = ids[unkToken] else { throw DataError.invalidFormat(path: source, reason: "no unknown token \(unkToken) in the vocabulary") }
        guard let cls = ids["[CLS]"] else { throw DataError.invalidFormat(path: source, reason: "no [CLS] token in the vocabulary") }
        guard let sep = ids["[SEP]"] else { throw DataError.invalidFormat(path: source, reason: "no [SEP] token in the vocabulary") }
        self.tokens = tokens
        self.normalization = normalization
        self.unkToken = unkToken
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        unkID = unk
        clsID = cls
        sepID = sep
        padID = ids["[PAD]"]
        maskID = ids["[MASK]"]

        let prefix = Array(continuingSubwordPrefix.utf8)
        var starts: [(key: [UInt8], value: Int32)] = []
        var continued: [(key: [UInt8], value: Int32)] = []
        for (token, id) in ids {
            let bytes = Array(token.utf8)
            starts.append((bytes, id))
            if !prefix.isEmpty, bytes.count >= prefix.count, bytes.starts(with: prefix) {
                continued.append((Array(bytes[prefix.count...]), id))
            }
        }
        wordStarts = ByteTrie(starts)
        continuations = ByteTrie(continued)
        var specialList: [(bytes: [UInt8], id: Int32)] = []
        for token in specialTokens {
            guard let id = ids[token] else { throw DataError.invalidFormat(path: source, reason: "special token \(token) is not in the vocabulary") }
            specialList.append((Array(token.utf8), id))
        }
        specials = specialList.sorted { $0.bytes.count > $1.bytes.count }
        specialIDs = Set(specialList.map(\.id))

        var hasher = SHA256()
        for token in tokens { hasher.update(Array(token.utf8) + [0x0A]) }
        vocabHash = hasher.finalizeHex()
    }

    /// Loads a BERT `vocab.txt` (one token a line, the line number is the id; trailing whitespace is
    /// trimmed and a repeated token takes its last line's id, as in HF). Uncased unless `cased`.
    public init(vocabFile path: String, cased: Bool = false) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read the vocabulary file") }
        guard let text = String(data: data, encoding: .utf8) else { throw DataError.invalidFormat(path: path, reason: "vocabulary is not valid UTF-8") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var s = Substring(line)
            while let last = s.unicodeScalars.last, last.properties.isWhitespace { s = Substring(s.unicodeScalars.dropLast()) }
            return String(s)
        }
        if lines.last == "" { lines.removeLast() }
        if lines.isEmpty { throw DataError.invalidFormat(path: path, reason: "empty vocabulary") }
        try self.init(tokens: lines, normalization: cased ? .cased : .uncased, source: path)
    }

    /// Loads a HF `tokenizer.json` with a `BertNormalizer` (or none), a `BertPreTokenizer` and a `WordPiece` model,
    /// reading the normalizer flags, the vocabulary, the unknown token, the continuing prefix, the word
    /// length limit and the special added tokens.
    public init(tokenizerJSON path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read the tokenizer file") }
        let file: TokenizerFile
        do { file = try JSONDecoder().decode(TokenizerFile.self, from: data) } catch {
            throw DataError.invalidFormat(path: path, reason: "not a tokenizer.json: \(error)")
        }
        guard file.model.type == "WordPiece" else { throw DataError.invalidFormat(path: path, reason: "model.type is \(file.model.type ?? "missing"), expected WordPiece") }
        let n = file.normalizer
        guard n == nil || n?.type == "BertNormalizer" else { throw DataError.invalidFormat(path: path, reason: "normalizer.type is \(n?.type ?? "missing"), expected BertNormalizer") }
        guard file.pre_tokenizer?.type == "BertPreTokenizer" else {
            throw DataError.invalidFormat(path: path, reason: "pre_tokenizer.type is \(file.pre_tokenizer?.type ?? "missing"), expected BertPreTokenizer")
        }
        // No normalizer means no normalization; a BertNormalizer's missing keys take the reference's defaults.
        let normalization = n.map {
            Normalization(cleanText: $0.clean_text ?? true, handleChineseChars: $0.handle_chinese_chars ?? true,
                          stripAccents: $0.strip_accents, lowercase: $0.lowercase ?? true)
        } ?? Normalization(cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: false)
        var ids = file.model.vocab
        for added in file.added_tokens ?? [] { ids[added.content] = added.id }
        guard let maxID = ids.values.max(), ids.values.min()! >= 0 else {
            throw DataError.invalidFormat(path: path, reason: "model.vocab is empty or has a negative id")
        }
        var tokens = [String](repeating: "", count: Int(maxID) + 1)
        for (token, id) in ids { tokens[Int(id)] = token }
        let specials = (file.added_tokens ?? []).filter { $0.special ?? false }.map(\.content)
        try self.init(tokens: tokens, ids: ids, normalization: normalization, unkToken: file.model.unk_token ?? "[UNK]",
                      continuingSubwordPrefix: file.model.continuing_subword_prefix ?? "##",
                      maxInputCharsPerWord: file.model.max_input_chars_per_word ?? 100, specialTokens: specials, source: path)
    }

    /// Loads `path` as a `tokenizer.json` when its name ends in `.json`, else as a vocab.txt.
    public init(path: String, cased: Bool = false) throws {
        if path.hasSuffix(".json") { try self.init(tokenizerJSON: path) } else { try self.init(vocabFile: path, cased: cased) }
    }

    private struct TokenizerFile: Decodable {
        struct Normalizer: Decodable {
            var type: String?
            var clean_text: Bool?
            var handle_chinese_chars: Bool?
            var strip_accents: Bool?
            var lowercase: Bool?
        }
        struct PreTokenizer: Decodable { var type: String? }
        struct Model: Decodable {
            var type: String?
            var unk_token: String?
            var continuing_subword_prefix: String?
            var max_input_chars_per_word: Int?
            var vocab: [String: Int32]
        }
        struct AddedToken: Decodable {
            var id: Int32
            var content: String
            var special: Bool?
        }
        var normalizer: Normalizer?
        var pre_tokenizer: PreTokenizer?
        var model: Model
        var added_tokens: [AddedToken]?
    }

    // MARK: - Encoding

    /// The ids of `text`, wrapped in [CLS] ... [SEP] when `addSpecialTokens`.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int32] {
        var ids: [Int32] = []
        if addSpecialTokens { ids.append(clsID) }
        var copy = text
        copy.withUTF8 { appendIDs(utf8: UnsafeRawBufferPointer($0), to: &ids) }
        if addSpecialTokens { ids.append(sepID) }
        return ids
    }

    /// The ids of UTF-8 `bytes` (invalid sequences read as U+FFFD), wrapped in [CLS] ... [SEP] when `addSpecialTokens`.
    public func encode(utf8 bytes: [UInt8], addSpecialTokens: Bool = false) -> [Int32] {
        var ids: [Int32] = []
        if addSpecialTokens { ids.append(clsID) }
        bytes.withUnsafeBytes { appendIDs(utf8: $0, to: &ids) }
        if addSpecialTokens { ids.append(sepID) }
        return ids
    }

    /// `[CLS] A [SEP] B [SEP]` with token type ids 0 for `[CLS] A [SEP]` and 1 for `B [SEP]`,
    /// as the BERT post-processor of HF tokenizers builds a pair.
    public func encodePair(_ first: String, _ second: String) -> (ids: [Int32], typeIDs: [Int32]) {
        let a = encode(first), b = encode(second)
        let ids = [clsID] + a + [sepID] + b + [sepID]
        let typeIDs = [Int32](repeating: 0, count: a.count + 2) + [Int32](repeating: 1, count: b.count + 1)
        return (ids, typeIDs)
    }

    /// The token strings of `text` (no special tokens added).
    public func tokenize(_ text: String) -> [String] {
        encode(text).map { tokens[Int($0)] }
    }

    /// Appends the ids of UTF-8 `bytes` to `ids`: the allocation-free entry point of the shard writer.
    public func appendIDs(utf8 bytes: UnsafeRawBufferPointer, to ids: inout [Int32]) {
        var encoder = Encoder(tokenizer: self)
        encoder.run(bytes, into: &ids)
    }

    /// Calls `body` with the UTF-8 bytes of each word of `bytes` after normalization and pre-tokenization,
    /// before WordPiece: what the vocabulary trainer counts. Special tokens are matched as in `encode`.
    func forEachWord(utf8 bytes: UnsafeRawBufferPointer, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        withoutActuallyEscaping(body) { body in
            var encoder = Encoder(tokenizer: self)
            encoder.wordSink = body
            var unused: [Int32] = []
            encoder.run(bytes, into: &unused)
        }
    }

    /// The per-call state of one encoding: the bytes of the word being built and its length in scalars.
    private struct Encoder {
        let t: WordPieceTokenizer
        let chars: BertCharacterData
        let clean: Bool, chinese: Bool, strip: Bool, lower: Bool
        var word: [UInt8] = []
        var wordScalars = 0
        /// When set, finished words go here instead of through WordPiece.
        var wordSink: ((UnsafeBufferPointer<UInt8>) -> Void)?

        init(tokenizer: WordPieceTokenizer) {
            t = tokenizer
            chars = tokenizer.chars
            clean = tokenizer.normalization.cleanText
            chinese = tokenizer.normalization.handleChineseChars
            strip = tokenizer.normalization.stripAccents
            lower = tokenizer.normalization.lowercase
            word.reserveCapacity(64)
        }

        mutating func run(_ p: UnsafeRawBufferPointer, into ids: inout [Int32]) {
            let n = p.count
            var i = 0
            let checkSpecials = !t.specials.isEmpty
            while i < n {
                let b = p[i]
                if b < 0x80 {
                    // ASCII letters and digits have no flag: the common case goes straight into the word.
                    let f = chars.bmpFlags[Int(b)]
                    if f == 0 {
                        word.append(lower && b >= 0x41 && b <= 0x5A ? b | 0x20 : b)
                        wordScalars += 1
                        i += 1
                        continue
                    }
                    if b == 0x5B && checkSpecials, let (length, id) = matchSpecial(p, at: i) {
                        flush(&ids)
                        ids.append(id)
                        i += length
                        continue
                    }
                    normalize(UInt32(b), &ids)
                    i += 1
                } else {
                    let (scalar, length) = decodeUTF8(p, at: i)
                    normalize(scalar, &ids)
                    i += length
                }
            }
            flush(&ids)
        }

        private func matchSpecial(_ p: UnsafeRawBufferPointer, at i: Int) -> (Int, Int32)? {
            for special in t.specials where special.bytes.count <= p.count - i {
                var equal = true
                for (k, byte) in special.bytes.enumerated() where p[i + k] != byte { equal = false; break }
                if equal { return (special.bytes.count, special.id) }
            }
            return nil
        }

        /// BertNormalizer on one input scalar, in the reference's order: clean, CJK spacing, strip accents, lowercase.
        @inline(__always) private mutating func normalize(_ c: UInt32, _ ids: inout [Int32]) {
            let f = chars.flags(c)
            if clean {
                if f.contains(.drop) { return }
                if f.contains(.space) { flush(&ids); return }
            }
            if chinese && f.contains(.cjk) {
                flush(&ids)
                stripAccents(c, f, &ids)
                flush(&ids)
                return
            }
            stripAccents(c, f, &ids)
        }

        @inline(__always) private mutating func stripAccents(_ c: UInt32, _ f: BertCharFlags, _ ids: inout [Int32]) {
            if strip && c >= 0x80 {
                if f.contains(.mark) { return }
                if let (l, v, trailing) = hangulDecomposition(c) {
                    lowercase(l, &ids); lowercase(v, &ids)
                    if let trailing { lowercase(trailing, &ids) }
                    return
                }
                if c >= 0x10000 || f.contains(.decomposes), let decomposed = chars.stripAccents[c] {
                    for d in decomposed { lowercase(d, &ids) }
                    return
                }
            }
            lowercase(c, &ids)
        }

        @inline(__always) private mutating func lowercase(_ c: UInt32, _ ids: inout [Int32]) {
            if lower {
                if c < 0x80 {
                    preTokenize(c >= 0x41 && c <= 0x5A ? c | 0x20 : c, &ids)
                    return
                }
                if c >= 0x10000 || chars.bmpFlags[Int(c)] & BertCharFlags.changesCase.rawValue != 0, let mapped = chars.lowercase[c] {
                    for m in mapped { preTokenize(m, &ids) }
                    return
                }
            }
            preTokenize(c, &ids)
        }

        /// BertPreTokenizer on one normalized scalar: whitespace ends the word, punctuation is a word of its own.
        @inline(__always) private mutating func preTokenize(_ c: UInt32, _ ids: inout [Int32]) {
            let f = chars.flags(c)
            if f.contains(.splitSpace) { flush(&ids); return }
            if f.contains(.punctuation) {
                flush(&ids)
                appendScalar(c)
                flush(&ids)
                return
            }
            appendScalar(c)
        }

        @inline(__always) private mutating func appendScalar(_ c: UInt32) {
            wordScalars += 1
            if c < 0x80 {
                word.append(UInt8(c))
            } else if c < 0x800 {
                word.append(UInt8(0xC0 | (c >> 6)))
                word.append(UInt8(0x80 | (c & 0x3F)))
            } else if c < 0x10000 {
                word.append(UInt8(0xE0 | (c >> 12)))
                word.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
                word.append(UInt8(0x80 | (c & 0x3F)))
            } else {
                word.append(UInt8(0xF0 | (c >> 18)))
                word.append(UInt8(0x80 | ((c >> 12) & 0x3F)))
                word.append(UInt8(0x80 | ((c >> 6) & 0x3F)))
                word.append(UInt8(0x80 | (c & 0x3F)))
            }
        }

        /// WordPiece on the finished word: greedy longest match first, `[UNK]` for the whole word when a
        /// rest has no match or the word has more than `maxInputCharsPerWord` scalars.
        private mutating func flush(_ ids: inout [Int32]) {
            guard wordScalars > 0 else { return }
            defer { word.removeAll(keepingCapacity: true); wordScalars = 0 }
            if let wordSink {
                word.withUnsafeBufferPointer(wordSink)
                return
            }
            if wordScalars > t.maxInputCharsPerWord { ids.append(t.unkID); return }
            let mark = ids.count
            let matched: Bool = word.withUnsafeBufferPointer { w in
                let base = w.baseAddress!
                let n = w.count
                var start = 0
                while start < n {
                    let piece = (start == 0 ? t.wordStarts : t.continuations).longestPrefix(base + start, n - start)
                    if piece.value < 0 { return false }
                    ids.append(piece.value)
                    start += piece.length
                }
                return true
            }
            if !matched {
                ids.removeSubrange(mark...)
                ids.append(t.unkID)
            }
        }
    }

    // MARK: - Decoding

    /// Text of `ids` as HF's WordPiece decoder writes it: a `##` piece is glued to the previous one, any
    /// other piece gets a space before it, and each piece then gets the reference's cleanup (" ." -> ".",
    /// " ," -> ",", ...), which works piece by piece, so "leah ' s" stays as it is.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = true) -> String {
        let cleanups = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                        (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]
        var out = ""
        var first = true
        for id in ids {
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            var piece = id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : unkToken
            if !first {
                if let rest = piece.droppingScalarPrefix(continuingSubwordPrefix) {
                    piece = rest
                } else {
                    piece = " " + piece
                }
            }
            for (from, to) in cleanups where piece.contains(from) { piece = piece.replacingOccurrences(of: from, with: to) }
            out += piece
            first = false
        }
        return out
    }
}

// MARK: - UTF-8

/// Decodes the scalar starting at byte `i`, returning U+FFFD and the length of the maximal invalid
/// subsequence (Unicode 3.9, "U+FFFD substitution of maximal subparts") for malformed input, as Python's
/// `errors="replace"` does.
@inline(__always) func decodeUTF8(_ p: UnsafeRawBufferPointer, at i: Int) -> (UInt32, Int) {
    let n = p.count
    let b0 = p[i]
    let length: Int
    var scalar: UInt32
    var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
    switch b0 {
    case 0xC2...0xDF: length = 2; scalar = UInt32(b0 & 0x1F)
    case 0xE0: length = 3; scalar = 0; lo = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: length = 3; scalar = UInt32(b0 & 0x0F)
    case 0xED: length = 3; scalar = 0xD; hi = 0x9F
    case 0xF0: length = 4; scalar = 0; lo = 0x90
    case 0xF1...0xF3: length = 4; scalar = UInt32(b0 & 0x07)
    case 0xF4: length = 4; scalar = 4; hi = 0x8F
    default: return (0xFFFD, 1)
    }
    for k in 1..<length {
        guard i + k < n else { return (0xFFFD, k) }
        let b = p[i + k]
        let low: UInt8 = k == 1 ? lo : 0x80, high: UInt8 = k == 1 ? hi : 0xBF
        guard b >= low && b <= high else { return (0xFFFD, k) }
        scalar = scalar << 6 | UInt32(b & 0x3F)
    }
    return (scalar, length)
}

extension String {
    /// The string without `prefix` when it starts with it, compared and dropped by Unicode scalars (nil
    /// otherwise, and for an empty prefix). Character-wise `hasPrefix("##")` fails on "##ि": the Devanagari
    /// vowel sign joins the second "#" in one grapheme cluster.
    func droppingScalarPrefix(_ prefix: String) -> String? {
        let p = prefix.unicodeScalars
        guard !p.isEmpty, unicodeScalars.starts(with: p) else { return nil }
        return String(String.UnicodeScalarView(unicodeScalars.dropFirst(p.count)))
    }
}
