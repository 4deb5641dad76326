import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// DistilBERT training on single-segment samples (`FullSentenceExamples` with `[CLS]`, `[SEP]` and
/// `[PAD]`: whole sentences packed up to the sequence length, masks drawn anew every epoch).
///
/// `mlm`: masked LM alone, the LM head at the masked positions only. `distillation`: the student starts
/// from every other layer of a BERT teacher (`DistilBERT.initialise(fromTeacher:)`, on every rank while
/// the task is built, so the broadcast of rank 0's parameters changes nothing), and each step runs the
/// teacher's forward pass on its own forward-only tape (dropout off) on the same masked inputs, then the
/// student's triple loss (`DistillationObjective`) with the LM head at every position, since the
/// soft-target term covers every token that is not padding.
public final class DistilBertTask: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: DistilBERT
    public let examples: FullSentenceExamples
    public let evalExamples: FullSentenceExamples?
    public let teacher: PretrainedBERT?
    public let distillation: DistillationObjective?
    private let options: PretrainingOptions
    private let vocabText: String
    private var graph: DistilBERT.Graph?
    private var teacherGraph: (tape: Tape, graph: BERT.Graph)?
    private var losses: DistillationObjective.Losses?
    private var microBatch = 0
    /// Per micro-batch: the examples' masked positions and labels (B P), the token types they write (B T)
    /// and their unused next-sentence label.
    private var maskedRows: UnsafeMutablePointer<Int32>?
    private var maskedLabels: UnsafeMutablePointer<Int32>?
    private var tokenTypes: UnsafeMutablePointer<Int32>?
    private let unusedLabel = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    init(config: DistilBertConfig, tokenizer: WordPieceTokenizer, vocabText: String, train: ShardDataset, eval: ShardDataset?,
         options: PretrainingOptions, teacher: PretrainedBERT?, distillation: DistillationObjective?, seed: UInt64) throws {
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw ConfigError("data.vocab: the vocabulary has \(tokenizer.vocabSize) tokens but model.vocab_size is \(config.vocabSize): the embedding has no row for the extra ids")
        }
        guard options.maxSequence <= config.maxPositionEmbeddings else {
            throw ConfigError("data.seq_len = \(options.maxSequence) exceeds the model's max_position_embeddings = \(config.maxPositionEmbeddings)")
        }
        do { try config.validate() } catch { throw ConfigError("model: \(error)") }
        model = DistilBERT(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        if let teacher {
            do { try model.initialise(fromTeacher: teacher.model) } catch { throw ConfigError("train.teacher: \(error)") }
        }
        self.teacher = teacher
        self.distillation = distillation
        self.options = options
        self.vocabText = vocabText
        let mask = tokenizer.maskID!, pad = tokenizer.padID!
        let special = [tokenizer.clsID, tokenizer.sepID, tokenizer.unkID, mask, pad]
        let continuation = tokenizer.tokens.map { $0.hasPrefix(tokenizer.continuingSubwordPrefix) }
        func examples(_ dataset: ShardDataset) throws -> FullSentenceExamples {
            try FullSentenceExamples(dataset: dataset, options: options, seed: seed, bos: tokenizer.clsID, eos: tokenizer.sepID,
                                     pad: pad, mask: mask, special: special, isContinuation: continuation)
        }
        do { self.examples = try examples(train) } catch { throw ConfigError("data.train: \(error)") }
        do { evalExamples = try eval.map(examples) } catch { throw ConfigError("data.eval: \(error)") }
    }

    deinit { unusedLabel.deallocate() }

    public var sampleCount: Int { examples.count }
    public var tokensPerSample: Int { options.maxSequence }
    public var checkpointTextFiles: [(name: String, text: String)] { [("vocab.txt", vocabText)] }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let T = options.maxSequence, P = options.maxPredictions
        microBatch = B
        maskedRows = tape.intInput(count: B * P)
        maskedLabels = tape.intInput(count: B * P)
        guard let teacher, let distillation else {
            let g = model.record(on: tape, batch: B, sequence: T, maskedPositions: B * P)
            graph = g
            tokenTypes = tape.intInput(count: B * T)
            return g.loss
        }
        // The teacher's forward-only graph is kept when the trainer records the student again with the same
        // micro-batch (`Tape.recordGraph` records twice), rather than held twice while the new one is made.
        let tg: BERT.Graph
        if let kept = teacherGraph, kept.graph.batch == B, kept.tape.precision == tape.precision {
            tg = kept.graph
        } else {
            teacherGraph = nil
            let t = Tape()
            t.training = false
            t.recordsGradients = false
            t.precision = tape.precision
            tg = teacher.model.record(on: t, batch: B, sequence: T)
            t.seal()
            teacherGraph = (t, tg)
        }
        tokenTypes = tg.tokenTypeIDs
        let g = model.record(on: tape, batch: B, sequence: T)
        graph = g
        let l = distillation.record(on: tape, studentLogits: g.logits, teacherLogits: tg.predictionLogits,
                                    studentHidden: g.lastHiddenState, teacherHidden: tg.lastHiddenState,
                                    attentionMask: g.attentionMask, labels: g.labels)
        losses = l
        return l.total
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        fill(indices, from: examples, epoch: epoch)
    }

    /// Writes the examples into the student's graph: for `mlm` the masked rows index the (B T) hidden
    /// states; for `distillation` the labels are scattered to (B, T) and the teacher runs on the same inputs.
    private func fill(_ indices: UnsafeBufferPointer<Int>, from source: FullSentenceExamples, epoch: Int) {
        guard let g = graph, let rows = maskedRows, let labels = maskedLabels, let types = tokenTypes else {
            preconditionFailure("record the graph before filling it")
        }
        let T = options.maxSequence, P = options.maxPredictions
        for (b, i) in indices.enumerated() {
            source.fill(example: i, epoch: epoch, into: PretrainingSlots(
                inputIDs: g.inputIDs + b * T, tokenTypeIDs: types + b * T, attentionMask: g.attentionMask.data + b * T,
                maskedPositions: rows + b * P, maskedLabels: labels + b * P, nextSentenceLabel: unusedLabel))
            MaskedLM.offsetRows(rows, sample: b, sequence: T, predictions: P)
        }
        let n = indices.count
        if let positions = g.maskedPositions {
            positions.update(from: rows, count: n * P)
            g.labels.update(from: labels, count: n * P)
        } else {
            g.labels.update(repeating: -100, count: n * T)
            for r in 0..<(n * P) where labels[r] != -100 { g.labels[Int(rows[r])] = labels[r] }
        }
        if let (tape, t) = teacherGraph {
            t.inputIDs.update(from: g.inputIDs, count: n * T)
            t.attentionMask.data.update(from: g.attentionMask.data, count: n * T)
            tape.forward()
        }
    }

    /// Student: 6 x non-embedding parameters + attention per token, the tied projector where it runs (the
    /// masked positions for `mlm`, every position for `distillation`). Distillation adds the teacher's
    /// forward pass: a third of its own training count, its decoder at every position.
    public var trainingFLOPsPerSample: Double {
        let c = model.config, T = Double(options.maxSequence)
        let embeddings = Double((c.vocabSize + c.maxPositionEmbeddings) * c.dim)
        let perToken = 6.0 * (Double(arena.parameterCount) - embeddings) + 12.0 * Double(c.numLayers * c.dim) * T
        let scored = teacher == nil ? Double(options.maxPredictions) : T
        var flops = perToken * T + 6.0 * Double(c.vocabSize * c.dim) * scored
        if let teacher {
            let t = teacher.config
            let tEmbeddings = Double((t.vocabSize + t.maxPositionEmbeddings + t.typeVocabSize) * t.hiddenSize)
            let tPerToken = 2.0 * (Double(teacher.arena.parameterCount) - tEmbeddings) + 4.0 * Double(t.numHiddenLayers * t.hiddenSize) * T
            flops += tPerToken * T + 2.0 * Double(t.vocabSize * t.hiddenSize) * T
        }
        return flops
    }

    public var modelDescription: String {
        let c = model.config
        var text = "DistilBERT layers=\(c.numLayers) dim=\(c.dim) heads=\(c.numHeads) vocab=\(c.vocabSize) params=\(arena.parameterCount)"
        if let teacher, let d = distillation {
            let t = teacher.config
            text += "; distilled from BERT layers=\(t.numHiddenLayers) hidden=\(t.hiddenSize) params=\(teacher.arena.parameterCount) (alpha_ce \(d.alphaCE), alpha_mlm \(d.alphaMLM), alpha_cos \(d.alphaCos), temperature \(d.temperature))"
        }
        return text
    }

    public var hfConfigJSON: String { ModelFields.configJSON(model.config) }

    /// Fills the student from a transformers DistilBERT directory (`--init-from`): DistilBertForMaskedLM or
    /// DistilBertModel names (the LM head then keeps its init, which `log` hears).
    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        try PretrainedBERT.loadWeights(parameters: model.parameters, load: model.load, headPrefix: "vocab_",
                                       baseModel: "DistilBertModel", directory: directory, log: log)
    }

    /// The micro-batch as an HF batch file for DistilBertForMaskedLM: `labels` (B, T) hold the original
    /// token at the masked positions and -100 elsewhere.
    public func writeBatch(to path: String) throws {
        guard let g = graph, let rows = maskedRows, let masked = maskedLabels else { return }
        let B = microBatch, T = options.maxSequence, P = options.maxPredictions
        let labels = MaskedLM.labels(rows: rows, targets: masked, count: B * P, batch: B, sequence: T)
        var w = SafeTensorsWriter()
        w.add("input_ids", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.inputIDs[$0]) })
        w.add("attention_mask", shape: [B, T], int64s: (0..<(B * T)).map { Int64(g.attentionMask.data[$0]) })
        w.add("labels", shape: [B, T], int64s: labels)
        try w.write(toPath: path)
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalExamples?.count ?? 0 }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let evalExamples else { return }
        fill(indices, from: evalExamples, epoch: 0)
    }

    /// MLM loss sum, MLM correct, MLM count; with a teacher also the teacher's MLM correct and the
    /// distillation loss x batches, batches.
    public var evalStatisticsCount: Int { 6 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        let V = model.config.vocabSize
        let rows = g.maskedPositions == nil ? microBatch * options.maxSequence : microBatch * options.maxPredictions
        var counted = 0
        for r in 0..<rows where g.labels[r] != -100 {
            counted += 1
            if argmax(g.logits.data + r * V, V) == Int(g.labels[r]) { s[1] += 1 }
            if let (_, t) = teacherGraph, argmax(t.predictionLogits.data + r * V, V) == Int(g.labels[r]) { s[3] += 1 }
        }
        let mlm = losses?.mlm ?? g.loss
        s[0] += Double(mlm.data[0]) * Double(counted)
        s[2] += Double(counted)
        if let losses { s[4] += Double(losses.total.data[0]); s[5] += 1 }
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        var metrics = MaskedLM.describe(s)
        if teacher != nil {
            metrics += [("eval_teacher_mlm_accuracy", s[3] / max(s[2], 1)), ("eval_distillation_loss", s[4] / max(s[5], 1))]
        }
        return metrics
    }
}
