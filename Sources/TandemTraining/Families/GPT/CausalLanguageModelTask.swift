import Foundation
import TandemAutograd
import TandemData
import TandemModels

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
        ModelFields.configJSON(model.config, adding: ["architectures": ["TandemGPT"], "model_type": GPTFamily.modelTypes[0]])
    }

    public var modelDescription: String {
        let c = model.config
        return "GPT layers=\(c.nLayer) hidden=\(c.nEmbd) heads=\(c.nHead) vocab=\(c.vocabSize) params=\(arena.parameterCount)"
    }
}
