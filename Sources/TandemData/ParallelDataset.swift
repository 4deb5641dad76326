import Foundation

/// Sentence pairs for seq2seq training: a source and a target token-shard directory, each written by
/// `tandem prepare-text --line-aligned` from one side of a parallel corpus (train.src, train.tgt of
/// `tandem prepare-translation`) with that side's vocabulary. Sentence i of the source (counted across
/// shards in manifest order) translates sentence i of the target.
public final class ParallelDataset {
    /// The two sides, each checked against its vocabulary.
    public let source: ShardDataset
    public let target: ShardDataset
    /// Token counts of every pair's source and target sentence: what length bucketing sorts by.
    public let sourceLengths: [Int]
    public let targetLengths: [Int]

    /// Opens both directories; a side made with another vocabulary, or sides with different numbers of
    /// sentences, are errors naming the directories.
    public init(sourceDirectory: String, sourceVocab: WordPieceTokenizer, targetDirectory: String, targetVocab: WordPieceTokenizer,
                verifyChecksums: Bool = false) throws {
        source = try ShardDataset(directory: sourceDirectory, tokenizer: sourceVocab, verifyChecksums: verifyChecksums)
        target = try ShardDataset(directory: targetDirectory, tokenizer: targetVocab, verifyChecksums: verifyChecksums)
        guard source.sentenceCount == target.sentenceCount else {
            throw DataError.invalidFormat(path: "\(sourceDirectory) and \(targetDirectory)",
                                          reason: "\(source.sentenceCount) source sentences but \(target.sentenceCount) target sentences: the sides are not aligned (make both with tandem prepare-text --line-aligned from the same prepare-translation split)")
        }
        sourceLengths = Self.lengths(source)
        targetLengths = Self.lengths(target)
    }

    /// Number of pairs.
    public var count: Int { sourceLengths.count }

    /// Pair `i`: the token ids of both sentences (views into the shards) and their lengths.
    public func pair(_ i: Int) -> (source: TokenSlice, target: TokenSlice) {
        precondition(i >= 0 && i < count, "pair \(i) out of 0..<\(count) in \(source.directory)")
        return (sentence(i, of: source), sentence(i, of: target))
    }

    private func sentence(_ i: Int, of side: ShardDataset) -> TokenSlice {
        var local = i
        for reader in side.shards {
            if local < reader.sentenceCount { return reader.tokens(ofSentence: local) }
            local -= reader.sentenceCount
        }
        preconditionFailure("pair \(i) out of range in \(side.directory)")
    }

    private static func lengths(_ side: ShardDataset) -> [Int] {
        var lengths: [Int] = []
        lengths.reserveCapacity(side.sentenceCount)
        for reader in side.shards {
            for s in 0..<reader.sentenceCount { lengths.append(reader.tokenRange(ofSentence: s).count) }
        }
        return lengths
    }
}

// MARK: - Length bucketing

/// A world-size-independent order of samples in which each global batch holds samples of similar length,
/// so that little of a padded batch is padding. For (seed, epoch): a Philox shuffle of all samples; each
/// run of `chunkBatches` x G consecutive samples sorted by length (stable; ties by the secondary length);
/// cut into global batches of G; the full batches shuffled; the `count mod G` samples left over (from the
/// last chunk) at the end. Global batch k is then positions [kG, (k+1)G) of the order and rank r takes its
/// contiguous part, as with `Sampler`'s permutation, so the order does not depend on the number of ranks
/// (pass `order(epoch:)` to `Sampler(count:globalBatch:seed:lastBatch:order:)`).
public struct LengthBucketing: Sendable {
    /// Philox stream of the bucketing ("BUCK"), unrelated to the sampler's and dropout's draws.
    public static let stream: UInt64 = 0x4255_434B

    public let lengths: [Int]
    public let secondaryLengths: [Int]?
    public let globalBatch: Int
    public let seed: UInt64
    /// Global batches per sorted chunk: larger gives tighter batches, smaller more randomness.
    public let chunkBatches: Int

    /// Bucketing by `lengths` (e.g. the source lengths), ties broken by `secondaryLengths` (the target's).
    public init(lengths: [Int], secondaryLengths: [Int]? = nil, globalBatch: Int, seed: UInt64, chunkBatches: Int = 100) {
        precondition(globalBatch > 0 && chunkBatches > 0, "bucketing needs a positive global batch and chunk")
        precondition(secondaryLengths == nil || secondaryLengths!.count == lengths.count, "secondary lengths must match the lengths")
        self.lengths = lengths
        self.secondaryLengths = secondaryLengths
        self.globalBatch = globalBatch
        self.seed = seed
        self.chunkBatches = chunkBatches
    }

    /// The order of all `lengths.count` sample indices for `epoch`.
    public func order(epoch: Int) -> [Int] {
        let n = lengths.count
        let rng = Philox(seed: seed)
        var shuffled = Array(0..<n)
        var i = n - 1
        while i > 0 {
            shuffled.swapAt(i, rng.below(i + 1, stream: Self.stream, step: UInt64(2 * epoch), index: UInt64(i)))
            i -= 1
        }
        let chunk = chunkBatches * globalBatch
        var batches: [ArraySlice<Int>] = []
        var rest: ArraySlice<Int> = []
        var start = 0
        while start < n {
            let end = min(n, start + chunk)
            // Stable: ties keep their shuffled order.
            let sorted = shuffled[start..<end].enumerated().sorted { a, b in
                let (x, y) = (a.element, b.element)
                if lengths[x] != lengths[y] { return lengths[x] < lengths[y] }
                if let s = secondaryLengths, s[x] != s[y] { return s[x] < s[y] }
                return a.offset < b.offset
            }.map(\.element)
            var b = 0
            while b + globalBatch <= sorted.count {
                batches.append(sorted[b..<(b + globalBatch)])
                b += globalBatch
            }
            rest = sorted[b...]
            start = end
        }
        var j = batches.count - 1
        while j > 0 {
            batches.swapAt(j, rng.below(j + 1, stream: Self.stream, step: UInt64(2 * epoch + 1), index: UInt64(j)))
            j -= 1
        }
        return batches.flatMap { $0 } + rest
    }

    /// The mean over global batches (positions [kG, (k+1)G) of `order`, full batches only) of the fraction
    /// of a batch padded to its longest sample that is padding.
    public static func meanPaddingFraction(lengths: [Int], order: [Int], batch: Int) -> Double {
        var total = 0.0
        var batches = 0
        var k = 0
        while k + batch <= order.count {
            let part = order[k..<(k + batch)].map { lengths[$0] }
            let longest = part.max() ?? 0
            if longest > 0 {
                total += Double(batch * longest - part.reduce(0, +)) / Double(batch * longest)
                batches += 1
            }
            k += batch
        }
        return batches > 0 ? total / Double(batches) : 0
    }
}
