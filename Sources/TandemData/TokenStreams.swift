import Foundation

/// A stream of token ids that training windows are cut from.
public protocol TokenSource: AnyObject {
    /// Number of tokens.
    var count: Int { get }
    /// Vocabulary size the ids come from.
    var vocabSize: Int { get }
    /// Copies tokens [start, start + n) into `out`.
    func copy(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>)
    /// Where the tokens come from, for messages.
    var origin: String { get }
}

/// The bytes of a text file as tokens (vocabulary 256), memory-mapped: a byte-level language model needs
/// no tokenizer, which makes it the smallest real training job.
public final class ByteTokens: TokenSource {
    public let origin: String
    private let data: Data

    public init(path: String) throws {
        origin = path
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw DataError.io(path: path, reason: "cannot read training text (\(error.localizedDescription))")
        }
        guard data.count >= 2 else { throw DataError.invalidFormat(path: path, reason: "the text is empty") }
    }

    public var count: Int { data.count }
    public var vocabSize: Int { 256 }

    public func copy(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>) {
        data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            for i in 0..<n { out[i] = Int32(bytes[start + i]) }
        }
    }
}

/// The sentences of a token-shard directory (`tandem prepare-text`) as one stream of segments with a
/// `separator` token, memory-mapped, in one of two ways (`Segments`):
/// - `.sentencesEachFollowed`: each sentence followed by the separator (a line-end token, such as the
///   [SEP] of a WordPiece vocabulary, as PyTorch's word_language_model appends <eos> to every line);
/// - `.documentsEachPreceded`: each document's sentences back to back, the document preceded by the
///   separator (GPT-2's `<|endoftext|>` between documents, whose lines keep their "\n" tokens), so that a
///   separator starts every document and a model may restart attention and positions there.
/// Finding a position costs a binary search over the segments' stream offsets (one Int per segment).
public final class ShardTokenStream: TokenSource {
    public enum Segments: Sendable { case sentencesEachFollowed, documentsEachPreceded }

    public let origin: String
    public let vocabSize: Int
    public let separator: Int32
    public let segments: Segments
    private let dataset: ShardDataset
    /// Stream offset of segment j's first position, for j in 0...segments (the last is the stream's length).
    private let starts: [Int]
    /// Dataset token offset of segment j's first token.
    private let tokenStarts: [Int]

    public init(dataset: ShardDataset, separator: Int32, segments: Segments = .sentencesEachFollowed) throws {
        origin = dataset.directory
        vocabSize = dataset.manifest.vocab_size
        guard (0..<Int32(vocabSize)).contains(separator) else {
            throw DataError.invalidArgument("\(dataset.directory): separator id \(separator) is outside the vocabulary of \(vocabSize)")
        }
        self.separator = separator
        self.segments = segments
        self.dataset = dataset
        var starts = [0], tokenStarts = [Int]()
        let count = segments == .sentencesEachFollowed ? dataset.sentenceCount : dataset.documentCount
        starts.reserveCapacity(count + 1)
        tokenStarts.reserveCapacity(count)
        var tokenBase = 0
        for reader in dataset.shards {
            switch segments {
            case .sentencesEachFollowed:
                for s in 0..<reader.sentenceCount {
                    let r = reader.tokenRange(ofSentence: s)
                    tokenStarts.append(tokenBase + r.lowerBound)
                    starts.append(starts.last! + r.count + 1)
                }
            case .documentsEachPreceded:
                for d in 0..<reader.documentCount {
                    let sentences = reader.sentences(ofDocument: d)
                    guard let first = sentences.first, let last = sentences.last else { continue }
                    let begin = reader.tokenRange(ofSentence: first).lowerBound, end = reader.tokenRange(ofSentence: last).upperBound
                    tokenStarts.append(tokenBase + begin)
                    starts.append(starts.last! + (end - begin) + 1)
                }
            }
            tokenBase += reader.tokenCount
        }
        self.starts = starts
        self.tokenStarts = tokenStarts
        guard starts.last! >= 2 else { throw DataError.invalidFormat(path: dataset.directory, reason: "the shards hold no tokens") }
    }

    /// Segments (sentences or documents) in the stream.
    public var segmentCount: Int { starts.count - 1 }

    public var count: Int { starts.last! }

    public func copy(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && start + n <= count, "stream positions \(start)..<\(start + n) outside 0..<\(count)")
        // The sentence holding `start`: the last j with starts[j] <= start.
        var lo = 0, hi = starts.count - 2
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= start { lo = mid } else { hi = mid - 1 }
        }
        // Within segment j, the separator sits at offset `length` (after the tokens) or 0 (before them).
        let leading = segments == .documentsEachPreceded ? 1 : 0
        var j = lo, position = start, done = 0
        while done < n {
            let offset = position - starts[j] - leading, length = starts[j + 1] - starts[j] - 1
            if offset >= 0 && offset < length {
                let take = min(length - offset, n - done)
                dataset.copyTokens(from: tokenStarts[j] + offset, count: take, into: out + done)
                done += take
                position += take
                if leading == 1 && offset + take == length { j += 1 }
            } else {
                out[done] = separator
                done += 1
                position += 1
                if leading == 0 || length == 0 { j += 1 }
            }
        }
    }
}
