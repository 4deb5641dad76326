import TandemAutograd
import TandemKernels
import TandemNN

/// An error in an rnn_lm config or checkpoint, naming the field or tensor concerned.
public struct RNNLMError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The word-level recurrent language model's hyper-parameters, as config.json fields:
/// `{"model_type": "rnn_lm", "rnn_type": "LSTM"|"GRU"|"RNN_TANH"|"RNN_RELU", "vocab_size", "embedding_size",
/// "hidden_size", "num_layers", "dropout", "tie_weights"}` (the arguments of PyTorch's
/// examples/word_language_model `RNNModel`: ntoken, ninp, nhid, nlayers, dropout, tie_weights).
public struct RNNLMConfig: Codable, Equatable, Sendable {
    public var rnnType: RecurrentCell
    public var vocabSize: Int
    public var embeddingSize: Int
    public var hiddenSize: Int
    public var numLayers: Int
    /// After the embedding, between recurrent layers and before the decoder (training only).
    public var dropout: Float
    /// The decoder's weight is the encoder's (Press & Wolf 2017; Inan et al. 2017): needs
    /// embedding_size == hidden_size.
    public var tieWeights: Bool

    /// The defaults are the example's (`main.py`: LSTM, 200 wide, 2 layers, dropout 0.2, untied).
    public init(rnnType: RecurrentCell = .lstm, vocabSize: Int, embeddingSize: Int = 200, hiddenSize: Int = 200,
                numLayers: Int = 2, dropout: Float = 0.2, tieWeights: Bool = false) {
        self.rnnType = rnnType; self.vocabSize = vocabSize; self.embeddingSize = embeddingSize
        self.hiddenSize = hiddenSize; self.numLayers = numLayers; self.dropout = dropout; self.tieWeights = tieWeights
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", rnnType = "rnn_type", vocabSize = "vocab_size"
        case embeddingSize = "embedding_size", hiddenSize = "hidden_size", numLayers = "num_layers"
        case dropout, tieWeights = "tie_weights"
    }

    /// vocab_size is required; other missing fields take the example's defaults. An unknown rnn_type or
    /// model_type, a size that is not positive, a dropout outside [0, 1) or tying unequal sizes is an
    /// error naming the field.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != "rnn_lm" {
            throw RNNLMError("model_type \"\(type)\" is not rnn_lm")
        }
        let type = try c.decodeIfPresent(String.self, forKey: .rnnType) ?? RecurrentCell.lstm.rawValue
        guard let cell = RecurrentCell(rawValue: type) else {
            throw RNNLMError("rnn_type \"\(type)\" is not one of " + RecurrentCell.allCases.map(\.rawValue).joined(separator: ", "))
        }
        guard let vocab = try c.decodeIfPresent(Int.self, forKey: .vocabSize) else { throw RNNLMError("vocab_size is missing") }
        let d = RNNLMConfig(vocabSize: vocab)
        self.init(rnnType: cell, vocabSize: vocab,
                  embeddingSize: try c.decodeIfPresent(Int.self, forKey: .embeddingSize) ?? d.embeddingSize,
                  hiddenSize: try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize,
                  numLayers: try c.decodeIfPresent(Int.self, forKey: .numLayers) ?? d.numLayers,
                  dropout: try c.decodeIfPresent(Float.self, forKey: .dropout) ?? d.dropout,
                  tieWeights: try c.decodeIfPresent(Bool.self, forKey: .tieWeights) ?? d.tieWeights)
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("rnn_lm", forKey: .modelType)
        try c.encode(rnnType.rawValue, forKey: .rnnType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(embeddingSize, forKey: .embeddingSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numLayers, forKey: .numLayers)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(tieWeights, forKey: .tieWeights)
    }

    /// Checks positive sizes, the dropout range and that tying has equal sizes.
    public func validate() throws {
        for (key, value) in [("vocab_size", vocabSize), ("embedding_size", embeddingSize), ("hidden_size", hiddenSize),
                             ("num_layers", numLayers)] where value <= 0 {
            throw RNNLMError("\(key) must be positive, not \(value)")
        }
        guard dropout >= 0 && dropout < 1 else { throw RNNLMError("dropout must be in [0, 1), not \(dropout)") }
        guard !tieWeights || embeddingSize == hiddenSize else {
            throw RNNLMError("tie_weights needs embedding_size (\(embeddingSize)) == hidden_size (\(hiddenSize))")
        }
    }
}

/// The word-level language model of PyTorch's examples/word_language_model (`RNNModel`; Zaremba et al.
/// 2014 for the LSTM setup): `encoder` (Embedding V x E) -> dropout -> `rnn` (`Recurrent`, L layers,
/// unidirectional) -> dropout -> `decoder` (Linear H -> V), the decoder's weight optionally tied to the
/// encoder's.
///
/// Parameters are registered under the example's `named_parameters()` names and order: `encoder.weight`,
/// `rnn.weight_ih_l0`, `rnn.weight_hh_l0`, `rnn.bias_ih_l0`, `rnn.bias_hh_l0`, ... , `decoder.weight`
/// (only when untied), `decoder.bias`. When tied the decoder has no parameter of its own: its gradient
/// accumulates into `encoder.weight`, as in PyTorch, and `checkpointTensors` lists `decoder.weight` as a
/// second name of the same values (PyTorch's state_dict holds both keys).
///
/// Init as the example: encoder and decoder weights U(-0.1, 0.1), decoder bias 0, the RNN torch's
/// U(-1/√H, 1/√H).
public final class RNNLanguageModel {
    public let config: RNNLMConfig
    public let encoder: Embedding
    public let rnn: Recurrent
    /// `decoder.weight` (V, H): the encoder's weight when tied.
    public let decoderWeight: Parameter
    /// `decoder.bias` (V).
    public let decoderBias: Parameter
    /// This model's parameters in registration order.
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` and draws the example's init.
    public init(_ config: RNNLMConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let V = config.vocabSize, E = config.embeddingSize, H = config.hiddenSize
        let range = ParameterInit.uniform(bound: 0.1)
        encoder = Embedding(root("encoder"), count: V, dimensions: E, initializer: range)
        rnn = Recurrent(root("rnn"), cell: config.rnnType, inputSize: E, hiddenSize: H, layers: config.numLayers,
                        dropout: config.dropout)
        let decoder = root("decoder")
        decoderWeight = config.tieWeights ? encoder.weight : decoder.parameter("weight", Shape(V, H), range)
        decoderBias = decoder.parameter("bias", Shape(V), .zeros, decays: false)
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// Checkpoint names and values in state_dict order: every parameter under its name, and when tied
    /// `decoder.weight` again (the encoder's values) before `decoder.bias`.
    public var checkpointTensors: [(String, Parameter)] {
        var tensors = parameters.map { ($0.name, $0) }
        if config.tieWeights { tensors.insert(("decoder.weight", decoderWeight), at: tensors.count - 1) }
        return tensors
    }

    // MARK: - Graph

    /// The tensors of one recorded graph for a (B, T) batch. Integer inputs are filled before
    /// `tape.forward()`.
    public struct Graph {
        public let batch: Int
        public let sequence: Int
        /// (B, T) token ids, each in 0..<vocab_size.
        public let inputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) next-token targets; -100 is ignored (starts all -100).
        public let labels: UnsafeMutablePointer<Int32>
        /// (B, T, V)
        public let logits: Tensor
        /// Mean cross-entropy over the labels that are not -100.
        public let loss: Tensor
        /// With `carriesState`: the states the recurrent network starts from, hidden (and cell for LSTM)
        /// (L, B, H), inputs without gradients (detached, truncated BPTT) that start as zeros; the caller
        /// copies the previous batch's `finalState` into them before `tape.forward()`. Nil otherwise
        /// (every batch starts from zeros).
        public let initialState: RecurrentState?
        /// The states after the last step, hidden (and cell for LSTM) (L, B, H): read after `forward()`.
        public let finalState: RecurrentState
    }

    /// Records the forward pass for B sequences of T tokens on `tape` (dropout follows `tape.training`).
    /// With `carriesState` the recurrent network starts from `Graph.initialState` (truncated backpropagation
    /// through time across consecutive batches of each stream); without, from zeros.
    public func record(on tape: Tape, batch B: Int, sequence T: Int, carriesState: Bool) -> Graph {
        let L = config.numLayers, H = config.hiddenSize, E = config.embeddingSize
        let ids = tape.intInput(count: B * T)
        let labels = tape.intInput(count: B * T)
        ids.update(repeating: 0, count: B * T)
        labels.update(repeating: -100, count: B * T)
        var initial: RecurrentState? = nil
        if carriesState {
            func zeros() -> Tensor {
                let t = tape.input(Shape(L, B, H))
                t.data.update(repeating: 0, count: t.count)
                return t
            }
            initial = RecurrentState(hidden: zeros(), cell: config.rnnType.hasCellState ? zeros() : nil)
        }
        let embedded = tape.dropout(encoder(ids, count: B * T, on: tape), p: config.dropout).reshaped(Shape(B, T, E))
        let (output, final) = rnn(embedded, lengths: nil, initial: initial, on: tape)
        let logits = tape.linear(tape.dropout(output, p: config.dropout), weight: decoderWeight, bias: decoderBias)
        let loss = tape.crossEntropy(logits, targets: labels)
        return Graph(batch: B, sequence: T, inputIDs: ids, labels: labels, logits: logits, loss: loss,
                     initialState: initial, finalState: final)
    }

    /// Multiply-adds x 2 (forward) x 3 (forward and backward) per token: the recurrent layers'
    /// G H (I + H) products and the decoder's H V (the embedding lookup does no arithmetic).
    public var trainingFLOPsPerToken: Double {
        let G = config.rnnType.gates, H = config.hiddenSize, E = config.embeddingSize
        var macs = config.hiddenSize * config.vocabSize
        for k in 0..<config.numLayers { macs += G * H * ((k == 0 ? E : H) + H) }
        return 6 * Double(macs)
    }

    /// `trainingFLOPsPerToken` x T: a sample is one sequence of T tokens.
    public func trainingFLOPsPerSample(sequence T: Int) -> Double { trainingFLOPsPerToken * Double(T) }

    // MARK: - Loading checkpoints

    /// Fills the parameters from a checkpoint with the example's state_dict names, given its tensor shapes
    /// and a way to copy a tensor as Float32. Every parameter must be present with the config's shape
    /// (errors name the tensor and `origin`); a tied model's `decoder.weight` counts as used.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "", aliases: config.tieWeights ? ["encoder.weight": "decoder.weight"] : [:],
                                  isOptional: { _ in false }, shapes: shapes, origin: origin,
                                  error: { RNNLMError($0) }, copy: copy)
    }
}
