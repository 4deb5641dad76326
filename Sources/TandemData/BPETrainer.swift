import Foundation

/// Learns a byte-level BPE vocabulary (GPT-2's; HF tokenizers' `BpeTrainer` under a `ByteLevel`
/// pre-tokenizer): the text's pre-tokens are counted, every word starts as its bytes' characters, and the
/// most frequent adjacent pair is merged until the vocabulary has `vocabSize` tokens (or no pair occurs
/// `minFrequency` times). Ties go to the smaller pair of ids, as in HF. The vocabulary is the special
/// tokens, then the 256 byte characters in character order, then the merges in order.
public struct BPETrainer {
    public var vocabSize: Int
    public var minFrequency: Int
    public var specialTokens: [String]

    public init(vocabSize: Int, minFrequency: Int = 2, specialTokens: [String] = [ByteLevelBPETokenizer.endOfText]) {
        self.vocabSize = vocabSize; self.minFrequency = minFrequency; self.specialTokens = specialTokens
    }

    /// Pre-token counts of text files, each line with its "\n" (blank lines, which separate documents,
    /// are skipped), as `prepare-text` encodes them.
    public static func countWords(files: [String]) throws -> [[UInt8]: Int] {
        var counts: [[UInt8]: Int] = [:]
        var word: [UInt8] = []
        for path in files {
            try readLines(path: path, chunk: { _ in }) { line in
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
                let scalars = Array((String(decoding: line, as: UTF8.self) + "\n").unicodeScalars)
                ByteLevel.preTokenize(scalars) { range in
                    word.removeAll(keepingCapacity: true)
                    for s in scalars[range] { word.append(contentsOf: UTF8.encode(s)!) }
                    counts[word, default: 0] += 1
                }
            }
        }
        return counts
    }

    /// The vocabulary (token -> id) and the merges learned from `words` (pre-token bytes -> count).
    public func train(words: [[UInt8]: Int]) throws -> (vocab: [String: Int32], merges: [(String, String)]) {
        let alphabet = ByteLevel.characters.sorted { $0.unicodeScalars.first!.value < $1.unicodeScalars.first!.value }
        guard vocabSize >= specialTokens.count + alphabet.count else {
            throw DataError.invalidArgument("--size \(vocabSize) is smaller than the \(specialTokens.count) special tokens and 256 byte characters")
        }
        var tokens: [String] = specialTokens + alphabet.map { String($0) }
        var idOf: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() { idOf[t] = Int32(i) }
        let byteID = ByteLevel.characters.map { idOf[String($0)]! }

        // Words in a fixed order (by bytes) so that training is deterministic.
        let sorted = words.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        var symbols: [[Int32]] = sorted.map { $0.key.map { byteID[Int($0)] } }
        let counts = sorted.map { $0.value }

        @inline(__always) func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        var pairCounts: [UInt64: Int] = [:]
        var wordsWith: [UInt64: [Int32]] = [:]
        for (w, s) in symbols.enumerated() where s.count > 1 {
            for i in 0..<(s.count - 1) {
                let k = key(s[i], s[i + 1])
                pairCounts[k, default: 0] += counts[w]
                wordsWith[k, default: []].append(Int32(w))
            }
        }
        var heap = PairHeap()
        for (k, c) in pairCounts where c > 0 { heap.push(c, k) }

        var merges: [(String, String)] = []
        var lastSeen = [Int32](repeating: -1, count: symbols.count)
        while tokens.count < vocabSize, let (count, k) = heap.pop() {
            let current = pairCounts[k] ?? 0
            if current != count {
                // A stale entry: the pair's count fell since it was pushed.
                if current > 0 { heap.push(current, k) }
                continue
            }
            if count < minFrequency { break }
            let a = Int32(truncatingIfNeeded: k >> 32), b = Int32(truncatingIfNeeded: k & 0xFFFF_FFFF)
            let merged = tokens[Int(a)] + tokens[Int(b)]
            let newID = Int32(tokens.count)
            tokens.append(merged)
            merges.append((tokens[Int(a)], tokens[Int(b)]))
            idOf[merged] = newID
            let stamp = Int32(merges.count)
            var changed: Set<UInt64> = []
            for w32 in wordsWith[k] ?? [] {
                let w = Int(w32)
                if lastSeen[w] == stamp { continue }
                lastSeen[w] = stamp
                let s = symbols[w], c = counts[w]
                guard s.count > 1 else { continue }
                var out: [Int32] = []
                out.reserveCapacity(s.count)
                var i = 0
                var lastMerged = false
                while i < s.count {
                    if i + 1 < s.count && s[i] == a && s[i + 1] == b {
                        if let prev = out.last {
                            // After a merge just before, the old pair (b, a) was taken off with that merge.
                            if !lastMerged { pairCounts[key(prev, a), default: 0] -= c }
                            pairCounts[key(prev, newID), default: 0] += c
                            wordsWith[key(prev, newID), default: []].append(w32)
                            changed.insert(key(prev, newID))
                        }
                        if i + 2 < s.count {
                            // The next pair starts at the merged token, unless it is the same pair again
                            // (then it is counted when that occurrence merges).
                            let next = s[i + 2]
                            pairCounts[key(b, next), default: 0] -= c
                            if !(next == a && i + 3 < s.count && s[i + 3] == b) {
                                pairCounts[key(newID, next), default: 0] += c
                                wordsWith[key(newID, next), default: []].append(w32)
                                changed.insert(key(newID, next))
                            }
                        }
                        pairCounts[k, default: 0] -= c
                        out.append(newID)
                        i += 2
                        lastMerged = true
                    } else {
                        out.append(s[i])
                        i += 1
                        lastMerged = false
                    }
                }
                symbols[w] = out
            }
            pairCounts[k] = nil
            wordsWith[k] = nil
            for p in changed { if let c = pairCounts[p], c > 0 { heap.push(c, p) } }
        }
        var vocab: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = Int32(i) }
        return (vocab, merges)
    }

    /// Trains on `files` and writes `tokenizer.json`, `vocab.json` and `merges.txt` into `directory`;
    /// returns the tokenizer it wrote.
    @discardableResult
    public func train(files: [String], directory: String) throws -> ByteLevelBPETokenizer {
        let words = try Self.countWords(files: files)
        guard !words.isEmpty else { throw DataError.invalidFormat(path: files.joined(separator: ", "), reason: "no text to learn merges from") }
        let (vocab, merges) = try train(words: words)
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw DataError.io(path: directory, reason: "cannot create the directory: \(error.localizedDescription)")
        }
        let json = (directory as NSString).appendingPathComponent("tokenizer.json")
        try Self.write(Self.tokenizerJSON(vocab: vocab, merges: merges, specialTokens: specialTokens), to: json)
        try Self.write(Self.vocabJSON(vocab), to: (directory as NSString).appendingPathComponent("vocab.json"))
        try Self.write("#version: 0.2\n" + merges.map { "\($0.0) \($0.1)\n" }.joined(), to: (directory as NSString).appendingPathComponent("merges.txt"))
        return try ByteLevelBPETokenizer(tokenizerJSON: json)
    }

    static func write(_ text: String, to path: String) throws {
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw DataError.io(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// `token -> id` as GPT-2's vocab.json writes it, in id order.
    static func vocabJSON(_ vocab: [String: Int32]) -> String {
        "{" + vocab.sorted { $0.value < $1.value }.map { "\(jsonQuoted($0.key)): \($0.value)" }.joined(separator: ", ") + "}\n"
    }

    /// A tokenizer.json as HF tokenizers writes a byte-level BPE (GPT-2's layout): the ByteLevel
    /// pre-tokenizer (no prefix space), post-processor and decoder, the BPE model with its vocabulary in id
    /// order and its merges as "a b" strings (which every tokenizers version reads), the special tokens as
    /// added tokens. With `<s>` and `</s>` among them (RoBERTa's), the post-processor is RobertaProcessing,
    /// so that HF's tokenizer frames a sequence as `<s> ... </s>` the way Tandem's samples are.
    static func tokenizerJSON(vocab: [String: Int32], merges: [(String, String)], specialTokens: [String]) -> String {
        let added = specialTokens.compactMap { t in vocab[t].map { id in
            "    {\"id\": \(id), \"content\": \(jsonQuoted(t)), \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": true}"
        } }
        let byteLevel = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}"
        var s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
        s += "  \"added_tokens\": [\n" + added.joined(separator: ",\n") + "\n  ],\n"
        var post = byteLevel
        if let bos = vocab["<s>"], let eos = vocab["</s>"], specialTokens.contains("<s>") && specialTokens.contains("</s>") {
            post = "{\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", \(eos)], \"cls\": [\"<s>\", \(bos)], \"trim_offsets\": true, \"add_prefix_space\": false}"
        }
        s += "  \"normalizer\": null,\n  \"pre_tokenizer\": \(byteLevel),\n  \"post_processor\": \(post),\n  \"decoder\": \(byteLevel),\n"
        s += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n"
        s += "    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
        s += "    \"vocab\": {\n" + vocab.sorted { $0.value < $1.value }.map { "      \(jsonQuoted($0.key)): \($0.value)" }.joined(separator: ",\n") + "\n    },\n"
        s += "    \"merges\": [\n" + merges.map { "      \(jsonQuoted("\($0.0) \($0.1)"))" }.joined(separator: ",\n") + "\n    ]\n  }\n}\n"
        return s
    }

}

/// A binary max-heap of (count, pair) with ties to the smaller pair: the order HF's BPE trainer merges in.
struct PairHeap {
    private var items: [(count: Int, pair: UInt64)] = []

    @inline(__always) private static func before(_ x: (count: Int, pair: UInt64), _ y: (count: Int, pair: UInt64)) -> Bool {
        x.count != y.count ? x.count > y.count : x.pair < y.pair
    }

    mutating func push(_ count: Int, _ pair: UInt64) {
        items.append((count, pair))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.before(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (Int, UInt64)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < items.count && Self.before(items[l], items[best]) { best = l }
                if r < items.count && Self.before(items[r], items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return (top.count, top.pair)
    }
}
