import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels

/// Translation with an encoder-decoder (`TranslationModel`: the recurrent `Seq2SeqModel` of the `seq2seq`
/// family, the Transformer `MarianMT` of the `marian` family), teacher-forced, on the sentence pairs of a
/// parallel corpus.
///
/// Sample i is the i-th training pair whose source (with the source's [SEP] appended as its eos) fits
/// `data.seq_len` and whose target (with eos) fits `data.target_seq_len`; longer pairs are skipped (the
/// model description counts them). The decoder reads bos ([CLS]) then the target and predicts the target
/// then eos ([SEP]); the loss is the mean cross-entropy over a micro-batch's target tokens (label-smoothed
/// by `train.label_smoothing`).
///
/// By default (`data.bucket_by_length`) the sampler's order is `LengthBucketing` over the kept pairs
/// (source length, ties by target length), so each global batch holds pairs of similar length, and each
/// micro-batch's graph is recorded for its own longest source and target (`graphShape`): no step computes
/// more than its pairs need. The first graph is recorded for the largest shape allowed, so later ones
/// reuse its memory. Without bucketing the pairs are shuffled and every graph has the largest shape
/// (static shapes, as the PyTorch comparison runs), and the FLOPs per sample count that shape.
///
/// Evaluation, over the held-out pairs within the same limits (`evaluationOrder`): loss and perplexity
/// (teacher-forced, per target token) and BLEU of greedy translations (sacreBLEU's corpus BLEU, 13a, of
/// the decoded and detokenised translation against the reference target decoded and detokenised alike).
public final class Seq2SeqTask: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: any TranslationModel
    public let train: ParallelDataset
    public let eval: ParallelDataset?
    public let sourceVocab: WordPieceTokenizer
    public let targetVocab: WordPieceTokenizer
    public let maxSource: Int
    public let maxTarget: Int
    /// The training pairs kept, in corpus order (sample i is pair `pairs[i]`).
    public let pairs: [Int]
    /// The held-out pairs kept, in `evaluationOrder`.
    public let evalPairs: [Int]
    /// Training and held-out pairs skipped for their length.
    public let skipped: (train: Int, eval: Int)
    private let vocabFiles: (source: String, target: String)
    private let bucketing: LengthBucketing?
    private let meanFLOPs: Double
    private let meanTargetTokens: Double
    private let labelSmoothing: Float
    /// The model part of `modelDescription`, and the checkpoint's config.json.
    private let summary: String, configJSON: String
    /// The (S, T) of the graph the next `record` builds.
    private var shape: (S: Int, T: Int)
    private(set) var graph: TeacherForcedGraph?
    private var microBatch = 0
    /// Per slot of the evaluation micro-batch in the graph: the held-out pair, or -1 for padding.
    private var evalSlots: [Int] = []

    /// A recurrent seq2seq task (`Seq2SeqModel` of `config`).
    public convenience init(config: Seq2SeqConfig, train: ParallelDataset, eval: ParallelDataset?, sourceVocab: WordPieceTokenizer,
                            targetVocab: WordPieceTokenizer, vocabFiles: (String, String), maxSource: Int, maxTarget: Int,
                            bucketByLength: Bool = true, labelSmoothing: Float = 0, globalBatch G: Int, seed: UInt64) throws {
        let summary = "seq2seq \(config.rnnType.rawValue) attention=\(config.attention.rawValue) layers=\(config.numLayers) hidden=\(config.hiddenSize) embedding=\(config.embeddingSize) bidirectional_encoder=\(config.bidirectionalEncoder) vocab=\(config.sourceVocabSize)->\(config.targetVocabSize)"
        let json = ModelFields.configJSON(config, adding: ["architectures": ["Seq2SeqModel"],
                                                           "source_do_lower_case": sourceVocab.normalization.lowercase,
                                                           "target_do_lower_case": targetVocab.normalization.lowercase])
        try self.init(model: { Seq2SeqModel(config, arena: $0, rng: $1) }, summary: summary, configJSON: json, train: train,
                      eval: eval, sourceVocab: sourceVocab, targetVocab: targetVocab, vocabFiles: vocabFiles, maxSource: maxSource,
                      maxTarget: maxTarget, bucketByLength: bucketByLength, labelSmoothing: labelSmoothing, globalBatch: G, seed: seed)
    }

    /// A task over the model `makeModel` registers in the task's arena, drawing from `Philox(seed)`;
    /// `summary` describes the model in the log and `configJSON` is the checkpoint's config.json.
    public init(model makeModel: (ParameterArena, Philox) -> any TranslationModel, summary: String, configJSON: String,
                train: ParallelDataset, eval: ParallelDataset?, sourceVocab: WordPieceTokenizer,
                targetVocab: WordPieceTokenizer, vocabFiles: (String, String), maxSource: Int, maxTarget: Int,
                bucketByLength: Bool = true, labelSmoothing: Float = 0, globalBatch G: Int, seed: UInt64) throws {
        guard maxSource >= 2, maxTarget >= 2 else {
            throw ConfigError("data.seq_len and data.target_seq_len must be at least 2 (a token and eos), not \(maxSource) and \(maxTarget)")
        }
        for corpus in [train] + (eval.map { [$0] } ?? []) {
            for i in 0..<corpus.count where corpus.sourceLengths[i] == 0 || corpus.targetLengths[i] == 0 {
                let side = corpus.sourceLengths[i] == 0 ? corpus.source.directory : corpus.target.directory
                throw ConfigError("\(side): sentence \(i + 1) is empty (no tokens), so pair \(i + 1) has nothing to translate from or to; drop empty lines from both sides (tandem prepare-translation never writes them)")
            }
        }
        func kept(_ c: ParallelDataset) -> [Int] {
            (0..<c.count).filter { c.sourceLengths[$0] + 1 <= maxSource && c.targetLengths[$0] + 1 <= maxTarget }
        }
        pairs = kept(train)
        guard pairs.count >= G else {
            throw ConfigError("\(train.source.directory): \(pairs.count) of \(train.count) pairs fit data.seq_len \(maxSource) and data.target_seq_len \(maxTarget), fewer than one global batch of \(G)")
        }
        let heldOut = eval.map(kept) ?? []
        evalPairs = eval.map { Self.evaluationOrder(heldOut, lengths: $0.sourceLengths) } ?? []
        skipped = (train.count - pairs.count, (eval?.count ?? 0) - heldOut.count)
        model = makeModel(arena, Philox(seed: seed))
        arena.seal()
        self.labelSmoothing = labelSmoothing
        self.summary = summary
        self.configJSON = configJSON
        self.train = train
        self.eval = eval
        self.sourceVocab = sourceVocab
        self.targetVocab = targetVocab
        self.vocabFiles = vocabFiles
        self.maxSource = maxSource
        self.maxTarget = maxTarget
        let sourceLengths = pairs.map { train.sourceLengths[$0] + 1 }, targetLengths = pairs.map { train.targetLengths[$0] + 1 }
        if bucketByLength {
            bucketing = LengthBucketing(lengths: sourceLengths, secondaryLengths: targetLengths, globalBatch: G, seed: seed)
            var flops = 0.0
            for (s, t) in zip(sourceLengths, targetLengths) { flops += model.trainingFLOPsPerSample(sourceLength: s, targetLength: t) }
            meanFLOPs = flops / Double(pairs.count)
        } else {
            bucketing = nil
            meanFLOPs = model.trainingFLOPsPerSample(sourceLength: maxSource, targetLength: maxTarget)
        }
        meanTargetTokens = Double(targetLengths.reduce(0, +)) / Double(pairs.count)
        shape = (maxSource, maxTarget)
    }

    /// The held-out pairs in a fixed shuffle (Philox, seed 0) sorted by source length within blocks of 256:
    /// an evaluation of the first k pairs (`eval.batches` > 0) samples every length, and a micro-batch
    /// of pairs next to each other in the order is little padding.
    static func evaluationOrder(_ pairs: [Int], lengths: [Int]) -> [Int] {
        var order = pairs
        let rng = Philox(seed: 0)
        var i = order.count - 1
        while i > 0 {
            order.swapAt(i, rng.below(i + 1, stream: LengthBucketing.stream, step: 0, index: UInt64(i)))
            i -= 1
        }
        let block = 256
        return stride(from: 0, to: order.count, by: block).flatMap { start in
            order[start..<min(order.count, start + block)].sorted { a, b in
                lengths[a] != lengths[b] ? lengths[a] < lengths[b] : a < b
            }
        }
    }

    public var sampleCount: Int { pairs.count }
    /// Target tokens (with eos) of the mean pair, or of the static shape: throughput counts target tokens,
    /// as fairseq's wps does.
    public var tokensPerSample: Int { bucketing == nil ? maxTarget : Int(meanTargetTokens.rounded()) }
    public var sampleOrder: SampleOrder {
        guard let bucketing else { return .shuffled }
        return .custom { bucketing.order(epoch: $0) }
    }

    public func graphShape(samples indices: UnsafeBufferPointer<Int>, evaluation: Bool) -> [Int]? {
        guard bucketing != nil else { return nil }
        var S = 1, T = 1
        for i in indices where i >= 0 {
            let (corpus, pair) = evaluation ? (eval!, evalPairs[i]) : (train, pairs[i])
            S = max(S, corpus.sourceLengths[pair] + 1)
            T = max(T, corpus.targetLengths[pair] + 1)
        }
        shape = (S, T)
        return [S, T]
    }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.recordTeacherForced(on: tape, batch: B, sourceLength: shape.S, targetLength: shape.T,
                                          labelSmoothing: labelSmoothing)
        graph = g
        microBatch = B
        return g.loss
    }

    /// Writes pair `pair` of `corpus` into slot b (nil: a padding slot, one source pad and no label).
    private func fillSlot(_ g: TeacherForcedGraph, _ b: Int, corpus: ParallelDataset, pair: Int?) {
        let S = g.sourceLength, T = g.targetLength
        let src = g.sourceIDs + b * S, dec = g.decoderInputIDs + b * T, labels = g.labels + b * T
        src.update(repeating: model.sourcePadID, count: S)
        dec.update(repeating: model.targetPadID, count: T)
        labels.update(repeating: -100, count: T)
        guard let pair else {
            g.sourceLengths[b] = 1
            return
        }
        let (source, target) = corpus.pair(pair)
        precondition(source.count < S && target.count < T, "pair \(pair) does not fit the graph (\(S), \(T))")
        for (k, id) in source.enumerated() { src[k] = id }
        src[source.count] = sourceVocab.sepID
        g.sourceLengths[b] = Int32(source.count + 1)
        dec[0] = model.decoderStartID
        for (k, id) in target.enumerated() {
            dec[k + 1] = id
            labels[k] = id
        }
        labels[target.count] = model.endID
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        precondition(indices.count == microBatch)
        for (b, i) in indices.enumerated() { fillSlot(g, b, corpus: train, pair: pairs[i]) }
    }

    public var trainingFLOPsPerSample: Double { meanFLOPs }

    public var modelDescription: String {
        "\(summary) pairs=\(pairs.count) (skipped \(skipped.train) over \(maxSource)/\(maxTarget) tokens) \(bucketing == nil ? "static shape \(maxSource)x\(maxTarget)" : "length-bucketed")\(labelSmoothing > 0 ? " label_smoothing=\(labelSmoothing)" : "") params=\(arena.parameterCount)"
    }

    public var hfConfigJSON: String { configJSON }

    public var checkpointTensors: [(String, Parameter)] { model.checkpointTensors }

    /// Both vocabularies go into every checkpoint, so `tandem translate` needs nothing else.
    public var checkpointTextFiles: [(name: String, text: String)] {
        [(Seq2SeqFiles.name(side: "source", vocab: vocabFiles.source), (try? String(contentsOfFile: vocabFiles.source, encoding: .utf8)) ?? ""),
         (Seq2SeqFiles.name(side: "target", vocab: vocabFiles.target), (try? String(contentsOfFile: vocabFiles.target, encoding: .utf8)) ?? "")]
    }

    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        try loadInitFrom(directory: directory, log: log) { try model.load(shapes: $0, origin: $1, copy: $2) }
    }

    /// The micro-batch in the graph as an HF batch file: `input_ids`, `attention_mask` (B, S) (1 on each
    /// source's tokens and [SEP]), `decoder_input_ids`, `labels` (B, T), I64.
    public func writeBatch(to path: String) throws {
        guard let g = graph else { return }
        let B = g.batch, S = g.sourceLength, T = g.targetLength
        var w = SafeTensorsWriter()
        w.add("input_ids", shape: [B, S], int64s: (0..<(B * S)).map { Int64(g.sourceIDs[$0]) })
        w.add("attention_mask", shape: [B, S], int64s: (0..<(B * S)).map { Int64($0 % S < Int(g.sourceLengths[$0 / S]) ? 1 : 0) })
        w.add("decoder_input_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.decoderInputIDs[$0]) })
        w.add("labels", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.labels[$0]) })
        try w.write(toPath: path)
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalPairs.count }
    public var padsEvaluation: Bool { true }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let g = graph, let eval else { return }
        evalSlots = indices.map { $0 >= 0 ? evalPairs[$0] : -1 }
        for (b, pair) in evalSlots.enumerated() { fillSlot(g, b, corpus: eval, pair: pair >= 0 ? pair : nil) }
    }

    /// Loss sum over target tokens, target tokens, then `BLEU.Statistics.values`.
    public var evalStatisticsCount: Int { 2 + 2 * BLEU.maxOrder + 2 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph, let eval else { return }
        var tokens = 0
        for k in 0..<g.batch * g.targetLength where g.labels[k] != -100 { tokens += 1 }
        guard tokens > 0 else { return }
        s[0] += Double(g.loss.data[0]) * Double(tokens)
        s[1] += Double(tokens)
        // Greedy translations of the same pairs, all slots at once, up to twice the source plus 10.
        let slots = evalSlots.filter { $0 >= 0 }
        let sources = slots.map { pair -> [Int32] in Array(eval.pair(pair).source) + [sourceVocab.sepID] }
        let longest = sources.map(\.count).max() ?? 0
        let hypotheses = Seq2SeqDecoder(model: model).greedy(sources: sources, maxLength: Seq2SeqDecoder.defaultMaxLength(sourceLength: longest))
        var bleu = BLEU.Statistics()
        for (pair, h) in zip(slots, hypotheses) {
            bleu.add(BLEU.statistics(hypothesis: targetVocab.detokenizedText(h.tokens),
                                     reference: targetVocab.detokenizedText(Array(eval.pair(pair).target))))
        }
        for (k, v) in bleu.values.enumerated() { s[2 + k] += v }
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        let loss = s[0] / max(s[1], 1)
        let bleu = BLEU.Statistics(values: s[2...]).score.score
        return [("eval_loss", loss), ("eval_perplexity", exp(loss)), ("eval_bleu", bleu)]
    }
}

/// The vocabularies in a seq2seq checkpoint: `source_vocab.txt` and `target_vocab.txt` (or
/// `source_tokenizer.json`, `target_tokenizer.json` for vocabularies given as tokenizer.json).
public enum Seq2SeqFiles {
    /// The checkpoint's file name for `side` ("source" or "target") of a vocabulary read from `vocab`.
    public static func name(side: String, vocab: String) -> String {
        side + (vocab.hasSuffix(".json") ? "_tokenizer.json" : "_vocab.txt")
    }

    /// The vocabulary of `side` in checkpoint `directory`, with the casing its config.json records
    /// (`<side>_do_lower_case`); errors name the directory.
    public static func tokenizer(side: String, directory: String) throws -> WordPieceTokenizer {
        let fields = (try? ModelFields.read(directory: directory)) ?? [:]
        let lowercase = fields[side + "_do_lower_case"] as? Bool ?? true
        for name in [side + "_vocab.txt", side + "_tokenizer.json"] {
            let path = (directory as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path) else { continue }
            do { return try WordPieceTokenizer(path: path, cased: !lowercase) } catch { throw ConfigError("\(path): \(error)") }
        }
        throw ConfigError("\(directory): no \(side)_vocab.txt (a seq2seq checkpoint written by tandem train holds both vocabularies)")
    }
}
