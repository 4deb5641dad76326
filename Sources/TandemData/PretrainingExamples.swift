/// How BERT pretraining examples are cut and masked (Devlin et al. 2019; google-research/bert's
/// `create_pretraining_data.py` defaults).
public struct PretrainingOptions: Sendable, Equatable {
    /// T: `[CLS] A [SEP] B [SEP]` plus padding.
    public var maxSequence = 128
    /// Masked positions per sequence at most (20 for T = 128, 80 for T = 512 in BERT).
    public var maxPredictions = 20
    public var maskProbability = 0.15
    /// Probability that a document's chunks aim at a random shorter length (2 ... T - 3).
    public var shortSequenceProbability = 0.1
    /// Mask whole words: a `##` continuation is masked with the piece before it.
    public var wholeWordMasking = false
    /// N-gram masking (ALBERT, Lan et al. 2020 §4.1): with a value n > 1, each masked unit is a run of
    /// 1...n consecutive whole words, its length drawn with P(k) proportional to 1/k (google-research/
    /// albert's `create_pretraining_data.py`, max_ngram 3). 1 masks single words (BERT).
    public var maxNgram = 1
    /// Sentence-order prediction (ALBERT §3.2) instead of next-sentence prediction: A and B are always
    /// two consecutive segments of one document, swapped with probability 0.5 (label 1).
    public var sentenceOrder = false
    /// Span masking (SpanBERT, Joshi et al. 2020 §3.1) instead of single words; nil: off.
    public var spanMasking: SpanMaskingOptions? = nil
    public init() {}
}

/// SpanBERT's span masking: spans of whole words, each starting at a word drawn with probability
/// proportional to its length (a token drawn uniformly, moved to its word's start, as the SpanBERT code
/// does) and running `k` words, k drawn from a geometric distribution with parameter `p` clipped at
/// `maxSpan` (P(k) proportional to p (1 - p)^(k - 1), k = 1...maxSpan: a mean of 3.8 words for p = 0.2
/// and 10), until 15% of the tokens are masked. Adjacent spans merge. A merged span is replaced as a
/// whole: 80% of spans by [MASK] tokens, 10% by random tokens, 10% kept.
public struct SpanMaskingOptions: Sendable, Equatable {
    /// The geometric distribution's parameter.
    public var p = 0.2
    /// The longest span in words.
    public var maxSpan = 10
    /// Rows of the span-boundary objective's relative position table: a token at offset `maxTargets` or
    /// more from its span's start has no SBO target (SpanBERT's `max_pair_targets`, 20).
    public var maxTargets = 20
    public init() {}
}

/// Where span masking writes each masked slot's span-boundary target (all maxPredictions long, in the
/// slots' ascending order): the positions of the tokens just left and right of its merged span, its
/// offset from the span's start, and its label (the original token, or -100 when the slot is unused or
/// the offset passes `SpanMaskingOptions.maxTargets`).
public struct SpanSlots {
    public let left: UnsafeMutablePointer<Int32>
    public let right: UnsafeMutablePointer<Int32>
    public let offset: UnsafeMutablePointer<Int32>
    public let label: UnsafeMutablePointer<Int32>
    public init(left: UnsafeMutablePointer<Int32>, right: UnsafeMutablePointer<Int32>, offset: UnsafeMutablePointer<Int32>,
                label: UnsafeMutablePointer<Int32>) {
        self.left = left; self.right = right; self.offset = offset; self.label = label
    }
}

/// The buffers one example is written into (the model's input tensors), all of length T except
/// `maskedPositions`/`maskedLabels` (maxPredictions) and `nextSentenceLabel` (1).
public struct PretrainingSlots {
    public let inputIDs: UnsafeMutablePointer<Int32>
    public let tokenTypeIDs: UnsafeMutablePointer<Int32>
    /// 1 for tokens, 0 for padding.
    public let attentionMask: UnsafeMutablePointer<Float>
    /// Positions (0..<T) of masked tokens, ascending; unused slots are 0 with label -100.
    public let maskedPositions: UnsafeMutablePointer<Int32>
    /// The original token at each masked position, or -100.
    public let maskedLabels: UnsafeMutablePointer<Int32>
    /// The pair's label: 0 when B follows A in the document; 1 when B is a random segment (NSP, HF's
    /// `next_sentence_label`) or when A and B are swapped (SOP, HF's `sentence_order_label`).
    public let nextSentenceLabel: UnsafeMutablePointer<Int32>
    /// The span-boundary targets, written by span masking (`PretrainingOptions.spanMasking`).
    public let spans: SpanSlots?

    public init(inputIDs: UnsafeMutablePointer<Int32>, tokenTypeIDs: UnsafeMutablePointer<Int32>,
                attentionMask: UnsafeMutablePointer<Float>, maskedPositions: UnsafeMutablePointer<Int32>,
                maskedLabels: UnsafeMutablePointer<Int32>, nextSentenceLabel: UnsafeMutablePointer<Int32>, spans: SpanSlots? = nil) {
        self.inputIDs = inputIDs; self.tokenTypeIDs = tokenTypeIDs; self.attentionMask = attentionMask
        self.maskedPositions = maskedPositions; self.maskedLabels = maskedLabels; self.nextSentenceLabel = nextSentenceLabel
        self.spans = spans
    }
}

/// BERT's MLM + NSP examples over token shards.
///
/// At start-up every document is cut, once, into chunks of whole sentences that reach a target length
/// (T - 3, or with probability 0.1 a random shorter one, drawn per document): one chunk is one sample, so
/// the sample count is fixed and the world-size-independent sampler can permute it. Everything else is
/// drawn anew for every (epoch, sample) from Philox, so each epoch sees new pairs and new masks and any
/// example can be rebuilt exactly after a resume on any rank: where A ends inside the chunk; with
/// probability 0.5 (always for a one-sentence chunk) B is a random segment of another document instead
/// of the chunk's rest; truncation of the longer side from a random end; dynamic masking of 15% of the
/// tokens (at most maxPredictions; 80% `[MASK]`, 10% a random token, 10% unchanged).
///
/// Unlike `create_pretraining_data.py`, the sentences a random B displaces are not put back for the
/// next example (chunks are fixed), and masking is redrawn every epoch (RoBERTa's dynamic masking).
///
/// With `sentenceOrder` (ALBERT's SOP) B is always the chunk's rest and the two are swapped with
/// probability 0.5. A one-sentence chunk is split inside its sentence at a random token, so that it still
/// gives two segments of one document (ALBERT's script makes such a chunk a random-next pair instead).
public final class PretrainingExamples {
    public let dataset: ShardDataset
    public let options: PretrainingOptions
    public let seed: UInt64
    private let cls: Int32, sep: Int32, pad: Int32
    private let masking: TokenMasking
    /// Per chunk: shard, first sentence (shard-local), sentence count, target length, global document.
    private var chunks: [(shard: Int32, first: Int32, count: Int32, target: Int32, document: Int32)] = []

    /// Philox streams of the draws (distinct from the sampler's and dropout's).
    static let chunkStream: UInt64 = 0x4E53_5043, pairStream: UInt64 = 0x4E53_5050

    public init(dataset: ShardDataset, tokenizer: WordPieceTokenizer, options: PretrainingOptions, seed: UInt64) throws {
        guard let mask = tokenizer.maskID, let pad = tokenizer.padID else {
            throw DataError.invalidArgument("the vocabulary has no [MASK] or [PAD] token, which BERT pretraining needs")
        }
        guard options.maxSequence >= 8 else { throw DataError.invalidArgument("data.seq_len \(options.maxSequence) is too short for sentence pairs") }
        self.dataset = dataset; self.options = options; self.seed = seed
        cls = tokenizer.clsID; sep = tokenizer.sepID; self.pad = pad
        masking = TokenMasking(options: options, seed: seed, wordPiece: tokenizer, mask: mask, pad: pad)
        cutChunks()
        guard !chunks.isEmpty else { throw DataError.invalidArgument("\(dataset.directory): no sentences to make examples from") }
    }

    /// Number of examples per epoch.
    public var count: Int { chunks.count }

    private func cutChunks() {
        let rng = Philox(seed: seed)
        let maxTokens = options.maxSequence - 3
        var globalDocument = 0
        for (s, reader) in dataset.shards.enumerated() {
            for d in 0..<reader.documentCount {
                defer { globalDocument += 1 }
                let sentences = reader.sentences(ofDocument: d)
                guard !sentences.isEmpty else { continue }
                var target = maxTokens
                if Double(rng.uniform(stream: Self.chunkStream, step: 0, index: UInt64(globalDocument))) < options.shortSequenceProbability {
                    target = 2 + rng.below(maxTokens - 1, stream: Self.chunkStream, step: 1, index: UInt64(globalDocument))
                }
                var first = sentences.lowerBound, length = 0
                for sentence in sentences {
                    length += reader.tokenRange(ofSentence: sentence).count
                    if sentence == sentences.upperBound - 1 || length >= target {
                        if length > 0 {
                            chunks.append((Int32(s), Int32(first), Int32(sentence + 1 - first), Int32(target), Int32(globalDocument)))
                        }
                        first = sentence + 1; length = 0
                    }
                }
            }
        }
    }

    /// Writes example `index` of `epoch` into `slots`.
    public func fill(example index: Int, epoch: Int, into slots: PretrainingSlots) {
        let c = chunks[index]
        let reader = dataset.shards[Int(c.shard)]
        let rng = Philox(seed: seed)
        let key = UInt64(epoch)
        var draw: UInt64 = UInt64(index) << 16
        func uniform() -> Double { draw += 1; return Double(rng.uniform(stream: Self.pairStream, step: key, index: draw)) }
        func below(_ n: Int) -> Int { draw += 1; return rng.below(n, stream: Self.pairStream, step: key, index: draw) }

        let n = Int(c.count), first = Int(c.first)
        let aEnd = n >= 2 ? 1 + below(n - 1) : 1
        var a = reader.tokenRange(ofSentence: first).lowerBound..<reader.tokenRange(ofSentence: first + aEnd - 1).upperBound
        var bReader = reader
        var b: Range<Int>
        var pairLabel: Int32
        if options.sentenceOrder {
            if n >= 2 {
                b = reader.tokenRange(ofSentence: first + aEnd).lowerBound..<reader.tokenRange(ofSentence: first + n - 1).upperBound
            } else {
                let sentence = a
                let cut = sentence.count >= 2 ? sentence.lowerBound + 1 + below(sentence.count - 1) : sentence.upperBound
                a = sentence.lowerBound..<cut
                b = cut..<sentence.upperBound
            }
            let swapped = !b.isEmpty && uniform() < 0.5
            if swapped { swap(&a, &b) }
            pairLabel = swapped ? 1 : 0
        } else if n == 1 || uniform() < 0.5 {
            pairLabel = 1
            // A segment of another document, starting at a random sentence, about as long as B should be.
            let documents = dataset.documentCount
            var other = below(documents)
            for _ in 0..<10 where other == Int(c.document) && documents > 1 { other = below(documents) }
            let (s, d) = dataset.locate(document: other)
            bReader = dataset.shards[s]
            let sentences = bReader.sentences(ofDocument: d)
            let start = sentences.lowerBound + below(max(1, sentences.count))
            let targetB = max(1, Int(c.target) - a.count)
            var end = start
            var length = 0
            while end < sentences.upperBound && length < targetB { length += bReader.tokenRange(ofSentence: end).count; end += 1 }
            b = bReader.tokenRange(ofSentence: start).lowerBound..<bReader.tokenRange(ofSentence: max(start, end - 1)).upperBound
        } else {
            pairLabel = 0
            b = reader.tokenRange(ofSentence: first + aEnd).lowerBound..<reader.tokenRange(ofSentence: first + n - 1).upperBound
        }
        // truncate_seq_pair: drop one token at a time from the longer side, at a random end.
        let maxTokens = options.maxSequence - 3
        while a.count + b.count > maxTokens {
            let front = uniform() < 0.5
            if a.count > b.count {
                a = front ? (a.lowerBound + 1)..<a.upperBound : a.lowerBound..<(a.upperBound - 1)
            } else {
                b = front ? (b.lowerBound + 1)..<b.upperBound : b.lowerBound..<(b.upperBound - 1)
            }
        }

        let T = options.maxSequence
        let ids = slots.inputIDs, types = slots.tokenTypeIDs
        ids[0] = cls; types[0] = 0
        reader.copyTokens(from: a.lowerBound, count: a.count, into: ids + 1)
        for i in 0...a.count { types[i] = 0 }
        ids[a.count + 1] = sep; types[a.count + 1] = 0
        let bStart = a.count + 2
        bReader.copyTokens(from: b.lowerBound, count: b.count, into: ids + bStart)
        let used = bStart + b.count + 1
        ids[used - 1] = sep
        for i in bStart..<used { types[i] = 1 }
        for i in used..<T { ids[i] = pad; types[i] = 0 }
        for i in 0..<T { slots.attentionMask[i] = i < used ? 1 : 0 }
        slots.nextSentenceLabel[0] = pairLabel
        masking.mask(used: used, epoch: key, index: UInt64(index), slots: slots)
    }

}
