#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TandemAutograd
import TandemKernels
import TandemNN

/// One translation of a source sentence.
public struct Seq2SeqHypothesis: Equatable, Sendable {
    /// The generated target ids, without bos; the last one is eos when `finished`.
    public var tokens: [Int32]
    /// Σ log p(token | source, previous tokens) over `tokens`, under the model.
    public var logProbability: Double
    /// Whether the translation ended with eos (false: it reached the maximum length).
    public var finished: Bool
    /// (tokens.count, S) row-major: the attention probabilities over the source of the step that produced
    /// each token (the alignment matrix attention papers plot); empty without attention.
    public var attention: [Float]

    /// The score beam search ranks by: log p / lp(len) with GNMT's length penalty lp (Wu et al. 2016).
    public func score(lengthPenalty alpha: Double) -> Double {
        logProbability / Seq2SeqDecoder.lengthPenalty(length: tokens.count, alpha: alpha)
    }
}

/// A model that translates one token at a time: the recurrent `Seq2SeqModel` and the Transformer
/// `MarianMT`. `Seq2SeqDecoder`'s searches drive its `DecodingSteps`.
public protocol StepwiseTranslator: AnyObject {
    /// The logits' width.
    var targetVocabularySize: Int { get }
    /// The decoder's first input.
    var decoderStartID: Int32 { get }
    /// The token that ends a translation.
    var endID: Int32 { get }
    /// Whether `DecodingSteps.attentionRow` reports attention probabilities over the source.
    var reportsAttention: Bool { get }
    /// The most positions a source or a translation may have (a Transformer's position table); nil: no limit.
    var maxPositions: Int? { get }
    /// The decoder step for `rowsPerSource` rows per sentence of `sources` (ids without padding, none
    /// empty), for translations of up to `maxLength` tokens.
    func decodingSteps(sources: [[Int32]], rowsPerSource: Int, maxLength: Int) -> DecodingSteps
}

/// One decoder step recorded for K rows per source sentence (row b K + k belongs to sentence b): the caller
/// sets `ids` (each row's last token), `run()` computes `logits` (rows, V), `advance(parents:)` makes row i
/// continue from row parents[i]'s new state.
public protocol DecodingSteps: AnyObject {
    var ids: UnsafeMutablePointer<Int32> { get }
    var logits: Tensor { get }
    func run()
    /// Row i's attention probabilities over its source's positions in the last step (empty when the model
    /// reports none).
    func attentionRow(_ i: Int) -> [Float]
    func advance(parents: [Int])
}

extension Seq2SeqModel: StepwiseTranslator {
    public var targetVocabularySize: Int { config.targetVocabSize }
    public var decoderStartID: Int32 { Int32(config.bosTokenId) }
    public var endID: Int32 { Int32(config.eosTokenId) }
    public var reportsAttention: Bool { config.attention != .none }
    public var maxPositions: Int? { nil }
    public func decodingSteps(sources: [[Int32]], rowsPerSource: Int, maxLength: Int) -> DecodingSteps {
        DecoderSteps(self, sources: sources, rowsPerSource: rowsPerSource)
    }
}

/// Translation with a trained `StepwiseTranslator` (`Seq2SeqModel`, `MarianMT`), without gradients and
/// with dropout off: greedy decoding and beam search (for `tandem translate` and BLEU at evaluation).
/// Every call encodes the sources once and records the model's decoder step once for all the
/// hypotheses, then replays it step by step, reordering the hypotheses' states between steps.
public final class Seq2SeqDecoder {
    public let model: any StepwiseTranslator

    public init(model: any StepwiseTranslator) { self.model = model }

    /// The default limit on a translation's tokens (eos included): twice the source's plus 10.
    public static func defaultMaxLength(sourceLength: Int) -> Int { 2 * sourceLength + 10 }

    /// GNMT's length penalty lp(len) = ((5 + len) / 6)^alpha; alpha 0 ranks by log-probability alone.
    public static func lengthPenalty(length: Int, alpha: Double) -> Double { pow((5 + Double(length)) / 6, alpha) }

    /// The most probable token at every step, from bos until eos or `maxLength` tokens (at most the model's
    /// `maxPositions`, as every search here). `source` holds the
    /// source ids without padding (at least one).
    public func greedy(source: [Int32], maxLength: Int) -> Seq2SeqHypothesis {
        greedy(sources: [source], maxLength: maxLength)[0]
    }

    /// `greedy(source:maxLength:)` for a batch of sentences at once (padded together, each attending to
    /// its own positions only): the same translations up to rounding, at the cost of one step for all.
    /// For BLEU over a held-out set; sort the sentences by length to keep the padding small.
    public func greedy(sources: [[Int32]], maxLength: Int) -> [Seq2SeqHypothesis] {
        let maxLength = min(maxLength, model.maxPositions ?? maxLength)
        let steps = model.decodingSteps(sources: sources, rowsPerSource: 1, maxLength: maxLength)
        let V = model.targetVocabularySize, eos = model.endID, bos = model.decoderStartID
        var hypotheses = sources.map { _ in Seq2SeqHypothesis(tokens: [], logProbability: 0, finished: false, attention: []) }
        for _ in 0..<maxLength {
            guard hypotheses.contains(where: { !$0.finished }) else { break }
            for (b, h) in hypotheses.enumerated() { steps.ids[b] = h.tokens.last ?? bos }
            steps.run()
            for b in hypotheses.indices where !hypotheses[b].finished {
                let logits = steps.logits.data + b * V
                var best = 0
                for v in 1..<V where logits[v] > logits[best] { best = v }
                hypotheses[b].logProbability += Double(logits[best]) - logSumExp(logits, count: V)
                hypotheses[b].tokens.append(Int32(best))
                hypotheses[b].attention += steps.attentionRow(b)
                hypotheses[b].finished = Int32(best) == eos
            }
            steps.advance(parents: Array(hypotheses.indices))
        }
        return hypotheses
    }

    /// Beam search with `width` hypotheses: at each step every live hypothesis is extended by every token
    /// and the `width` best extensions by log-probability are kept; an extension by eos among the `width`
    /// best is finished (and leaves the beam). The search stops when `width` hypotheses are finished or
    /// after `maxLength` tokens, when the live ones join the finished as unfinished. Returns the `width`
    /// best by `score(lengthPenalty: alpha)`, best first. Width 1 is greedy decoding.
    public func beamSearch(source: [Int32], width K: Int, lengthPenalty alpha: Double = 0, maxLength: Int)
        -> [Seq2SeqHypothesis] {
        precondition(K >= 1, "beamSearch: width \(K)")
        let maxLength = min(maxLength, model.maxPositions ?? maxLength)
        let steps = model.decodingSteps(sources: [source], rowsPerSource: K, maxLength: maxLength)
        let V = model.targetVocabularySize, eos = Int(model.endID), bos = model.decoderStartID
        var live = [Seq2SeqHypothesis(tokens: [], logProbability: 0, finished: false, attention: [])]
        var finished: [Seq2SeqHypothesis] = []
        for _ in 0..<maxLength {
            for i in 0..<K { steps.ids[i] = i < live.count ? live[i].tokens.last ?? bos : bos }
            steps.run()
            // Each row's 2K best tokens are enough: at most K extensions are kept and K more may be eos.
            var candidates: [(score: Double, row: Int, token: Int)] = []
            for (i, h) in live.enumerated() {
                let row = steps.logits.data + i * V
                let normalizer = logSumExp(row, count: V)
                for v in bestIndices(row, count: V, keep: min(2 * K, V)) {
                    candidates.append((h.logProbability + Double(row[v]) - normalizer, i, v))
                }
            }
            candidates.sort { a, b in a.score != b.score ? a.score > b.score : a.row != b.row ? a.row < b.row : a.token < b.token }
            var next: [Seq2SeqHypothesis] = [], parents: [Int] = []
            for (rank, c) in candidates.enumerated() where next.count < K {
                guard c.token != eos || rank < K else { continue }
                var h = live[c.row]
                h.tokens.append(Int32(c.token))
                h.logProbability = c.score
                h.attention += steps.attentionRow(c.row)
                if c.token == eos {
                    h.finished = true
                    finished.append(h)
                } else {
                    next.append(h)
                    parents.append(c.row)
                }
            }
            live = next
            if finished.count >= K || live.isEmpty { break }
            steps.advance(parents: parents)
        }
        if finished.count < K { finished += live }
        return finished.enumerated().sorted { a, b in
            let sa = a.element.score(lengthPenalty: alpha), sb = b.element.score(lengthPenalty: alpha)
            return sa != sb ? sa > sb : a.offset < b.offset
        }.prefix(K).map(\.element)
    }

    /// The indices of the `keep` largest values of row (count), largest first (lower index first on ties).
    private func bestIndices(_ row: UnsafePointer<Float>, count: Int, keep: Int) -> [Int] {
        var best: [Int] = []
        for v in 0..<count {
            guard best.count < keep || row[v] > row[best[keep - 1]] else { continue }
            var at = best.count
            while at > 0 && row[v] > row[best[at - 1]] { at -= 1 }
            best.insert(v, at: at)
            if best.count > keep { best.removeLast() }
        }
        return best
    }
}

/// The recurrent model's decoder step (its `decoderStep`, the same code as training's graph) recorded once
/// over the encoded sentences; the recurrent states (and Luong's feed) are what `advance` reorders.
private final class DecoderSteps: DecodingSteps {
    let tape: Tape
    let ids: UnsafeMutablePointer<Int32>
    let logits: Tensor
    let weights: Tensor?
    private let state: RecurrentState, next: RecurrentState
    private let feed: Tensor?, output: Tensor
    private let rows: Int
    /// Each row's source length.
    private let lengths: [Int32]

    init(_ model: Seq2SeqModel, sources: [[Int32]], rowsPerSource K: Int) {
        let config = model.config, B = sources.count, H = config.hiddenSize
        precondition(B >= 1 && sources.allSatisfy { !$0.isEmpty }, "decoding: an empty source")
        precondition(sources.allSatisfy { $0.allSatisfy { (0..<Int32(config.sourceVocabSize)).contains($0) } },
                     "decoding: a source id is outside the source vocabulary 0..<\(config.sourceVocabSize)")
        let S = sources.map(\.count).max()!, N = B * K
        rows = N
        let lengths = sources.flatMap { Array(repeating: Int32($0.count), count: K) }
        self.lengths = lengths
        let encoderTape = Tape(minimumBlockBytes: 1 << 20)
        encoderTape.training = false
        encoderTape.recordsGradients = false
        let sourceIDs = encoderTape.intInput(count: B * S), sourceLengths = encoderTape.intInput(count: B)
        for (b, source) in sources.enumerated() {
            (sourceIDs + b * S).update(from: source + Array(repeating: Int32(config.sourcePadTokenId), count: S - source.count),
                                       count: S)
            sourceLengths[b] = Int32(source.count)
        }
        let encoded = model.encode(sourceIDs, lengths: sourceLengths, batch: B, length: S, on: encoderTape)
        encoderTape.forward()

        let tape = Tape(minimumBlockBytes: 1 << 20)
        tape.training = false
        tape.recordsGradients = false
        self.tape = tape
        /// x (layers, B, ...) with each sentence's rows repeated K times, (layers, B K, ...), an input of the step tape.
        func repeated(_ x: Tensor) -> Tensor {
            let layers = x.shape[0], C = x.count / (layers * B)
            let y = tape.input(Shape([layers, N] + Array(x.shape.dims.dropFirst(2))))
            for l in 0..<layers {
                for r in 0..<N { (y.data + (l * N + r) * C).update(from: x.data + (l * B + r / K) * C, count: C) }
            }
            return y
        }
        let memory = repeated(encoded.memory.reshaped(Shape(1, B, S, H))).reshaped(Shape(N, S, H))
        let keys = encoded.keys.map { repeated($0.reshaped(Shape(1, B, S, H))).reshaped(Shape(N, S, H)) }
        let state = RecurrentState(hidden: repeated(encoded.state.hidden), cell: encoded.state.cell.map(repeated))
        self.state = state
        var feed: Tensor? = nil
        if config.attention.feedsInput {
            feed = tape.input(Shape(N, H))
            feed!.data.update(repeating: 0, count: N * H)
        }
        self.feed = feed
        let rowLengths = tape.intInput(count: N)
        rowLengths.update(from: lengths, count: N)
        ids = tape.intInput(count: N)
        ids.update(repeating: Int32(config.bosTokenId), count: N)
        let weights = tape.input(Shape(N, S))
        self.weights = config.attention == .none ? nil : weights
        let embedded = model.decoderEmbedding(ids, count: N, on: tape)
        let step = model.decoderStep(embedded, state: state, feed: feed,
                                     encoded: Seq2SeqModel.Encoded(memory: memory, keys: keys, state: state),
                                     lengths: rowLengths, weights: weights.data, ldw: S, on: tape)
        output = step.output
        next = step.state
        logits = model.outputLayer(step.output, on: tape)
    }

    func run() { tape.forward() }

    /// Row i's attention probabilities over its source's positions in the last step; empty without attention.
    func attentionRow(_ i: Int) -> [Float] {
        guard let weights else { return [] }
        return Array(UnsafeBufferPointer(start: weights.data + i * weights.shape[1], count: Int(lengths[i])))
    }

    /// Row i of the states (and Luong's feed) becomes row parents[i] of the step's results.
    func advance(parents: [Int]) {
        func gather(_ source: Tensor, into target: Tensor) {
            let layers = target.count / (rows * target.shape[-1]), C = target.shape[-1]
            for l in 0..<layers {
                for (i, p) in parents.enumerated() {
                    (target.data + (l * rows + i) * C).update(from: source.data + (l * rows + p) * C, count: C)
                }
            }
        }
        gather(next.hidden, into: state.hidden)
        if let cell = state.cell { gather(next.cell!, into: cell) }
        if let feed { gather(output, into: feed) }
    }
}
