import Foundation
import TandemAutograd
import TandemModels

/// What the trainer needs from a model and its objective: parameters in an arena, a graph recorded on a
/// tape for one micro-batch, a way to fill that graph's inputs from dataset samples, and FLOPs for MFU.
public protocol TrainingTask: AnyObject {
    var arena: ParameterArena { get }
    /// Number of samples in the training set (the sampler permutes 0..<sampleCount).
    var sampleCount: Int { get }
    /// Tokens (or patches) per sample, for throughput figures.
    var tokensPerSample: Int { get }
    /// Records the training graph for `microBatch` samples and returns its scalar loss.
    func record(on tape: Tape, microBatch: Int) -> Tensor
    /// Writes the inputs of samples `indices` of `epoch` into the recorded graph (tasks with random
    /// per-epoch views, such as BERT's masking, key them on the epoch; batch-level draws such as mixup
    /// key on `microBatchIndex`, the global index of this micro-batch in the run).
    func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int)
    /// Model FLOPs of one training step (forward + backward) per sample (DESIGN.md: 6 x parameters +
    /// 12 x layers x hidden x sequence length per token).
    var trainingFLOPsPerSample: Double { get }
    /// A one-line summary of the model for the log.
    var modelDescription: String { get }
    /// The checkpoint's `config.json` (HF config fields and `architectures`).
    var hfConfigJSON: String { get }
    /// The tensors of `model.safetensors`, under their checkpoint names, in order.
    var checkpointTensors: [(String, Parameter)] { get }
}

/// Evaluation on held-out data: the trainer fills eval samples, runs forward with dropout off, and the
/// task adds its statistics (sums, so ranks can all-reduce them) into a Double buffer.
public protocol EvaluatingTask: TrainingTask {
    /// Held-out samples (0: no evaluation data).
    var evalSampleCount: Int { get }
    func fill(evalSamples indices: UnsafeBufferPointer<Int>)
    /// Whether `fill(evalSamples:)` takes -1 for a padding slot, so that an evaluation over the whole
    /// held-out set (`eval.batches: 0`) counts every sample exactly once; otherwise indices wrap around.
    var padsEvaluation: Bool { get }
    /// How many Doubles `accumulateEvalStatistics` adds to.
    var evalStatisticsCount: Int { get }
    /// Adds the statistics of the forward pass just run.
    func accumulateEvalStatistics(into sums: UnsafeMutablePointer<Double>)
    /// Named metrics from the summed statistics over all ranks.
    func describeEval(_ sums: [Double]) -> [(String, Double)]
}

/// A task that can write the micro-batch in its graph as an HF batch file (`train.dump_batches`), so a
/// reference framework can train on exactly the same batches and masks.
public protocol BatchWriting: TrainingTask {
    func writeBatch(to path: String) throws
}

extension EvaluatingTask {
    public var padsEvaluation: Bool { false }
}

extension TrainingTask {
    /// By default every parameter under its registration name.
    public var checkpointTensors: [(String, Parameter)] { arena.parameters.map { ($0.name, $0) } }
}

/// `fields` as pretty-printed JSON with sorted keys, for config.json files.
func jsonText(_ fields: [String: Any]) -> String {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: data, as: UTF8.self) + "\n"
}

/// Next-token prediction with a GPT over windows of T + 1 tokens cut from a token stream: sample i is
/// tokens [i T, i T + T + 1).
public final class CausalLanguageModelTask: TrainingTask {
    public let arena = ParameterArena()
    public let model: GPT
    public let source: TokenSource
    public let sequenceLength: Int
    private var graph: GPT.Graph?
    private var microBatch = 0
    private let window: UnsafeMutablePointer<Int32>

    public init(config: GPTConfig, source: TokenSource, sequenceLength T: Int, seed: UInt64) throws {
        guard source.vocabSize <= config.vocabSize else {
            throw ConfigError("\(source.origin): token ids go up to \(source.vocabSize - 1) but model.vocab_size is \(config.vocabSize)")
        }
        guard T <= config.nPositions else {
            throw ConfigError("data.seq_len = \(T) exceeds the model's n_positions = \(config.nPositions)")
        }
        guard source.count > T else {
            throw ConfigError("\(source.origin): \(source.count) tokens are fewer than one sequence of \(T + 1)")
        }
        model = GPT(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        self.source = source
        sequenceLength = T
        window = AlignedMemory.allocate(Int32.self, count: T + 1)
    }

    deinit { AlignedMemory.deallocate(window) }

    public var sampleCount: Int { (source.count - 1) / sequenceLength }
    public var tokensPerSample: Int { sequenceLength }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B, sequence: sequenceLength)
        graph = g
        microBatch = B
        return g.loss
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        precondition(indices.count == microBatch)
        let T = sequenceLength
        for (b, i) in indices.enumerated() {
            source.copy(from: i * T, count: T + 1, into: window)
            (g.inputIDs + b * T).update(from: window, count: T)
            (g.targets + b * T).update(from: window + 1, count: T)
        }
    }

    public var trainingFLOPsPerSample: Double {
        let c = model.config
        let perToken = 6.0 * Double(arena.parameterCount) + 12.0 * Double(c.nLayer * c.nEmbd * sequenceLength)
        return perToken * Double(sequenceLength)
    }

    /// Our own architecture name: the layout (separate q/k/v, (out, in) weights) is not HF GPT2's.
    public var hfConfigJSON: String {
        let data = try! JSONEncoder().encode(model.config)
        var fields = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        fields["architectures"] = ["TandemGPT"]
        fields["model_type"] = "tandem-gpt"
        return jsonText(fields)
    }

    public var modelDescription: String {
        let c = model.config
        return "GPT layers=\(c.nLayer) hidden=\(c.nEmbd) heads=\(c.nHead) vocab=\(c.vocabSize) params=\(arena.parameterCount)"
    }
}
