import Foundation

/// GPT-2's byte-level BPE (Radford et al. 2019; HF tokenizers' `ByteLevel` pre-tokenizer with a `BPE`
/// model): text is split into pre-tokens by GPT-2's pattern, each pre-token's UTF-8 bytes are mapped to
/// printable characters (`ByteLevel.characters`), and merges are applied by rank. Added tokens
/// (`<|endoftext|>`) are matched in the text first, as HF does, and the text between them is encoded
/// on its own. Reads a tokenizer.json or a vocab.json + merges.txt pair; `BPETrainer` writes both.
public final class ByteLevelBPETokenizer: TextTokenizer, @unchecked Sendable {
    /// Token strings by id (byte-level characters; added tokens as written).
    public let tokens: [String]
    /// Ids by token string.
    public let ids: [String: Int32]
    /// (left id << 32 | right id) -> (rank, merged id).
    let merges: [UInt64: (rank: Int32, id: Int32)]
    /// The id of each byte's single-character token (-1 where the vocabulary lacks it).
    let byteIDs: [Int32]
    /// Added tokens matched in the text before pre-tokenization, longest first.
    let added: [(scalars: [Unicode.Scalar], id: Int32)]
    /// The ByteLevel pre-tokenizer's options.
    public let addPrefixSpace: Bool
    public let useRegex: Bool
    /// BPE's `ignore_merges`: a pre-token that is itself in the vocabulary is taken whole.
    public let ignoreMerges: Bool
    public let vocabHash: String
    /// Where it was loaded from, for messages.
    public let source: String
    /// The id of `<|endoftext|>`, when the vocabulary has it.
    public let endOfTextID: Int32?
    /// Encodings of pre-tokens seen so far (most words repeat).
    private var cache: [[UInt8]: [Int32]] = [:]
    private let lock = NSLock()

    public var vocabSize: Int { tokens.count }
    public var unknownID: Int32 { endOfTextID ?? 0 }

    /// The end-of-text token's spelling in GPT-2's vocabulary.
    public static let endOfText = "<|endoftext|>"

    /// A tokenizer from its parts: `vocab` (token -> id, ids 0..<count without gaps), `merges` in rank
    /// order as pairs of token strings, and the added tokens (which must be in `vocab`). Errors name
    /// `source` and the merge that does not fit.
    public init(vocab: [String: Int32], merges mergeList: [(String, String)], addedTokens: [String], addPrefixSpace: Bool = false,
                useRegex: Bool = true, ignoreMerges: Bool = false, source: String) throws {
        var tokens = [String](repeating: "", count: vocab.count)
        var seen = [Bool](repeating: false, count: vocab.count)
        for (token, id) in vocab {
            guard id >= 0 && Int(id) < vocab.count && !seen[Int(id)] else {
                throw DataError.invalidFormat(path: source, reason: "vocab ids must be 0..<\(vocab.count) without gaps or repeats (\(token) has \(id))")
            }
            tokens[Int(id)] = token
            seen[Int(id)] = true
        }
        var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, (a, b)) in mergeList.enumerated() {
            guard let left = vocab[a], let right = vocab[b] else {
                throw DataError.invalidFormat(path: source, reason: "merge \(rank) (\(a) \(b)): \(vocab[a] == nil ? a : b) is not in the vocabulary")
            }
            guard let merged = vocab[a + b] else {
                throw DataError.invalidFormat(path: source, reason: "merge \(rank) (\(a) \(b)): the merged token \(a + b) is not in the vocabulary")
            }
            let key = UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))
            if merges[key] == nil { merges[key] = (Int32(rank), merged) }
        }
        var added: [(scalars: [Unicode.Scalar], id: Int32)] = []
        for token in addedTokens {
            guard let id = vocab[token] else { throw DataError.invalidFormat(path: source, reason: "added token \(token) is not in the vocabulary") }
            added.append((Array(token.unicodeScalars), id))
        }
        self.tokens = tokens
        ids = vocab
        self.merges = merges
        byteIDs = ByteLevel.characters.map { vocab[String($0)] ?? -1 }
        self.added = added.filter { !$0.scalars.isEmpty }.sorted { $0.scalars.count > $1.scalars.count }
        self.addPrefixSpace = addPrefixSpace
        self.useRegex = useRegex
        self.ignoreMerges = ignoreMerges
        self.source = source
        endOfTextID = vocab[Self.endOfText]
        var hasher = SHA256()
        for token in tokens { hasher.update(Array(token.utf8) + [0x0A]) }
        hasher.update(Array("#merges\n".utf8))
        for (a, b) in mergeList { hasher.update(Array("\(a) \(b)\n".utf8)) }
        hasher.update(Array("#added \(addedTokens.joined(separator: " ")) \(addPrefixSpace) \(useRegex) \(ignoreMerges)\n".utf8))
        vocabHash = hasher.finalizeHex()
    }

    /// Loads a HF tokenizer.json whose model is BPE and whose pre-tokenizer is ByteLevel (alone or as the
    /// only step of a Sequence), with no normalizer. Anything else (WordPiece, Unigram, a Split pattern
    /// other than GPT-2's, a normalizer, subword prefixes) is an error naming the file and what it found.
    public convenience init(tokenizerJSON path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read the tokenizer file") }
        guard let file = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw DataError.invalidFormat(path: path, reason: "not a JSON object (a tokenizer.json is expected)")
        }
        guard let model = file["model"] as? [String: Any] else { throw DataError.invalidFormat(path: path, reason: "no model object") }
        let type = model["type"] as? String ?? (model["merges"] != nil ? "BPE" : "missing")
        guard type == "BPE" else {
            throw DataError.invalidFormat(path: path, reason: "model.type is \(type), expected BPE (a byte-level BPE tokenizer.json, as GPT-2's)")
        }
        if let normalizer = file["normalizer"] as? [String: Any] {
            throw DataError.invalidFormat(path: path, reason: "normalizer \(normalizer["type"] as? String ?? "?") is not supported (GPT-2's byte-level BPE has none)")
        }
        var byteLevel = file["pre_tokenizer"] as? [String: Any]
        if byteLevel?["type"] as? String == "Sequence", let steps = byteLevel?["pretokenizers"] as? [[String: Any]] {
            guard steps.count == 1 else {
                throw DataError.invalidFormat(path: path, reason: "pre_tokenizer is a Sequence of \(steps.map { $0["type"] as? String ?? "?" }.joined(separator: ", ")): only a ByteLevel pre-tokenizer (GPT-2's pattern) is supported")
            }
            byteLevel = steps[0]
        }
        guard let pre = byteLevel, pre["type"] as? String == "ByteLevel" else {
            throw DataError.invalidFormat(path: path, reason: "pre_tokenizer is \((byteLevel?["type"] as? String) ?? "missing"), expected ByteLevel (GPT-2's byte-level BPE)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = model[key] as? String, !value.isEmpty {
                throw DataError.invalidFormat(path: path, reason: "model.\(key) = \(value) is not supported by byte-level BPE")
            }
        }
        if model["byte_fallback"] as? Bool == true {
            throw DataError.invalidFormat(path: path, reason: "model.byte_fallback is not supported by byte-level BPE")
        }
        guard let vocabObject = model["vocab"] as? [String: Any] else { throw DataError.invalidFormat(path: path, reason: "model.vocab is missing") }
        var vocab: [String: Int32] = [:]
        vocab.reserveCapacity(vocabObject.count)
        for (token, id) in vocabObject {
            guard let n = (id as? NSNumber)?.int32Value else { throw DataError.invalidFormat(path: path, reason: "model.vocab[\(token)] is not an integer id") }
            vocab[token] = n
        }
        var addedTokens: [String] = []
        for (i, entry) in ((file["added_tokens"] as? [[String: Any]]) ?? []).enumerated() {
            guard let content = entry["content"] as? String, let id = (entry["id"] as? NSNumber)?.int32Value else {
                throw DataError.invalidFormat(path: path, reason: "added_tokens[\(i)] lacks content or id")
            }
            for flag in ["lstrip", "rstrip", "single_word"] where entry[flag] as? Bool == true {
                throw DataError.invalidFormat(path: path, reason: "added_tokens[\(i)] (\(content)) has \(flag): true, which Tandem does not implement")
            }
            if let existing = vocab[content], existing != id {
                throw DataError.invalidFormat(path: path, reason: "added token \(content) has id \(id) but model.vocab gives it \(existing)")
            }
            vocab[content] = id
            addedTokens.append(content)
        }
        guard let mergeEntries = model["merges"] as? [Any] else { throw DataError.invalidFormat(path: path, reason: "model.merges is missing") }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeEntries.count)
        for (i, entry) in mergeEntries.enumerated() {
            // Two formats exist: "a b" strings (tokenizers < 0.20) and [a, b] pairs.
            if let s = entry as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw DataError.invalidFormat(path: path, reason: "model.merges[\(i)] = \"\(s)\" is not two tokens separated by one space")
                }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = entry as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw DataError.invalidFormat(path: path, reason: "model.merges[\(i)] is neither \"a b\" nor [a, b]")
            }
        }
        try self.init(vocab: vocab, merges: merges, addedTokens: addedTokens, addPrefixSpace: pre["add_prefix_space"] as? Bool ?? false,
                      useRegex: pre["use_regex"] as? Bool ?? true, ignoreMerges: model["ignore_merges"] as? Bool ?? false,
                      source: path)
    }

    /// Loads GPT-2's vocab.json and merges.txt (a "#version" first line is skipped); `<|endoftext|>` is an
    /// added token when the vocabulary has it.
    public convenience init(vocabJSON: String, mergesTXT: String) throws {
        guard let data = FileManager.default.contents(atPath: vocabJSON) else { throw DataError.io(path: vocabJSON, reason: "cannot read the vocabulary file") }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw DataError.invalidFormat(path: vocabJSON, reason: "not a JSON object of token -> id")
        }
        var vocab: [String: Int32] = [:]
        for (token, id) in object {
            guard let n = (id as? NSNumber)?.int32Value else { throw DataError.invalidFormat(path: vocabJSON, reason: "\(token) has no integer id") }
            vocab[token] = n
        }
        guard let text = try? String(contentsOfFile: mergesTXT, encoding: .utf8) else { throw DataError.io(path: mergesTXT, reason: "cannot read the merges file") }
        var merges: [(String, String)] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty || (n == 0 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw DataError.invalidFormat(path: "\(mergesTXT):\(n + 1)", reason: "\"\(line)\" is not two tokens separated by one space")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        try self.init(vocab: vocab, merges: merges, addedTokens: vocab[Self.endOfText] != nil ? [Self.endOfText] : [], source: vocabJSON)
    }

    // MARK: - Encoding

    /// The ids of `text`.
    public func encode(_ text: String) -> [Int32] {
        var out: [Int32] = []
        forEachPiece(Array(text.unicodeScalars)) { ids, _ in out.append(contentsOf: ids) }
        return out
    }

    /// Appends the ids of UTF-8 `bytes` (invalid sequences read as U+FFFD, as Swift's String does).
    public func appendIDs(utf8 bytes: UnsafeRawBufferPointer, to out: inout [Int32]) {
        forEachPiece(Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)) { ids, _ in out.append(contentsOf: ids) }
    }

    /// The ids of a document given as its lines (without their "\n"): the document's text, every line
    /// ended by "\n", encoded as one text (so pre-tokens that span a line end, such as "  \n" before an
    /// indented line, are GPT-2's), each pre-token's ids given to the line it starts in. The lines' ids
    /// back to back are `encode` of the whole text.
    public func documentLineIDs(_ lines: [[UInt8]]) -> [[Int32]] {
        var scalars: [Unicode.Scalar] = []
        var lineStarts: [Int] = []
        for line in lines {
            lineStarts.append(scalars.count)
            scalars.append(contentsOf: String(decoding: line, as: UTF8.self).unicodeScalars)
            scalars.append("\n")
        }
        var out = [[Int32]](repeating: [], count: lines.count)
        var line = 0
        forEachPiece(scalars) { ids, start in
            while line + 1 < lineStarts.count && lineStarts[line + 1] <= start { line += 1 }
            out[line].append(contentsOf: ids)
        }
        return out
    }

    /// Calls `body` with the ids of each added token and pre-token of `scalars` in order, and the index of
    /// the scalar it starts at. Added tokens are matched first; the text between them is pre-tokenized on
    /// its own (with a space in front when `addPrefixSpace`, as HF does for every such stretch).
    private func forEachPiece(_ scalars: [Unicode.Scalar], _ body: ([Int32], Int) -> Void) {
        var start = 0, i = 0
        let n = scalars.count
        if !added.isEmpty {
            while i < n {
                if let match = added.first(where: { token in
                    token.scalars.count <= n - i && token.scalars.first == scalars[i]
                        && scalars[i..<(i + token.scalars.count)].elementsEqual(token.scalars)
                }) {
                    if i > start { encodeSegment(scalars, start..<i, body) }
                    body([match.id], i)
                    i += match.scalars.count
                    start = i
                } else {
                    i += 1
                }
            }
        }
        if start < n { encodeSegment(scalars, start..<n, body) }
    }

    /// Pre-tokenizes `scalars[range]` (no added token inside) and reports each pre-token's BPE ids.
    private func encodeSegment(_ all: [Unicode.Scalar], _ range: Range<Int>, _ body: ([Int32], Int) -> Void) {
        var scalars = Array(all[range])
        var shift = range.lowerBound
        if addPrefixSpace, let first = scalars.first, !ByteLevel.isWhitespace(first) {
            scalars.insert(" ", at: 0)
            shift -= 1
        }
        var word: [UInt8] = []
        func emit(_ r: Range<Int>) {
            word.removeAll(keepingCapacity: true)
            for s in scalars[r] { word.append(contentsOf: UTF8.encode(s)!) }
            body(bpeCached(word), max(r.lowerBound + shift, range.lowerBound))
        }
        if useRegex { ByteLevel.preTokenize(scalars, emit) } else { emit(0..<scalars.count) }
    }

    /// The BPE ids of one pre-token's bytes, through the cache.
    private func bpeCached(_ word: [UInt8]) -> [Int32] {
        lock.lock()
        let cached = cache[word]
        lock.unlock()
        if let cached { return cached }
        let ids = bpe(word)
        lock.lock()
        if cache.count > 500_000 { cache.removeAll(keepingCapacity: true) }
        cache[word] = ids
        lock.unlock()
        return ids
    }

    /// Merges one pre-token's byte symbols: repeatedly the adjacent pair of lowest rank, every
    /// non-overlapping occurrence left to right (GPT-2's `bpe`). Bytes whose character is not in the
    /// vocabulary are dropped, as HF's BPE does without an unknown token.
    func bpe(_ word: [UInt8]) -> [Int32] {
        if ignoreMerges, let id = ids[String(word.map { ByteLevel.characters[Int($0)] })] { return [id] }
        var symbols = word.compactMap { b -> Int32? in let id = byteIDs[Int(b)]; return id >= 0 ? id : nil }
        while symbols.count > 1 {
            var best: (rank: Int32, id: Int32, left: Int32, right: Int32)? = nil
            for i in 0..<(symbols.count - 1) {
                let key = UInt64(UInt32(symbols[i])) << 32 | UInt64(UInt32(symbols[i + 1]))
                if let m = merges[key], best == nil || m.rank < best!.rank { best = (m.rank, m.id, symbols[i], symbols[i + 1]) }
            }
            guard let merge = best else { break }
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == merge.left && symbols[i + 1] == merge.right {
                    merged.append(merge.id)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        return symbols
    }

    // MARK: - Decoding

    /// The text of `ids`: added tokens as written, other tokens' characters mapped back to bytes, the
    /// bytes read as UTF-8 (invalid sequences become U+FFFD).
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < tokens.count {
            let token = tokens[Int(id)]
            if added.contains(where: { $0.id == id }) { bytes.append(contentsOf: token.utf8); continue }
            for c in token.unicodeScalars { if let b = ByteLevel.byte(of: c) { bytes.append(b) } }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - TextTokenizer

    public func appendLineIDs(utf8 line: UnsafeRawBufferPointer, to ids: inout [Int32]) {
        var bytes = [UInt8](line)
        bytes.append(0x0A)
        bytes.withUnsafeBytes { appendIDs(utf8: $0, to: &ids) }
    }

    /// Documents are encoded whole (`documentLineIDs`), so that shards hold GPT-2's encoding of each.
    public var encodesWholeDocuments: Bool { true }

    /// `special` frames the line as `<s> ... </s>` with RoBERTa's tokens (its RobertaProcessing) and adds
    /// nothing with GPT-2's, which has no post-processor tokens (documents are separated by
    /// `<|endoftext|>` when shards are packed, not here).
    public func appendTokenizeIDs(utf8 line: UnsafeRawBufferPointer, special: Bool, to ids: inout [Int32]) {
        let bos = special ? self.ids["<s>"] : nil, eos = special ? self.ids["</s>"] : nil
        let framed = bos != nil && eos != nil
        if framed { ids.append(bos!) }
        appendIDs(utf8: line, to: &ids)
        if framed { ids.append(eos!) }
    }
}

/// GPT-2's byte-to-character map and pre-tokenization pattern.
public enum ByteLevel {
    /// The printable character standing for each byte: '!'...'~', '¡'...'¬' and '®'...'ÿ' stand for
    /// themselves, the other 68 bytes for U+0100 onward in byte order (so a space is 'Ġ', "\n" is 'Ċ').
    public static let characters: [Character] = {
        var direct = Set<Int>()
        for r in [0x21...0x7E, 0xA1...0xAC, 0xAE...0xFF] { for b in r { direct.insert(b) } }
        var next = 256
        return (0..<256).map { b in
            if direct.contains(b) { return Character(Unicode.Scalar(UInt32(b))!) }
            defer { next += 1 }
            return Character(Unicode.Scalar(UInt32(next))!)
        }
    }()

    private static let bytesByScalar: [UInt32: UInt8] = {
        var m: [UInt32: UInt8] = [:]
        for (b, c) in characters.enumerated() { m[c.unicodeScalars.first!.value] = UInt8(b) }
        return m
    }()

    /// The byte a character of a byte-level token stands for.
    public static func byte(of c: Unicode.Scalar) -> UInt8? { bytesByScalar[c.value] }

    /// Unicode White_Space, which the pattern's \s matches.
    @inline(__always)
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        return s.properties.isWhitespace
    }

    enum Kind: UInt8 { case letter, number, space, other }

    @inline(__always)
    static func kind(_ s: Unicode.Scalar) -> Kind {
        let v = s.value
        if v < 0x80 {
            if (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) { return .letter }
            if v >= 0x30 && v <= 0x39 { return .number }
            if v == 0x20 || (v >= 0x09 && v <= 0x0D) { return .space }
            return .other
        }
        if isWhitespace(s) { return .space }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Calls `body` with the scalar range of each pre-token of GPT-2's pattern, in order:
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    public static func preTokenize(_ s: [Unicode.Scalar], _ body: (Range<Int>) -> Void) {
        let n = s.count
        var kinds = [Kind](repeating: .other, count: n)
        for i in 0..<n { kinds[i] = kind(s[i]) }
        var i = 0
        while i < n {
            let start = i
            // Contractions, lowercase only, as the pattern is case-sensitive.
            if s[i] == "'" && i + 1 < n {
                let c = s[i + 1]
                if c == "s" || c == "t" || c == "m" || c == "d" { body(i..<(i + 2)); i += 2; continue }
                if i + 2 < n {
                    let d = s[i + 2]
                    if (c == "r" && d == "e") || (c == "v" && d == "e") || (c == "l" && d == "l") { body(i..<(i + 3)); i += 3; continue }
                }
            }
            // An optional single space, then a run of one class (letters, numbers or other).
            var j = i
            if s[j] == " " && j + 1 < n && kinds[j + 1] != .space { j += 1 }
            let k = kinds[j]
            if k != .space {
                j += 1
                while j < n && kinds[j] == k { j += 1 }
                body(start..<j)
                i = j
                continue
            }
            // Whitespace: the run up to the last one before a non-space (which stays for the next token,
            // \s+(?!\S)), or all of it at the end of the text; a single one before a non-space is \s+.
            j = i
            while j < n && kinds[j] == .space { j += 1 }
            if j < n && j - i > 1 { j -= 1 }
            body(i..<j)
            i = j
        }
    }
}
