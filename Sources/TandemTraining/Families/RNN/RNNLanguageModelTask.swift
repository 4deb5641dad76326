import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels
import TandemNN

/// Next-token prediction with a recurrent language model (PyTorch's word_language_model `RNNModel`) over a
/// token stream, in one of two ways:
/// - independent windows (`data.carry_state: false`): sample i is tokens [i T, i T + T + 1), shuffled
///   every epoch, each from a zero state;
/// - truncated backpropagation through time (`data.carry_state: true`, Zaremba et al. 2014 and the
///   example's `batchify`): the stream is cut into G equal streams, one per global-batch slot, and global
///   batch k holds chunk k (T + 1 tokens from k T) of every stream, in order. Each stream's final state
///   after chunk k is the initial state of chunk k + 1 (detached: no gradient crosses chunks), zero at the
///   start of every epoch. The states are the task's carried state, checkpointed, so a resume continues
///   exactly, also on another number of ranks.
/// Evaluation runs independent windows of the held-out stream from a zero state.
public final class RNNLanguageModelTask: EvaluatingTask {
    public let arena = ParameterArena()
    public let model: RNNLanguageModel
    public let source: TokenSource
    public let evalSource: TokenSource?
    public let sequenceLength: Int
    /// Streams (= global batch) when the state is carried, else nil.
    private let streams: Int?
    /// Tokens per stream when the state is carried.
    private let streamLength: Int
    /// The graph `record` recorded.
    private(set) var graph: RNNLanguageModel.Graph?
    private var microBatch = 0
    private let window: UnsafeMutablePointer<Int32>
    /// (G, perSlot): each stream's state after its last chunk (h of every layer, then c for LSTM).
    private let state: UnsafeMutableBufferPointer<Float>?
    /// The stream of each slot of the micro-batch in the graph.
    private var slotStreams: [Int] = []

    public init(config: RNNLMConfig, source: TokenSource, eval: TokenSource?, sequenceLength T: Int,
                carryState: Bool, globalBatch G: Int, seed: UInt64) throws {
        for s in [source] + (eval.map { [$0] } ?? []) where s.vocabSize > config.vocabSize {
            throw ConfigError("\(s.origin): token ids go up to \(s.vocabSize - 1) but model.vocab_size is \(config.vocabSize)")
        }
        guard source.count > T else {
            throw ConfigError("\(source.origin): \(source.count) tokens are fewer than one sequence of \(T + 1)")
        }
        if carryState {
            guard source.count / G > T else {
                throw ConfigError("\(source.origin): \(source.count) tokens cut into \(G) streams (train.global_batch) leave fewer than \(T + 1) per stream")
            }
        }
        model = RNNLanguageModel(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        self.source = source
        evalSource = eval
        sequenceLength = T
        streams = carryState ? G : nil
        streamLength = carryState ? source.count / G : 0
        window = AlignedMemory.allocate(Int32.self, count: T + 1)
        if carryState {
            let n = G * Self.stateFloats(config)
            state = .init(start: AlignedMemory.allocate(Float.self, count: n), count: n)
            state!.update(repeating: 0)
        } else {
            state = nil
        }
    }

    deinit {
        AlignedMemory.deallocate(window)
        state.map { AlignedMemory.deallocate($0.baseAddress!) }
    }

    public var sampleCount: Int {
        if let G = streams { return G * ((streamLength - 1) / sequenceLength) }
        return (source.count - 1) / sequenceLength
    }
    public var tokensPerSample: Int { sequenceLength }
    public var sampleOrder: SampleOrder { streams == nil ? .shuffled : .sequential }
    public var carriedState: CarriedState? {
        state.map { CarriedState(values: $0, perSlot: Self.stateFloats(model.config)) }
    }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B, sequence: sequenceLength, carriesState: streams != nil)
        graph = g
        microBatch = B
        slotStreams = Array(repeating: 0, count: B)
        return g.loss
    }

    /// Copies tokens [start, start + T + 1) into slot b's inputs and labels.
    private func fillWindow(_ g: RNNLanguageModel.Graph, slot b: Int, from source: TokenSource, start: Int) {
        let T = sequenceLength
        source.copy(from: start, count: T + 1, into: window)
        (g.inputIDs + b * T).update(from: window, count: T)
        (g.labels + b * T).update(from: window + 1, count: T)
    }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        precondition(indices.count == microBatch)
        for (b, i) in indices.enumerated() {
            guard let G = streams, let state else {
                fillWindow(g, slot: b, from: source, start: i * sequenceLength)
                continue
            }
            let stream = i % G, chunk = i / G
            fillWindow(g, slot: b, from: source, start: stream * streamLength + chunk * sequenceLength)
            slotStreams[b] = stream
            guard let initial = g.initialState else { preconditionFailure("a carried-state graph has initial states") }
            let n = Self.stateFloats(model.config)
            let saved = state.baseAddress! + stream * n
            copySlot(b, of: initial, batch: g.batch) { rows, offset in
                if chunk == 0 { rows.update(repeating: 0, count: model.config.hiddenSize) }
                else { rows.update(from: saved + offset, count: model.config.hiddenSize) }
            }
        }
    }

    /// Floats of one sequence's state: hidden (and cell for LSTM) of every layer.
    static func stateFloats(_ c: RNNLMConfig) -> Int { c.numLayers * c.hiddenSize * (c.rnnType.hasCellState ? 2 : 1) }

    /// Calls `body` with slot b's H-float row of each layer of `state`'s hidden (L, B, H) and then cell
    /// tensors, and that row's offset within the slot's `stateFloats`.
    private func copySlot(_ b: Int, of state: RecurrentState, batch B: Int,
                          _ body: (UnsafeMutablePointer<Float>, Int) -> Void) {
        let L = model.config.numLayers, H = model.config.hiddenSize
        for (k, t) in ([state.hidden] + (state.cell.map { [$0] } ?? [])).enumerated() {
            for l in 0..<L { body(t.data + (l * B + b) * H, (k * L + l) * H) }
        }
    }

    public func finishedForward() {
        guard let g = graph, let state else { return }
        let n = Self.stateFloats(model.config)
        for (b, stream) in slotStreams.enumerated() {
            let saved = state.baseAddress! + stream * n
            copySlot(b, of: g.finalState, batch: g.batch) { rows, offset in
                (saved + offset).update(from: rows, count: model.config.hiddenSize)
            }
        }
    }

    /// `RNNLanguageModel.trainingFLOPsPerToken` (the recurrent layers' and the decoder's products; the
    /// encoder is a lookup) x T.
    public var trainingFLOPsPerSample: Double { model.trainingFLOPsPerSample(sequence: sequenceLength) }

    public var modelDescription: String {
        let c = model.config
        return "RNN LM \(c.rnnType.rawValue) layers=\(c.numLayers) hidden=\(c.hiddenSize) embedding=\(c.embeddingSize) vocab=\(c.vocabSize) tied=\(c.tieWeights) bptt=\(sequenceLength) carried=\(streams != nil) params=\(arena.parameterCount)"
    }

    public var hfConfigJSON: String { ModelFields.configJSON(model.config) }

    public var checkpointTensors: [(String, Parameter)] { model.checkpointTensors }

    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        let path = (directory as NSString).appendingPathComponent("model.safetensors")
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw ConfigError("--init-from: \(error)") }
        _ = try model.load(shapes: file.tensors.mapValues(\.shape), origin: path) { name, into in try file.copyFloats(name, into: into) }
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { evalSource.map { ($0.count - 1) / sequenceLength } ?? 0 }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let g = graph, let evalSource else { return }
        for (b, i) in indices.enumerated() {
            fillWindow(g, slot: b, from: evalSource, start: i * sequenceLength)
            if let initial = g.initialState {
                copySlot(b, of: initial, batch: g.batch) { rows, _ in rows.update(repeating: 0, count: model.config.hiddenSize) }
            }
        }
    }

    /// Loss sum over tokens, tokens.
    public var evalStatisticsCount: Int { 2 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        NextTokenEvaluation.accumulate(meanLoss: g.loss.data[0], tokens: microBatch * sequenceLength, into: s)
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] { NextTokenEvaluation.describe(s) }
}
