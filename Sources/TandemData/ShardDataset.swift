import Foundation

/// `manifest.json` of a token shard directory (contract):
/// ```json
/// {"format": "tandem-token-shards", "version": 1,
///  "vocab_size": 30522, "vocab_hash": "<sha256 hex>", "token_bytes": 2,
///  "tokens": 0, "sentences": 0, "documents": 0,
///  "shards": [{"name": "train-00000", "tokens": 0, "sentences": 0, "documents": 0,
///              "bin_sha256": "<hex>", "idx_sha256": "<hex>"}]}
/// ```
/// `vocab_hash` is `WordPieceTokenizer.vocabHash`: SHA-256 of the token list in id order, each token
/// followed by "\n" (the bytes of the canonical vocab.txt, whichever file the vocabulary came from).
/// Shard `NAME` is the pair `NAME.bin` + `NAME.idx` of `TokenShardFormat`.
public struct TokenShardManifest: Codable, Equatable {
    /// One shard's entry: its name, counts and the SHA-256 of its two files.
    public struct Shard: Codable, Equatable {
        public var name: String
        public var tokens: Int
        public var sentences: Int
        public var documents: Int
        public var bin_sha256: String
        public var idx_sha256: String
    }

    /// The file name in a shard directory and the value of its "format" key.
    public static let fileName = "manifest.json"
    public static let formatName = "tandem-token-shards"

    /// The keys of the contract above.
    public var format: String = TokenShardManifest.formatName
    public var version: Int = 1
    public var vocab_size: Int
    public var vocab_hash: String
    public var token_bytes: Int
    public var tokens: Int
    public var sentences: Int
    public var documents: Int
    public var shards: [Shard]

    /// Builds the manifest of the shards `names` in `directory` by opening each one (validating it) and
    /// hashing its files. Under mpirun, rank 0 calls this once every rank has finished its shards.
    public static func build(directory: String, names: [String], vocabSize: Int, vocabHash: String) throws -> TokenShardManifest {
        var shards: [Shard] = []
        for name in names.sorted() {
            let reader = try TokenShardReader(directory: directory, name: name)
            shards.append(Shard(name: name, tokens: reader.tokenCount, sentences: reader.sentenceCount, documents: reader.documentCount,
                                bin_sha256: try sha256(ofFile: reader.binPath), idx_sha256: try sha256(ofFile: reader.idxPath)))
        }
        return TokenShardManifest(vocab_size: vocabSize, vocab_hash: vocabHash, token_bytes: TokenShardFormat.tokenWidth(vocabSize: vocabSize),
                                  tokens: shards.reduce(0) { $0 + $1.tokens }, sentences: shards.reduce(0) { $0 + $1.sentences },
                                  documents: shards.reduce(0) { $0 + $1.documents }, shards: shards)
    }

    /// Writes `directory/manifest.json` atomically.
    public func write(directory: String) throws { try ManifestFile.write(self, directory: directory) }

    /// Reads `directory/manifest.json`.
    public static func read(directory: String) throws -> TokenShardManifest {
        let (data, path) = try ManifestFile.contents(directory: directory, missing: "no shard manifest (run tandem prepare-text)")
        let manifest: TokenShardManifest
        do { manifest = try JSONDecoder().decode(TokenShardManifest.self, from: data) } catch {
            throw DataError.invalidFormat(path: path, reason: "not a token shard manifest: \(error)")
        }
        guard manifest.format == formatName, manifest.version == 1 else {
            throw DataError.invalidFormat(path: path, reason: "format \(manifest.format) version \(manifest.version), expected \(formatName) version 1")
        }
        return manifest
    }
}

/// SHA-256 (hex) of a file, read through mmap.
public func sha256(ofFile path: String) throws -> String {
    let file = try MappedFile(path: path)
    var hasher = SHA256()
    hasher.update(UnsafeRawBufferPointer(start: file.base, count: file.size))
    return hasher.finalizeHex()
}

/// The shards of a directory written by `prepareText`, checked against its manifest and against the
/// vocabulary of the run, with documents numbered globally across shards (in manifest order).
public final class ShardDataset {
    /// The directory, its manifest and one reader per manifest shard, in manifest order.
    public let directory: String
    public let manifest: TokenShardManifest
    public let shards: [TokenShardReader]
    /// `documentOffsets[i]` is the global index of shard `i`'s first document; the last entry is the total.
    private let documentOffsets: [Int]
    /// `tokenOffsets[i]` is the global index of shard `i`'s first token; the last entry is the total.
    private let tokenOffsets: [Int]

    /// Opens every shard of the manifest in `directory`.
    /// - Parameters:
    ///   - vocabHash: the run's `WordPieceTokenizer.vocabHash`; a different manifest hash is an error naming the manifest.
    ///   - vocabSize: the run's vocabulary size, checked likewise when given.
    ///   - verifyChecksums: also hash every shard file and compare with the manifest (reads all the data once).
    public init(directory: String, vocabHash: String?, vocabSize: Int? = nil, verifyChecksums: Bool = false) throws {
        self.directory = directory
        let manifest = try TokenShardManifest.read(directory: directory)
        let manifestPath = (directory as NSString).appendingPathComponent(TokenShardManifest.fileName)
        if let vocabHash, vocabHash != manifest.vocab_hash {
            throw DataError.vocabMismatch(path: manifestPath, expected: vocabHash, found: manifest.vocab_hash)
        }
        if let vocabSize, vocabSize != manifest.vocab_size {
            throw DataError.invalidFormat(path: manifestPath, reason: "vocab_size \(manifest.vocab_size), this run's vocabulary has \(vocabSize)")
        }
        var readers: [TokenShardReader] = []
        var offsets = [0]
        var tokens = [0]
        for shard in manifest.shards {
            let reader = try TokenShardReader(directory: directory, name: shard.name)
            guard reader.tokenCount == shard.tokens, reader.sentenceCount == shard.sentences, reader.documentCount == shard.documents else {
                throw DataError.invalidFormat(path: reader.idxPath, reason: "counts (\(reader.tokenCount) tokens, \(reader.sentenceCount) sentences, \(reader.documentCount) documents) differ from \(manifestPath)")
            }
            guard reader.tokenWidth == manifest.token_bytes else {
                throw DataError.invalidFormat(path: reader.binPath, reason: "\(reader.tokenWidth)-byte tokens, \(manifestPath) says \(manifest.token_bytes)")
            }
            if verifyChecksums {
                for (path, expected) in [(reader.binPath, shard.bin_sha256), (reader.idxPath, shard.idx_sha256)] where try sha256(ofFile: path) != expected {
                    throw DataError.invalidFormat(path: path, reason: "SHA-256 differs from \(manifestPath)")
                }
            }
            readers.append(reader)
            offsets.append(offsets.last! + reader.documentCount)
            tokens.append(tokens.last! + reader.tokenCount)
        }
        self.manifest = manifest
        shards = readers
        documentOffsets = offsets
        tokenOffsets = tokens
    }

    /// Opens `directory` for the vocabulary of `tokenizer`.
    public convenience init(directory: String, tokenizer: any TextTokenizer, verifyChecksums: Bool = false) throws {
        try self.init(directory: directory, vocabHash: tokenizer.vocabHash, vocabSize: tokenizer.vocabSize, verifyChecksums: verifyChecksums)
    }

    /// Totals over all shards.
    public var documentCount: Int { documentOffsets.last! }
    public var sentenceCount: Int { manifest.sentences }
    public var tokenCount: Int { manifest.tokens }

    /// The shard and local document index of global document `d`.
    public func locate(document d: Int) -> (shard: Int, document: Int) {
        precondition(d >= 0 && d < documentCount, "document \(d) out of 0..<\(documentCount) in \(directory)")
        var lo = 0, hi = shards.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if documentOffsets[mid] <= d { lo = mid } else { hi = mid - 1 }
        }
        return (lo, d - documentOffsets[lo])
    }

    /// Copies global tokens [start, start + n), shards taken in manifest order as one stream, into `out`
    /// (for training on contiguous windows rather than sentence pairs).
    public func copyTokens(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && n >= 0 && start + n <= tokenCount, "tokens \(start)..<\(start + n) out of 0..<\(tokenCount) in \(directory)")
        var position = start, done = 0
        var shard = 0
        while shard + 1 < shards.count && tokenOffsets[shard + 1] <= position { shard += 1 }
        while done < n {
            let local = position - tokenOffsets[shard]
            let take = min(n - done, shards[shard].tokenCount - local)
            shards[shard].copyTokens(from: local, count: take, into: out + done)
            done += take
            position += take
            shard += 1
        }
    }

    /// The sentences of global document `d`, each a view of its tokens.
    public func sentences(ofDocument d: Int) -> [TokenSlice] {
        let (s, local) = locate(document: d)
        let reader = shards[s]
        return reader.sentences(ofDocument: local).map { reader.tokens(ofSentence: $0) }
    }
}
