/// RoBERTa's FULL-SENTENCES inputs (Liu et al. 2019, section 4.2) over token shards, with dynamic masking
/// and no next-sentence prediction.
///
/// At start-up the documents are read in order and cut, once, into chunks of whole sentences packed up to
/// T - 2 tokens: a chunk may cross document boundaries, with the separator (`</s>`) between documents, as
/// fairseq's `TokenBlockDataset` in `complete` mode does; a sentence longer than T - 2 is split into
/// pieces of T - 2 so that no text is lost; chunks do not cross shard files. One chunk is one sample:
/// `<s> chunk </s>` and padding. The masking (`TokenMasking`) is drawn anew for every (epoch, sample), so
/// each epoch sees new masks (dynamic masking) and any example can be rebuilt exactly after a resume on
/// any number of ranks.
public final class FullSentenceExamples {
    public let dataset: ShardDataset
    public let options: PretrainingOptions
    private let stream: ShardTokenStream
    private let bos: Int32, eos: Int32, pad: Int32
    private let masking: TokenMasking
    /// Per chunk: first stream position and length (at most T - 2).
    private var starts: [Int] = []
    private var lengths: [Int32] = []

    /// `bos`, `eos` (the separator between documents and the end of every sample), `pad` and `mask` are
    /// the tokenizer's `<s>`, `</s>`, `<pad>` and `<mask>`; `special` lists every id never masked nor
    /// drawn as a random replacement; `isContinuation` says which ids continue a word (whole-word masking).
    public init(dataset: ShardDataset, options: PretrainingOptions, seed: UInt64, bos: Int32, eos: Int32, pad: Int32,
                mask: Int32, special: [Int32], isContinuation: [Bool]) throws {
        guard options.maxSequence >= 4 else {
            throw DataError.invalidArgument("data.seq_len \(options.maxSequence) is too short for <s> ... </s> samples")
        }
        self.dataset = dataset; self.options = options
        self.bos = bos; self.eos = eos; self.pad = pad
        stream = try ShardTokenStream(dataset: dataset, separator: eos, segments: .documentsEachPreceded)
        masking = TokenMasking(options: options, seed: seed, maskID: mask, vocabSize: dataset.manifest.vocab_size,
                               special: special, isContinuation: isContinuation)
        cutChunks()
        guard !starts.isEmpty else { throw DataError.invalidArgument("\(dataset.directory): no sentences to make examples from") }
    }

    /// The same over a WordPiece vocabulary (SpanBERT's single segments): `[CLS] chunk [SEP]`, `[SEP]`
    /// between documents, `[PAD]` padding; [CLS], [SEP], [UNK], [MASK] and [PAD] are never masked, and a
    /// `##` piece continues its word.
    public convenience init(dataset: ShardDataset, tokenizer: WordPieceTokenizer, options: PretrainingOptions, seed: UInt64) throws {
        guard let mask = tokenizer.maskID, let pad = tokenizer.padID else {
            throw DataError.invalidArgument("the vocabulary has no [MASK] or [PAD] token, which masked-LM pretraining needs")
        }
        try self.init(dataset: dataset, options: options, seed: seed, bos: tokenizer.clsID, eos: tokenizer.sepID, pad: pad, mask: mask,
                      special: [tokenizer.clsID, tokenizer.sepID, tokenizer.unkID, mask, pad],
                      isContinuation: tokenizer.tokens.map { $0.droppingScalarPrefix(tokenizer.continuingSubwordPrefix) != nil })
    }

    /// Number of examples per epoch.
    public var count: Int { starts.count }

    /// Walks the stream as ShardTokenStream lays it out (each non-empty document preceded by the
    /// separator) and packs whole sentences.
    private func cutChunks() {
        let capacity = options.maxSequence - 2
        var position = 0
        var chunkStart: Int? = nil, chunkEnd = 0
        func close() {
            if let start = chunkStart { starts.append(start); lengths.append(Int32(chunkEnd - start)) }
            chunkStart = nil
        }
        for reader in dataset.shards {
            for d in 0..<reader.documentCount {
                let sentences = reader.sentences(ofDocument: d)
                guard !sentences.isEmpty else { continue }
                position += 1  // the separator before the document
                for sentence in sentences {
                    let begin = position, end = position + reader.tokenRange(ofSentence: sentence).count
                    position = end
                    guard end > begin else { continue }
                    if let start = chunkStart, end - start > capacity { close() }
                    if chunkStart == nil {
                        var s = begin
                        while end - s > capacity { starts.append(s); lengths.append(Int32(capacity)); s += capacity }
                        chunkStart = s
                    }
                    chunkEnd = end
                }
            }
            close()
        }
    }

    /// Writes example `index` of `epoch` into `slots` (token types 0; `nextSentenceLabel` -100).
    public func fill(example index: Int, epoch: Int, into slots: PretrainingSlots) {
        let T = options.maxSequence, n = Int(lengths[index])
        let ids = slots.inputIDs
        ids[0] = bos
        stream.copy(from: starts[index], count: n, into: ids + 1)
        ids[n + 1] = eos
        let used = n + 2
        for i in used..<T { ids[i] = pad }
        for i in 0..<T { slots.tokenTypeIDs[i] = 0; slots.attentionMask[i] = i < used ? 1 : 0 }
        slots.nextSentenceLabel[0] = -100
        masking.mask(used: used, epoch: UInt64(epoch), index: UInt64(index), slots: slots)
    }

    /// The tokens of example `index` before masking, for tests: `<s>`, the chunk, `</s>`.
    public func tokens(ofExample index: Int) -> [Int32] {
        let n = Int(lengths[index])
        var out = [Int32](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { stream.copy(from: starts[index], count: n, into: $0.baseAddress!) }
        return [bos] + out + [eos]
    }
}
