import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels

/// Next-token prediction with GPT-2 over windows of T + 1 tokens cut from a token stream: sample i is
/// tokens [i T, i T + T + 1). The stream is either the bytes of a text file or the documents of token
/// shards, each preceded by the end-of-text token (`ShardTokenStream.documentsEachPreceded`), which a
/// window may cross. With `separator` (`data.cross_document_attention: false`), attention and position ids
/// restart at every end-of-text token in a window: block-diagonal causal masks, so no document sees
/// another. Evaluation runs windows of the held-out stream the same way: eval_loss and eval_perplexity.
public final class CausalLanguageModelTask: EvaluatingTask {
    public let arena = ParameterArena()
    public let model: GPT
    public let source: TokenSource
    public let evalSource: TokenSource?
    public let sequenceLength: Int
    /// The end-of-text id at which documents restart, or nil when windows attend across documents.
    public let separator: Int32?
    /// The tokenizer file saved in every checkpoint (tokenizer.json or vocab.txt), if any.
    private let tokenizerFile: (name: String, text: String)?
    private var graph: GPT.Graph?
    private var microBatch = 0
    private let window: UnsafeMutablePointer<Int32>

    public init(config: GPTConfig, source: TokenSource, eval: TokenSource?, sequenceLength T: Int, separator: Int32?,
                tokenizerFile: (name: String, text: String)? = nil, seed: UInt64) throws {
        for s in [source] + (eval.map { [$0] } ?? []) where s.vocabSize > config.vocabSize {
            throw ConfigError("\(s.origin): token ids go up to \(s.vocabSize - 1) but model.vocab_size is \(config.vocabSize)")
        }
        guard T <= config.nPositions else {
            throw ConfigError("data.seq_len = \(T) exceeds the model's n_positions = \(config.nPositions)")
        }
        for s in [source] + (eval.map { [$0] } ?? []) where s.count <= T {
            throw ConfigError("\(s.origin): \(s.count) tokens are fewer than one sequence of \(T + 1)")
        }
        model = GPT(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        self.source = source
        evalSource = eval
        sequenceLength = T
        self.separator = separator
        self.tokenizerFile = tokenizerFile
        window = AlignedMemory.allocate(Int32.self, count: T + 1)
    }

    deinit { AlignedMemory.deallocate(window) }

    public var sampleCount: Int { (source.count - 1) / sequenceLength }
    public var tokensPerSample: Int { sequenceLength }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B, sequence: sequenceLength, documents: separator != nil)
        graph = g
        microBatch = B
        return g.loss
    }

    /// Copies tokens [start, start + T + 1) of `source` into slot b's inputs and targets.
    private func fillWindow(_ g: GPT.Graph, slot b: Int, from source: TokenSource, start: Int) {
        let T = sequenceLength
        source.copy(from: start, count: T + 1, into: window)
        (g.inputIDs + b * T).update(from: window, count: T)
        (g.targets + b * T).update(from: window + 1, count: T)
    }

    /// Restarts positions and attention at the documents of the filled windows.
    private func fillDocuments(_ g: GPT.Graph) {
        guard let separator, let firstKeys = g.firstKeys else { return }
        GPT.fillDocuments(inputIDs: g.inputIDs, positions: g.positions, firstKeys: firstKeys, batch: g.batch,
                          sequence: g.sequence, separator: separator)
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        precondition(indices.count == microBatch)
        for (b, i) in indices.enumerated() { fillWindow(g, slot: b, from: source, start: i * sequenceLength) }
        fillDocuments(g)
    }

    public var trainingFLOPsPerSample: Double {
        model.trainingFLOPsPerToken(parameters: arena.parameterCount, sequence: sequenceLength) * Double(sequenceLength)
    }

    public var hfConfigJSON: String {
        ModelFields.configJSON(model.config, adding: ["architectures": ["GPT2LMHeadModel"], "model_type": GPTFamily.modelTypes[0]])
    }

    public var checkpointTextFiles: [(name: String, text: String)] { tokenizerFile.map { [$0] } ?? [] }

    public var modelDescription: String {
        let c = model.config
        return "GPT-2 layers=\(c.nLayer) hidden=\(c.nEmbd) heads=\(c.nHead) inner=\(c.innerSize) vocab=\(c.vocabSize) positions=\(c.nPositions) documents=\(separator == nil ? "attend across" : "masked apart") params=\(arena.parameterCount)"
    }

    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        let path = (directory as NSString).appendingPathComponent("model.safetensors")
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw ConfigError("--init-from: \(error)") }
        let report = try model.load(shapes: file.tensors.mapValues(\.shape), origin: path) { try file.copyFloats($0, into: $1) }
        if !report.ignored.isEmpty { log("--init-from: not used from \(path): \(report.ignored.joined(separator: ", "))") }
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalSource.map { ($0.count - 1) / sequenceLength } ?? 0 }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let g = graph, let evalSource else { return }
        for (b, i) in indices.enumerated() { fillWindow(g, slot: b, from: evalSource, start: i * sequenceLength) }
        fillDocuments(g)
    }

    /// Loss sum over tokens, tokens.
    public var evalStatisticsCount: Int { 2 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        NextTokenEvaluation.accumulate(meanLoss: g.loss.data[0], tokens: microBatch * sequenceLength, into: s)
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] { NextTokenEvaluation.describe(s) }
}
