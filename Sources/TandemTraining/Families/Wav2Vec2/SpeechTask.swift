import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels

/// wav2vec 2.0 on audio shards: CTC fine-tuning over a character vocabulary, or self-supervised
/// pre-training.
///
/// Sample i is the i-th utterance of data.train no longer than `data.max_seconds` (and, for CTC, whose
/// transcript fits its frames: CTC needs a frame per character plus one between repeated characters);
/// others are skipped and counted in the model description. The sampler's order groups utterances of
/// similar length (`AudioShards.lengthGroupedOrder`, transformers' `group_by_length`), and each
/// micro-batch's graph is recorded for its own longest utterance (rounded up to 0.1 s) and transcript, with
/// an attention mask over the padding.
///
/// CTC: time masking (SpecAugment) at `mask_time_prob` in training when `apply_spec_augment`; evaluation
/// reports the loss per utterance and the character error rate of greedy decoding. Pre-training: every
/// utterance's masked frames and distractors are drawn as transformers draws them (`SpeechMasking`), keyed
/// on (seed, epoch, utterance). Both: feature masking at `mask_feature_prob` in training when
/// `apply_spec_augment` (the channels drawn the same way, from their own stream), and LayerDrop at
/// `layerdrop` in training (the model decides from the tape's step); the Gumbel temperature anneals from 2 by 0.999995 a step to 0.5 (the
/// paper's); evaluation reports the loss, the contrastive loss per masked frame and the codebook perplexity.
public final class SpeechTask: EvaluatingTask {
    public let arena = ParameterArena()
    public let model: Wav2Vec2
    public let train: AudioShards
    public let eval: AudioShards?
    public let vocabulary: CharacterVocabulary
    /// The training and held-out utterances kept.
    public let utterances: [Int], evalUtterances: [Int]
    /// Utterances skipped: too long, or (CTC) a transcript that does not fit its frames.
    public let skipped: (train: Int, eval: Int)
    private let labels: [[Int32]], evalLabels: [[Int32]]
    private let maxSamples: Int
    private let seed: UInt64, globalBatch: Int, microBatchesPerStep: Int
    private var shape: (S: Int, U: Int)
    private(set) var graph: Wav2Vec2.Graph?
    private var microBatch = 0
    /// The held-out utterance of each slot of the evaluation micro-batch (-1: padding).
    private var evalSlots: [Int] = []
    private let meanSamples: Double

    public init(config: Wav2Vec2Config, train: AudioShards, eval: AudioShards?, vocabulary: CharacterVocabulary,
                maxSeconds: Double, settings: RunSettings) throws {
        model = Wav2Vec2(config, arena: arena, rng: Philox(seed: settings.seed))
        arena.seal()
        self.train = train
        self.eval = eval
        self.vocabulary = vocabulary
        let maxSamples = Int(maxSeconds * Double(Audio.sampleRate))
        self.maxSamples = maxSamples
        seed = settings.seed
        globalBatch = settings.globalBatch
        microBatchesPerStep = settings.globalBatch / settings.microBatch
        let ctc = config.head == .ctc
        func keep(_ shards: AudioShards, key: String) throws -> (kept: [Int], labels: [[Int32]], skipped: Int) {
            if ctc && !shards.manifest.transcripts {
                throw ConfigError("\(key): \(shards.directory) has no transcripts, which CTC needs (give prepare-audio --transcripts)")
            }
            var kept: [Int] = [], labels: [[Int32]] = [], skipped = 0
            for i in 0..<shards.count {
                let n = shards.length(i), frames = config.frames(samples: n)
                guard n <= maxSamples, frames > 0 else { skipped += 1; continue }
                var ids: [Int32] = []
                if ctc {
                    ids = try vocabulary.encode(shards.transcript(i) ?? "", origin: "\(shards.directory) utterance \(i)")
                    let repeats = zip(ids, ids.dropFirst()).filter { $0 == $1 }.count
                    guard !ids.isEmpty, ids.count + repeats <= frames else { skipped += 1; continue }
                }
                kept.append(i)
                labels.append(ids)
            }
            guard !kept.isEmpty else {
                throw ConfigError("\(key): no utterance of \(shards.directory) is at most data.max_seconds = \(maxSeconds) s long\(ctc ? " with a transcript that fits its frames" : "")")
            }
            return (kept, labels, skipped)
        }
        let t = try keep(train, key: "data.train")
        utterances = t.kept
        labels = t.labels
        if let eval {
            let e = try keep(eval, key: "data.eval")
            evalUtterances = e.kept
            evalLabels = e.labels
            skipped = (t.skipped, e.skipped)
        } else {
            evalUtterances = []
            evalLabels = []
            skipped = (t.skipped, 0)
        }
        meanSamples = Double(utterances.reduce(0) { $0 + train.length($1) }) / Double(utterances.count)
        shape = (Self.roundedSamples(utterances.map { train.length($0) }.max()!), max(1, labels.map(\.count).max()!))
    }

    /// Samples rounded up to a multiple of 0.1 s, so that batches of close lengths share a graph.
    static func roundedSamples(_ n: Int) -> Int {
        let step = Audio.sampleRate / 10
        return (n + step - 1) / step * step
    }

    public var sampleCount: Int { utterances.count }
    /// Frames of the mean kept utterance: throughput counts frames.
    public var tokensPerSample: Int { max(1, model.config.frames(samples: Int(meanSamples))) }
    public var sampleOrder: SampleOrder {
        let lengths = utterances.map { train.length($0) }
        let (G, seed) = (globalBatch, seed)
        return .custom { AudioShards.lengthGroupedOrder(lengths: lengths, batchSize: G, seed: seed, epoch: UInt64($0)) }
    }

    public func graphShape(samples indices: UnsafeBufferPointer<Int>, evaluation: Bool) -> [Int]? {
        var S = 1, U = 1
        for i in indices where i >= 0 {
            let (shards, utterance, ids) = evaluation ? (eval!, evalUtterances[i], evalLabels[i]) : (train, utterances[i], labels[i])
            S = max(S, shards.length(utterance))
            U = max(U, ids.count)
        }
        S = max(Self.roundedSamples(S), model.config.receptiveField)
        shape = (S, U)
        return [S, U]
    }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B, samples: shape.S, labelColumns: shape.U)
        graph = g
        microBatch = B
        return g.loss
    }

    /// Writes utterance `utterance` of `shards` (nil: a padding slot of silence) into slot b, with its
    /// labels, for training or pre-training its masked frames and distractors drawn for `epoch`, and for
    /// training its masked feature channels.
    private func fillSlot(_ g: Wav2Vec2.Graph, _ b: Int, shards: AudioShards, utterance: Int?, ids: [Int32], sample: Int,
                          epoch: Int, training: Bool, lengths: inout [Int]) {
        let S = g.samples, T = g.frames
        let row = g.inputValues.data + b * S
        row.update(repeating: 0, count: S)
        var n = model.config.receptiveField
        if let utterance {
            let samples = shards.samples(utterance)
            n = samples.count
            precondition(n <= S, "utterance \(utterance) (\(n) samples) does not fit the graph (\(S))")
            row.update(from: samples.baseAddress!, count: n)
        }
        lengths.append(n)
        if let labels = g.labels {
            let l = labels + b * g.labelColumns
            l.update(repeating: -100, count: g.labelColumns)
            for (k, id) in ids.enumerated() { l[k] = id }
        }
        if let keep = g.featureKeep {
            // Feature masking, training only (the op is an identity in evaluation anyway).
            let c = model.config, C = c.hiddenSize
            let k = keep.data + b * C
            k.update(repeating: 1, count: C)
            if utterance != nil && training {
                let mask = SpeechMasking.featureMask(channels: C, probability: Double(c.maskFeatureProb), length: c.maskFeatureLength,
                                                     minMasks: c.maskFeatureMinMasks, rng: Philox(seed: seed), epoch: epoch,
                                                     utterance: sample)
                for (channel, masked) in mask.enumerated() where masked { k[channel] = 0 }
            }
        }
        guard let maskTime = g.maskTimeIndices else { return }
        let m = maskTime.data + b * T
        m.update(repeating: 0, count: T)
        let c = model.config
        let pretraining = c.head == .preTraining
        if let negatives = g.sampledNegativeIndices {
            let K = c.numNegatives
            for t in 0..<T { (negatives + (b * T + t) * K).update(repeating: Int32(b * T + t), count: K) }
        }
        guard utterance != nil, c.applySpecAugment, c.maskTimeProb > 0, training || pretraining else { return }
        let frames = c.frames(samples: n)
        let mask = SpeechMasking.timeMask(frames: frames, probability: Double(c.maskTimeProb), length: c.maskTimeLength,
                                          minMasks: c.maskTimeMinMasks, rng: Philox(seed: seed), epoch: epoch, utterance: sample)
        for (t, masked) in mask.enumerated() where masked { m[t] = 1 }
        if let negatives = g.sampledNegativeIndices {
            SpeechMasking.negatives(mask: mask, K: c.numNegatives, offset: b * T, rng: Philox(seed: seed), epoch: epoch, utterance: sample,
                                    into: negatives + b * T * c.numNegatives)
        }
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        precondition(indices.count == microBatch)
        var lengths: [Int] = []
        for (b, i) in indices.enumerated() {
            fillSlot(g, b, shards: train, utterance: utterances[i], ids: labels[i], sample: i, epoch: epoch, training: true,
                     lengths: &lengths)
        }
        g.setLengths(lengths, config: model.config)
        // The paper's annealing: 2 × 0.999995^step, floored at 0.5 (the step from the micro-batch's global
        // index, the same on any number of ranks).
        let step = microBatchIndex / max(1, microBatchesPerStep)
        model.gumbelTemperature = max(2 * Float(pow(0.999995, Double(step))), 0.5)
    }

    /// wav2vec 2.0's training FLOPs per utterance of the mean kept length: 6 per parameter per frame it
    /// multiplies (the feature encoder's convolutions at the frames each makes), plus attention's 12 C T²
    /// per layer.
    public var trainingFLOPsPerSample: Double {
        let c = model.config
        var n = meanSamples, flops = 0.0
        for (i, layer) in model.convLayers.enumerated() {
            n = floor((n - Double(c.convKernel[i])) / Double(c.convStride[i])) + 1
            flops += 6 * Double(layer.weight.count) * n
        }
        let T = n
        let convParameters = model.convLayers.reduce(0) { $0 + $1.weight.count + ($1.bias?.count ?? 0) + ($1.norm.map { 2 * $0.weight.count } ?? 0) }
        let rest = Double(arena.parameterCount - convParameters)
        return flops + 6 * rest * T + 12 * Double(c.numHiddenLayers * c.hiddenSize) * T * T
    }

    public var modelDescription: String {
        let c = model.config
        let head = c.head == .ctc ? "CTC over \(vocabulary.count) characters" : "pre-training (\(c.numCodevectorGroups)x\(c.numCodevectorsPerGroup) codevectors, \(c.numNegatives) distractors)"
        return "wav2vec2 \(head) layers=\(c.numHiddenLayers) hidden=\(c.hiddenSize) conv=\(c.convDim.count)x\(c.convDim.last!) \(c.doStableLayerNorm ? "stable-layer-norm" : "post-LN") utterances=\(utterances.count) (skipped \(skipped.train)) mean=\(String(format: "%.2f", meanSamples / Double(Audio.sampleRate))) s params=\(arena.parameterCount)"
    }

    public var hfConfigJSON: String { ModelFields.configJSON(model.config) }

    public var checkpointTensors: [(String, Parameter)] { model.parameters.map { ($0.name, $0) } }

    /// The character vocabulary (CTC) goes into every checkpoint as vocab.json, which `tandem transcribe`
    /// and transformers' `Wav2Vec2CTCTokenizer` read.
    public var checkpointTextFiles: [(name: String, text: String)] {
        model.config.head == .ctc ? [("vocab.json", vocabulary.json)] : []
    }

    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        try loadInitFrom(directory: directory, log: log) { try model.load(shapes: $0, origin: $1, copy: $2) }
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalUtterances.count }
    public var padsEvaluation: Bool { true }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let g = graph, let eval else { return }
        evalSlots = Array(indices)
        var lengths: [Int] = []
        for (b, i) in indices.enumerated() {
            fillSlot(g, b, shards: eval, utterance: i >= 0 ? evalUtterances[i] : nil, ids: i >= 0 ? evalLabels[i] : [],
                     sample: i, epoch: 0, training: false, lengths: &lengths)
        }
        g.setLengths(lengths, config: model.config)
    }

    /// CTC: loss sum, utterances, character errors, reference characters. Pre-training: loss sum, batches,
    /// contrastive loss sum, masked frames, perplexity sum.
    public var evalStatisticsCount: Int { model.config.head == .ctc ? 4 : 5 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        if model.config.head == .preTraining {
            let masked = (0..<(g.batch * g.frames)).reduce(0.0) { $0 + Double(g.maskTimeIndices!.data[$1]) }
            guard masked > 0 else { return }
            s[0] += Double(g.loss.data[0])
            s[1] += 1
            s[2] += Double(g.lossTerms![0])
            s[3] += masked
            s[4] += Double(g.codevectorPerplexity!.data[0])
            return
        }
        guard let logits = g.logits, let losses = g.utteranceLosses else { return }
        let V = model.config.vocabSize, T = g.frames
        for (b, i) in evalSlots.enumerated() where i >= 0 {
            s[0] += Double(losses[b])
            s[1] += 1
            let frames = Int(g.frameLengths[b])
            let ids = (0..<frames).map { t -> Int32 in
                let row = logits.data + (b * T + t) * V
                var best = 0
                for v in 1..<V where row[v] > row[best] { best = v }
                return Int32(best)
            }
            let reference = eval?.transcript(evalUtterances[i]) ?? ""
            s[2] += Double(CharacterVocabulary.editDistance(vocabulary.decodeCTC(ids), reference))
            s[3] += Double(reference.count)
        }
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        if model.config.head == .preTraining {
            return [("eval_loss", s[0] / max(s[1], 1)), ("eval_contrastive_per_frame", s[2] / max(s[3], 1)),
                    ("eval_perplexity", s[4] / max(s[1], 1))]
        }
        return [("eval_loss", s[0] / max(s[1], 1)), ("eval_cer", s[2] / max(s[3], 1))]
    }
}
