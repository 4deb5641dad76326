import Foundation
import TandemAutograd
import TandemData
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
    /// Further safetensors files of every checkpoint, beside model.safetensors, and their tensors
    /// (SpanBERT's heads, kept out of model.safetensors so that it loads as a `BertModel`); a resume
    /// reads them back. Empty by default.
    var additionalCheckpointFiles: [(file: String, tensors: [(String, Parameter)])] { get }
    /// Text files saved beside model.safetensors in every checkpoint (a seq2seq model's vocabularies).
    var checkpointTextFiles: [(name: String, text: String)] { get }
    /// Fills the model from a transformers directory (`--init-from`); `log` hears what kept its init and
    /// what was ignored. Families that cannot start from one throw.
    func loadPretrained(directory: String, log: (String) -> Void) throws
    /// The order the sampler visits the samples in each epoch: shuffled (the default), in order (truncated
    /// backpropagation through time: sample k G + s is chunk k of stream s) or the task's own (length
    /// bucketing).
    var sampleOrder: SampleOrder { get }
    /// State carried from one step's forward pass to the next one's (a recurrent model's hidden state per
    /// stream under truncated BPTT), laid out by global-batch slot: `perSlot` floats for each of the
    /// global batch's G slots. A rank updates only the slots of its own samples; the trainer gathers
    /// them before a checkpoint, which saves the whole buffer, and a resume restores it on every rank.
    var carriedState: CarriedState? { get }
    /// Called after each training forward pass, before backward (to keep the final states).
    func finishedForward()
    /// For a task whose graph depends on the batch (seq2seq: the longest source and target of the
    /// micro-batch), the shape that `indices` (training samples, or held-out ones when `evaluation`; -1 is
    /// a padding slot) need, which the next `record` uses; the trainer re-records the tape whenever it
    /// differs from the recorded one. nil (the default): the graph recorded first fits every batch.
    func graphShape(samples indices: UnsafeBufferPointer<Int>, evaluation: Bool) -> [Int]?
}

/// A task's state carried across steps (`TrainingTask.carriedState`).
public struct CarriedState {
    /// (G, perSlot)
    public let values: UnsafeMutableBufferPointer<Float>
    public let perSlot: Int
    public init(values: UnsafeMutableBufferPointer<Float>, perSlot: Int) {
        self.values = values
        self.perSlot = perSlot
    }
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
    public var sampleOrder: SampleOrder { .shuffled }
    public var carriedState: CarriedState? { nil }
    public func finishedForward() {}
    public var checkpointTextFiles: [(name: String, text: String)] { [] }
    public func graphShape(samples indices: UnsafeBufferPointer<Int>, evaluation: Bool) -> [Int]? { nil }

    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        throw ConfigError("--init-from \(directory): \(modelDescription.prefix { $0 != " " }) models cannot start from a transformers checkpoint")
    }

    /// By default every parameter under its registration name.
    public var checkpointTensors: [(String, Parameter)] { arena.parameters.map { ($0.name, $0) } }

    public var additionalCheckpointFiles: [(file: String, tensors: [(String, Parameter)])] { [] }

    /// model.safetensors' tensors and the additional files', under their checkpoint names.
    var everyCheckpointTensor: [(String, Parameter)] { checkpointTensors + additionalCheckpointFiles.flatMap(\.tensors) }
}

/// The held-out statistics of a language model's next-token loss, shared by the recurrent LM and GPT-2:
/// the loss summed over tokens and the tokens (two Doubles), described as eval_loss and eval_perplexity.
enum NextTokenEvaluation {
    static func accumulate(meanLoss: Float, tokens: Int, into s: UnsafeMutablePointer<Double>) {
        s[0] += Double(meanLoss) * Double(tokens)
        s[1] += Double(tokens)
    }

    static func describe(_ s: [Double]) -> [(String, Double)] {
        let loss = s[0] / max(s[1], 1)
        return [("eval_loss", loss), ("eval_perplexity", exp(loss))]
    }
}
