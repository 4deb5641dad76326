import Foundation

/// Trains a WordPiece vocabulary the way HF tokenizers' `WordPieceTrainer` does (which runs its BPE trainer
/// with a `##` continuing prefix and keeps the resulting vocabulary), with the defaults of
/// `BertWordPieceTokenizer.train`:
///
/// 1. words are counted after BERT normalization and pre-tokenization (`WordPieceTokenizer`'s);
/// 2. the vocabulary starts with the special tokens, then the alphabet: every scalar of the words, the
///    `limitAlphabet` most frequent ones when there are more, sorted by code point;
/// 3. each word becomes its characters, non-initial ones with the `##` prefix (added to the vocabulary as met);
/// 4. repeatedly, the most frequent adjacent pair (ties: the pair of smaller ids) is merged into a new token
///    (`a` + `##b` -> `ab`, `##a` + `##b` -> `##ab`) until the vocabulary has `vocabSize` tokens or the best
///    pair occurs fewer than `minFrequency` times.
///
/// HF walks its word table in hash order, so which `##x` token gets which id, and with it the choice between
/// pairs of equal count, varies from run to run there; here words are taken in byte order, so a corpus always
/// gives the same vocabulary. Tokens and counts otherwise follow the same rules: on the KJV Bible the token
/// sets are identical at 2000 tokens and share 11,998 of 12,000; on Bible + fortunes (20 MB) 29,980 of 30,000,
/// the rest being pairs of equal count taken in another order. HF refuses a file with invalid UTF-8; here it
/// reads as U+FFFD, which normalization removes.
public struct WordPieceTrainer {
    /// Merging stops when the vocabulary has this many tokens (specials, alphabet and `##` characters count).
    public var vocabSize: Int
    /// Merging stops when the most frequent pair occurs fewer times than this.
    public var minFrequency: Int
    /// Keep at most this many characters, the most frequent ones.
    public var limitAlphabet: Int?
    /// Characters kept whatever their frequency.
    public var initialAlphabet: [Unicode.Scalar]
    /// The first ids, in order.
    public var specialTokens: [String]
    /// The mark of a word-continuing piece.
    public var continuingSubwordPrefix: String
    /// The normalization applied before words are counted.
    public var normalization: WordPieceTokenizer.Normalization

    /// Word counts fed so far, keyed by the word's UTF-8 bytes.
    public private(set) var wordCounts: [[UInt8]: Int] = [:]
    private let splitter: WordPieceTokenizer

    /// The defaults of HF's `BertWordPieceTokenizer.train`.
    public init(vocabSize: Int = 30000, minFrequency: Int = 2, limitAlphabet: Int? = 1000, initialAlphabet: [Unicode.Scalar] = [],
                specialTokens: [String] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], continuingSubwordPrefix: String = "##",
                normalization: WordPieceTokenizer.Normalization = .uncased) {
        self.vocabSize = vocabSize
        self.minFrequency = minFrequency
        self.limitAlphabet = limitAlphabet
        self.initialAlphabet = initialAlphabet
        self.specialTokens = specialTokens
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.normalization = normalization
        // Only the normalizer and pre-tokenizer are used; HF does not split special tokens out of training text.
        splitter = try! WordPieceTokenizer(tokens: ["[UNK]", "[CLS]", "[SEP]"], normalization: normalization, specialTokens: [])
    }

    /// Counts the words of one line (or any text) of UTF-8 bytes.
    public mutating func feed(utf8 bytes: UnsafeRawBufferPointer) {
        var counts = wordCounts
        wordCounts = [:]
        splitter.forEachWord(utf8: bytes) { counts[Array($0), default: 0] += 1 }
        wordCounts = counts
    }

    /// Counts the words of `text`.
    public mutating func feed(_ text: String) {
        var copy = text
        copy.withUTF8 { feed(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// Counts the words of a text file, streamed line by line (invalid UTF-8 reads as U+FFFD).
    public mutating func feed(file path: String) throws {
        var counts = wordCounts
        wordCounts = [:]
        defer { wordCounts = counts }
        try readLines(path: path) { line in
            splitter.forEachWord(utf8: line) { counts[Array($0), default: 0] += 1 }
        }
    }

    // MARK: - Training

    private struct Pair: Hashable, Comparable {
        var a: Int32, b: Int32
        static func < (l: Pair, r: Pair) -> Bool { l.a != r.a ? l.a < r.a : l.b < r.b }
    }

    private struct Merge {
        var pair: Pair
        var count: Int
        var positions: Set<Int>
        /// Heap order of the reference: higher count first, then the smaller pair.
        func before(_ other: Merge) -> Bool { count != other.count ? count > other.count : pair < other.pair }
    }

    /// A binary max-heap of merges in `Merge.before` order.
    private struct MergeQueue {
        var items: [Merge] = []
        var isEmpty: Bool { items.isEmpty }

        mutating func push(_ m: Merge) {
            items.append(m)
            var i = items.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if !items[i].before(items[parent]) { break }
                items.swapAt(i, parent)
                i = parent
            }
        }

        mutating func pop() -> Merge? {
            guard !items.isEmpty else { return nil }
            items.swapAt(0, items.count - 1)
            let top = items.removeLast()
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < items.count && items[l].before(items[best]) { best = l }
                if r < items.count && items[r].before(items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
            return top
        }
    }

    /// The trained vocabulary: tokens in id order.
    public func train() -> [String] {
        var idToWord: [String] = []
        var wordToID: [String: Int32] = [:]
        func add(_ token: String) -> Int32 {
            if let id = wordToID[token] { return id }
            idToWord.append(token)
            wordToID[token] = Int32(idToWord.count - 1)
            return Int32(idToWord.count - 1)
        }
        for token in specialTokens { _ = add(token) }

        let words = wordCounts.keys.sorted { $0.lexicographicallyPrecedes($1) }
        let counts = words.map { wordCounts[$0]! }
        let scalarsOfWords = words.map { Array(String(decoding: $0, as: UTF8.self).unicodeScalars) }

        var alphabet: [Unicode.Scalar: Int] = [:]
        for (scalars, count) in zip(scalarsOfWords, counts) { for c in scalars { alphabet[c, default: 0] += count } }
        for c in initialAlphabet { alphabet[c] = Int.max }
        var kept = alphabet.map { (scalar: $0.key, count: $0.value) }
        if let limitAlphabet, kept.count > limitAlphabet {
            kept.sort { $0.count != $1.count ? $0.count < $1.count : $0.scalar.value > $1.scalar.value }
            kept.removeFirst(kept.count - limitAlphabet)
        }
        kept.sort { $0.scalar.value < $1.scalar.value }
        for entry in kept { _ = add(String(entry.scalar)) }

        var symbols: [[Int32]] = []
        symbols.reserveCapacity(words.count)
        for scalars in scalarsOfWords {
            var word: [Int32] = []
            for (k, c) in scalars.enumerated() where wordToID[String(c)] != nil {
                word.append(add(k == 0 ? String(c) : continuingSubwordPrefix + String(c)))
            }
            symbols.append(word)
        }

        var pairCounts: [Pair: Int] = [:]
        var whereToUpdate: [Pair: Set<Int>] = [:]
        for (w, word) in symbols.enumerated() where word.count > 1 {
            for k in 0..<(word.count - 1) {
                let pair = Pair(a: word[k], b: word[k + 1])
                pairCounts[pair, default: 0] += counts[w]
                whereToUpdate[pair, default: []].insert(w)
            }
        }
        var queue = MergeQueue()
        for (pair, positions) in whereToUpdate.sorted(by: { $0.key < $1.key }) where pairCounts[pair]! > 0 {
            queue.push(Merge(pair: pair, count: pairCounts[pair]!, positions: positions))
        }
        whereToUpdate.removeAll()

        while wordToID.count < vocabSize, var top = queue.pop() {
            let current = pairCounts[top.pair] ?? 0
            if top.count != current {
                // A stale entry: requeue with the pair's current count (the reference's lazy update).
                top.count = current
                queue.push(top)
                continue
            }
            if top.count < 1 || top.count < minFrequency { break }
            var second = idToWord[Int(top.pair.b)]
            if let rest = second.droppingScalarPrefix(continuingSubwordPrefix) { second = rest }
            let newID = add(idToWord[Int(top.pair.a)] + second)

            for w in top.positions.sorted() {
                var word = symbols[w]
                var k = 0
                while k < word.count {
                    if word[k] == top.pair.a && k + 1 < word.count && word[k + 1] == top.pair.b {
                        var changes: [(Pair, Int)] = []
                        if k > 0 {
                            changes.append((Pair(a: word[k - 1], b: top.pair.a), -1))
                            changes.append((Pair(a: word[k - 1], b: newID), 1))
                        }
                        word.replaceSubrange(k...(k + 1), with: [newID])
                        if k < word.count - 1 {
                            changes.append((Pair(a: top.pair.b, b: word[k + 1]), -1))
                            changes.append((Pair(a: newID, b: word[k + 1]), 1))
                        }
                        for (pair, change) in changes {
                            pairCounts[pair, default: 0] += change * counts[w]
                            if change > 0 { whereToUpdate[pair, default: []].insert(w) }
                        }
                    }
                    k += 1
                }
                symbols[w] = word
            }
            for (pair, positions) in whereToUpdate.sorted(by: { $0.key < $1.key }) where pairCounts[pair]! > 0 {
                queue.push(Merge(pair: pair, count: pairCounts[pair]!, positions: positions))
            }
            whereToUpdate.removeAll(keepingCapacity: true)
        }
        return idToWord
    }

    /// Trains on `files` and writes the vocabulary to `output` (vocab.txt: one token a line, in id order).
    @discardableResult
    public mutating func train(files: [String], output: String) throws -> [String] {
        for file in files { try feed(file: file) }
        let tokens = train()
        let text = tokens.map { $0 + "\n" }.joined()
        do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch {
            throw DataError.io(path: output, reason: "cannot write the vocabulary: \(error.localizedDescription)")
        }
        return tokens
    }
}
