import Foundation

/// Dynamic masking for masked-LM pretraining, shared by BERT's sentence pairs and RoBERTa's full
/// sentences: shuffle the words (single pieces, or whole words with their continuation pieces), take
/// them until `maskProbability` of the tokens or `maxPredictions` are masked, replace 80% with the mask
/// token, 10% with a random token of the vocabulary and keep 10%, and list the positions in ascending
/// order. The draws come from Philox keyed by (seed, epoch, example), so each epoch masks anew and any
/// example can be rebuilt exactly after a resume on any rank.
///
/// With `maxNgram` n > 1 (ALBERT's n-gram masking) the units are whole words, and each shuffled word
/// starts a run of k consecutive words, k drawn with P(k) proportional to 1/k for k = 1...n (the run stops
/// at the last word); as in google-research/albert's `create_pretraining_data.py`, a run that would pass
/// the budget is shortened word by word, and one that overlaps a masked word is skipped. A run may
/// cross a [SEP], as in the script, whose candidate words skip the special tokens too.
///
/// With `spanMasking` (SpanBERT) the units are spans of whole words (`SpanMaskingOptions`): a span never
/// crosses a special token nor a masked word, a span whose first word would pass the budget is dropped,
/// and one that would is cut at the last word that fits; runs of adjacent masked tokens are merged spans,
/// each replaced as a whole (80% [MASK], 10% random tokens, 10% kept), and `PretrainingSlots.spans`
/// receives every masked token's span-boundary target.
public final class TokenMasking {
    public let options: PretrainingOptions
    public let seed: UInt64
    private let mask: Int32
    private let vocabSize: Int
    /// Whether a token id continues the word before it (for whole-word masking).
    private let isContinuation: [Bool]
    /// Tokens that are never masked nor drawn as random replacements: the special tokens.
    private let isSpecial: [Bool]
    // Scratch, reused by every `mask` (one TokenMasking per examples object, one of those per thread).
    private var candidates: [Int32]
    private var wordStarts: [Int32]
    private var wordEnds: [Int32]
    private var covered: [Bool]
    /// Span masking: the word of each token that may be masked, in order.
    private var anchors: [Int32]
    /// The cumulative distribution of n-gram lengths 1...maxNgram, P(k) proportional to 1/k.
    private let ngramCDF: [Double]
    /// The cumulative distribution of span lengths 1...maxSpan, P(k) proportional to p (1 - p)^(k - 1).
    private let spanCDF: [Double]

    /// The Philox stream of the masking draws (distinct from the sampler's, dropout's and the examples').
    static let maskStream: UInt64 = 0x4D4C_4D4D
    /// The n-gram lengths' draws, a stream of their own so that the other draws stay BERT's.
    static let ngramStream: UInt64 = 0x4E47_524D
    /// The spans' anchors and lengths.
    static let spanStream: UInt64 = 0x5350_414E

    public init(options: PretrainingOptions, seed: UInt64, maskID: Int32, vocabSize: Int, special: [Int32], isContinuation: [Bool]) {
        self.options = options; self.seed = seed; mask = maskID; self.vocabSize = vocabSize
        self.isContinuation = isContinuation
        var isSpecial = [Bool](repeating: false, count: vocabSize)
        for id in special { isSpecial[Int(id)] = true }
        self.isSpecial = isSpecial
        candidates = [Int32](repeating: 0, count: options.maxSequence)
        wordStarts = [Int32](repeating: 0, count: options.maxSequence)
        wordEnds = [Int32](repeating: 0, count: options.maxSequence)
        covered = [Bool](repeating: false, count: options.maxSequence)
        anchors = [Int32](repeating: 0, count: options.maxSequence)
        ngramCDF = Self.cumulative((1...max(1, options.maxNgram)).map { 1 / Double($0) })
        let span = options.spanMasking ?? SpanMaskingOptions()
        spanCDF = Self.cumulative((1...max(1, span.maxSpan)).map { span.p * pow(1 - span.p, Double($0 - 1)) })
    }

    /// Masking over a WordPiece vocabulary: [CLS], [SEP], [UNK], [MASK] and [PAD] are never masked, and a
    /// `##` piece continues its word.
    public convenience init(options: PretrainingOptions, seed: UInt64, wordPiece tokenizer: WordPieceTokenizer, mask: Int32, pad: Int32) {
        self.init(options: options, seed: seed, maskID: mask, vocabSize: tokenizer.vocabSize,
                  special: [tokenizer.clsID, tokenizer.sepID, tokenizer.unkID, mask, pad],
                  isContinuation: tokenizer.tokens.map { $0.droppingScalarPrefix(tokenizer.continuingSubwordPrefix) != nil })
    }

    /// A 32-bit draw scaled into 0..<n (Lemire's multiply-shift; the parentheses matter: Swift's `>>`
    /// binds tighter than `*`).
    private static func below(_ n: Int, _ x: UInt32) -> Int { Int((UInt64(x) &* UInt64(n)) >> 32) }

    private static func cumulative(_ weights: [Double]) -> [Double] {
        let total = weights.reduce(0, +)
        var sum = 0.0
        return weights.map { sum += $0; return sum / total }
    }

    private static func probabilities(_ cdf: [Double]) -> [Double] { cdf.indices.map { $0 == 0 ? cdf[0] : cdf[$0] - cdf[$0 - 1] } }

    /// The probability of each n-gram length 1...maxNgram (P(k) proportional to 1/k).
    public var ngramProbabilities: [Double] { Self.probabilities(ngramCDF) }

    /// The probability of each span length 1...maxSpan in words (span masking).
    public var spanProbabilities: [Double] { Self.probabilities(spanCDF) }

    /// Masks the first `used` tokens of `slots.inputIDs` (special tokens excepted) and fills
    /// `maskedPositions`/`maskedLabels`, unused slots with position 0 and label -100.
    public func mask(used: Int, epoch: UInt64, index: UInt64, slots: PretrainingSlots) {
        let ids = slots.inputIDs
        let rng = Philox(seed: seed)
        var draw = index << 16
        var words = 0, i = 0
        while i < used {
            if isSpecial[Int(ids[i])] { i += 1; continue }
            var end = i + 1
            if options.wholeWordMasking || options.maxNgram > 1 || options.spanMasking != nil {
                while end < used && !isSpecial[Int(ids[end])] && isContinuation[Int(ids[end])] { end += 1 }
            }
            wordStarts[words] = Int32(i); wordEnds[words] = Int32(end); words += 1
            i = end
        }
        let toPredict = min(options.maxPredictions, max(1, Int((Double(used) * options.maskProbability).rounded())))
        if let span = options.spanMasking {
            let masked = maskSpans(words: words, toPredict: toPredict, epoch: epoch, index: index, slots: slots)
            sortPrefix(slots.maskedPositions, slots.maskedLabels, count: masked)
            replaceSpans(masked: masked, used: used, span: span, epoch: epoch, index: index, slots: slots)
            for m in masked..<options.maxPredictions { slots.maskedPositions[m] = 0; slots.maskedLabels[m] = -100 }
            return
        }
        for w in 0..<words { candidates[w] = Int32(w) }
        var w = words - 1
        while w > 0 {
            draw += 1
            candidates.swapAt(w, rng.below(w + 1, stream: Self.maskStream, step: epoch, index: draw))
            w -= 1
        }
        var masked = 0
        if options.maxNgram > 1 {
            masked = maskNgrams(words: words, toPredict: toPredict, epoch: epoch, index: index, slots: slots)
        } else {
            for k in 0..<words where masked < toPredict {
                let start = Int(wordStarts[Int(candidates[k])]), end = Int(wordEnds[Int(candidates[k])])
                guard masked + (end - start) <= toPredict else { continue }
                for p in start..<end {
                    slots.maskedPositions[masked] = Int32(p)
                    slots.maskedLabels[masked] = ids[p]
                    masked += 1
                }
            }
        }
        sortPrefix(slots.maskedPositions, slots.maskedLabels, count: masked)
        for m in 0..<masked {
            draw += 1
            let block = rng.block(stream: Self.maskStream, step: epoch, index: draw)
            let u = Double(block.0 >> 8) / 16_777_216.0
            let p = Int(slots.maskedPositions[m])
            if u < 0.8 {
                ids[p] = mask
            } else if u >= 0.9 {
                // A random token of the vocabulary (special tokens excepted: the original is kept instead).
                let r = Self.below(vocabSize, block.1)
                ids[p] = isSpecial[r] ? slots.maskedLabels[m] : Int32(r)
            }
        }
        for m in masked..<options.maxPredictions { slots.maskedPositions[m] = 0; slots.maskedLabels[m] = -100 }
    }

    /// Takes runs of words from each shuffled start in turn (see the type's comment) and returns how many
    /// positions it listed (unsorted).
    private func maskNgrams(words: Int, toPredict: Int, epoch: UInt64, index: UInt64, slots: PretrainingSlots) -> Int {
        let rng = Philox(seed: seed)
        var masked = 0
        for w in 0..<words { covered[w] = false }
        for k in 0..<words where masked < toPredict {
            let first = Int(candidates[k])
            let u = Double(rng.uniform(stream: Self.ngramStream, step: epoch, index: index << 16 + UInt64(k)))
            var n = 1 + (ngramCDF.firstIndex { u < $0 } ?? ngramCDF.count - 1)
            func tokens(_ n: Int) -> Int { Int(wordEnds[min(first + n, words) - 1] - wordStarts[first]) }
            while n > 1 && masked + tokens(n) > toPredict { n -= 1 }
            let last = min(first + n, words)
            guard masked + tokens(n) <= toPredict, !(first..<last).contains(where: { covered[$0] }) else { continue }
            masked = mask(words: first..<last, listedFrom: masked, slots: slots)
        }
        return masked
    }

    /// Marks `words` covered and lists their tokens as masked positions (with their original ids as
    /// labels) from slot `listed` on; returns the new count of listed positions.
    private func mask(words: Range<Int>, listedFrom listed: Int, slots: PretrainingSlots) -> Int {
        var masked = listed
        for w in words {
            covered[w] = true
            for p in Int(wordStarts[w])..<Int(wordEnds[w]) {
                slots.maskedPositions[masked] = Int32(p)
                slots.maskedLabels[masked] = slots.inputIDs[p]
                masked += 1
            }
        }
        return masked
    }

    /// Draws spans (see `SpanMaskingOptions`) until `toPredict` tokens are masked or the draws run out
    /// (4 per word: the words left may all be too long for the budget); returns how many positions it
    /// listed (unsorted).
    private func maskSpans(words: Int, toPredict: Int, epoch: UInt64, index: UInt64, slots: PretrainingSlots) -> Int {
        var tokens = 0
        for w in 0..<words {
            covered[w] = false
            for _ in wordStarts[w]..<wordEnds[w] { anchors[tokens] = Int32(w); tokens += 1 }
        }
        guard tokens > 0 else { return 0 }
        let rng = Philox(seed: seed)
        var masked = 0
        for attempt in 0..<UInt64(4 * words) where masked < toPredict {
            let block = rng.block(stream: Self.spanStream, step: epoch, index: index << 16 + attempt)
            let first = Int(anchors[Self.below(tokens, block.0)])
            guard !covered[first] else { continue }
            let u = Double(block.1 >> 8) / 16_777_216.0
            let k = 1 + (spanCDF.firstIndex { u < $0 } ?? spanCDF.count - 1)
            var end = first, size = 0
            while end < words && end - first < k && !covered[end] && (end == first || wordStarts[end] == wordEnds[end - 1]) {
                let n = Int(wordEnds[end] - wordStarts[end])
                guard masked + size + n <= toPredict else { break }
                size += n; end += 1
            }
            masked = mask(words: first..<end, listedFrom: masked, slots: slots)
        }
        return masked
    }

    /// Replaces each run of adjacent masked positions (a merged span) as a whole, 80% by [MASK], 10% by
    /// random tokens and 10% kept, and writes the span-boundary targets.
    private func replaceSpans(masked: Int, used: Int, span: SpanMaskingOptions, epoch: UInt64, index: UInt64,
                              slots: PretrainingSlots) {
        let rng = Philox(seed: seed)
        let ids = slots.inputIDs, positions = slots.maskedPositions
        var draw = index << 16
        var m = 0
        while m < masked {
            var e = m
            while e + 1 < masked && positions[e + 1] == positions[e] + 1 { e += 1 }
            let start = Int(positions[m]), end = Int(positions[e])
            draw += 1
            let u = Double(rng.block(stream: Self.maskStream, step: epoch, index: draw).0 >> 8) / 16_777_216.0
            for j in m...e {
                let p = Int(positions[j])
                if u < 0.8 {
                    ids[p] = mask
                } else if u >= 0.9 {
                    draw += 1
                    let r = Self.below(vocabSize, rng.block(stream: Self.maskStream, step: epoch, index: draw).1)
                    ids[p] = isSpecial[r] ? slots.maskedLabels[j] : Int32(r)
                }
                if let spans = slots.spans {
                    let offset = j - m
                    let scored = start > 0 && end + 1 < used && offset < span.maxTargets
                    spans.left[j] = scored ? Int32(start - 1) : 0
                    spans.right[j] = scored ? Int32(end + 1) : 0
                    spans.offset[j] = scored ? Int32(offset) : 0
                    spans.label[j] = scored ? slots.maskedLabels[j] : -100
                }
            }
            m = e + 1
        }
        if let spans = slots.spans {
            for j in masked..<options.maxPredictions { spans.left[j] = 0; spans.right[j] = 0; spans.offset[j] = 0; spans.label[j] = -100 }
        }
    }

    /// Insertion sort of positions (with their labels) — at most maxPredictions entries.
    private func sortPrefix(_ positions: UnsafeMutablePointer<Int32>, _ labels: UnsafeMutablePointer<Int32>, count: Int) {
        guard count > 1 else { return }
        for i in 1..<count {
            let p = positions[i], l = labels[i]
            var j = i - 1
            while j >= 0 && positions[j] > p { positions[j + 1] = positions[j]; labels[j + 1] = labels[j]; j -= 1 }
            positions[j + 1] = p; labels[j + 1] = l
        }
    }
}
