import TandemAutograd
import TandemKernels
import TandemNN

/// An error in a seq2seq config or checkpoint, naming the field or tensor concerned.
public struct Seq2SeqError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The recurrent encoder-decoder's hyper-parameters, as config.json fields:
/// `{"model_type": "seq2seq", "rnn_type": "GRU"|"LSTM", "attention": "none"|"bahdanau"|"luong_dot"|"luong_general",
/// "source_vocab_size", "target_vocab_size", "embedding_size", "hidden_size", "num_layers",
/// "bidirectional_encoder", "dropout", "source_pad_token_id", "target_pad_token_id", "bos_token_id",
/// "eos_token_id"}`. Encoder and decoder share the embedding size, the hidden size and the number of layers
/// (the decoder starts from the encoder's final states, layer by layer).
public struct Seq2SeqConfig: Codable, Equatable, Sendable {
    /// How the decoder reads the encoder's outputs.
    public enum Attention: String, Codable, CaseIterable, Sendable {
        /// Sutskever et al. 2014: only through the initial state.
        case none
        /// Bahdanau et al. 2015, additive, the query being the decoder's previous hidden state.
        case bahdanau
        /// Luong et al. 2015, score h_t · h_s, with input feeding.
        case luongDot = "luong_dot"
        /// Luong et al. 2015, score h_t · W_a h_s, with input feeding.
        case luongGeneral = "luong_general"

        /// Luong's attentional vector h~_t = tanh(W_c [c_t; h_t]), fed to the next step's input.
        public var feedsInput: Bool { self == .luongDot || self == .luongGeneral }
    }

    public var rnnType: RecurrentCell
    public var attention: Attention
    public var sourceVocabSize: Int
    public var targetVocabSize: Int
    public var embeddingSize: Int
    public var hiddenSize: Int
    public var numLayers: Int
    /// The encoder runs both directions; their outputs and final states are summed (see `Seq2SeqModel`).
    public var bidirectionalEncoder: Bool
    /// On both embeddings and between recurrent layers (training only).
    public var dropout: Float
    /// The source padding id: a batch's source lengths may come from it (`sourceLengths(ids:)`).
    public var sourcePadTokenId: Int
    /// The target padding id (decoder inputs past a sentence's end; their labels are -100).
    public var targetPadTokenId: Int
    /// The first decoder input of every sentence, and of decoding.
    public var bosTokenId: Int
    /// The token that ends a translation: decoding stops there.
    public var eosTokenId: Int

    /// Defaults: a 1-layer GRU with Bahdanau attention as the PyTorch tutorial, embedding 256, hidden 512,
    /// dropout 0.1 (the tutorial's), pad 0, bos 1, eos 2.
    public init(rnnType: RecurrentCell = .gru, attention: Attention = .bahdanau, sourceVocabSize: Int, targetVocabSize: Int,
                embeddingSize: Int = 256, hiddenSize: Int = 512, numLayers: Int = 1, bidirectionalEncoder: Bool = false,
                dropout: Float = 0.1, sourcePadTokenId: Int = 0, targetPadTokenId: Int = 0, bosTokenId: Int = 1,
                eosTokenId: Int = 2) {
        self.rnnType = rnnType; self.attention = attention
        self.sourceVocabSize = sourceVocabSize; self.targetVocabSize = targetVocabSize
        self.embeddingSize = embeddingSize; self.hiddenSize = hiddenSize; self.numLayers = numLayers
        self.bidirectionalEncoder = bidirectionalEncoder; self.dropout = dropout
        self.sourcePadTokenId = sourcePadTokenId; self.targetPadTokenId = targetPadTokenId
        self.bosTokenId = bosTokenId; self.eosTokenId = eosTokenId
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", rnnType = "rnn_type", attention
        case sourceVocabSize = "source_vocab_size", targetVocabSize = "target_vocab_size"
        case embeddingSize = "embedding_size", hiddenSize = "hidden_size", numLayers = "num_layers"
        case bidirectionalEncoder = "bidirectional_encoder", dropout
        case sourcePadTokenId = "source_pad_token_id", targetPadTokenId = "target_pad_token_id"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
    }

    /// source_vocab_size and target_vocab_size are required; other missing fields take the defaults.
    /// Every error names the field (`validate`).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != "seq2seq" {
            throw Seq2SeqError("model_type \"\(type)\" is not seq2seq")
        }
        let type = try c.decodeIfPresent(String.self, forKey: .rnnType) ?? RecurrentCell.gru.rawValue
        guard let cell = RecurrentCell(rawValue: type), cell == .gru || cell == .lstm else {
            throw Seq2SeqError("rnn_type \"\(type)\" is not GRU or LSTM")
        }
        let name = try c.decodeIfPresent(String.self, forKey: .attention) ?? Attention.bahdanau.rawValue
        guard let attention = Attention(rawValue: name) else {
            throw Seq2SeqError("attention \"\(name)\" is not one of " + Attention.allCases.map(\.rawValue).joined(separator: ", "))
        }
        guard let source = try c.decodeIfPresent(Int.self, forKey: .sourceVocabSize) else {
            throw Seq2SeqError("source_vocab_size is missing")
        }
        guard let target = try c.decodeIfPresent(Int.self, forKey: .targetVocabSize) else {
            throw Seq2SeqError("target_vocab_size is missing")
        }
        let d = Seq2SeqConfig(sourceVocabSize: source, targetVocabSize: target)
        func field<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            do { return try c.decodeIfPresent(T.self, forKey: key) ?? fallback } catch {
                throw Seq2SeqError("\(key.rawValue) is not a \(T.self)")
            }
        }
        self.init(rnnType: cell, attention: attention, sourceVocabSize: source, targetVocabSize: target,
                  embeddingSize: try field(.embeddingSize, d.embeddingSize), hiddenSize: try field(.hiddenSize, d.hiddenSize),
                  numLayers: try field(.numLayers, d.numLayers),
                  bidirectionalEncoder: try field(.bidirectionalEncoder, d.bidirectionalEncoder),
                  dropout: try field(.dropout, d.dropout), sourcePadTokenId: try field(.sourcePadTokenId, d.sourcePadTokenId),
                  targetPadTokenId: try field(.targetPadTokenId, d.targetPadTokenId),
                  bosTokenId: try field(.bosTokenId, d.bosTokenId), eosTokenId: try field(.eosTokenId, d.eosTokenId))
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("seq2seq", forKey: .modelType)
        try c.encode(rnnType.rawValue, forKey: .rnnType)
        try c.encode(attention.rawValue, forKey: .attention)
        try c.encode(sourceVocabSize, forKey: .sourceVocabSize)
        try c.encode(targetVocabSize, forKey: .targetVocabSize)
        try c.encode(embeddingSize, forKey: .embeddingSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numLayers, forKey: .numLayers)
        try c.encode(bidirectionalEncoder, forKey: .bidirectionalEncoder)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(sourcePadTokenId, forKey: .sourcePadTokenId)
        try c.encode(targetPadTokenId, forKey: .targetPadTokenId)
        try c.encode(bosTokenId, forKey: .bosTokenId)
        try c.encode(eosTokenId, forKey: .eosTokenId)
    }

    /// Checks the cell (GRU or LSTM), positive sizes, the dropout range and that every token id is inside
    /// its vocabulary; errors name the field.
    public func validate() throws {
        guard rnnType == .gru || rnnType == .lstm else { throw Seq2SeqError("rnn_type \(rnnType.rawValue) is not GRU or LSTM") }
        for (key, value) in [("source_vocab_size", sourceVocabSize), ("target_vocab_size", targetVocabSize),
                             ("embedding_size", embeddingSize), ("hidden_size", hiddenSize), ("num_layers", numLayers)]
        where value <= 0 {
            throw Seq2SeqError("\(key) must be positive, not \(value)")
        }
        guard dropout >= 0 && dropout < 1 else { throw Seq2SeqError("dropout must be in [0, 1), not \(dropout)") }
        guard (0..<sourceVocabSize).contains(sourcePadTokenId) else {
            throw Seq2SeqError("source_pad_token_id \(sourcePadTokenId) is outside the source vocabulary 0..<\(sourceVocabSize)")
        }
        for (key, value) in [("target_pad_token_id", targetPadTokenId), ("bos_token_id", bosTokenId), ("eos_token_id", eosTokenId)]
        where !(0..<targetVocabSize).contains(value) {
            throw Seq2SeqError("\(key) \(value) is outside the target vocabulary 0..<\(targetVocabSize)")
        }
    }
}

/// A recurrent encoder-decoder for translation (Sutskever et al. 2014; Cho et al. 2014) with the
/// attention of Bahdanau et al. 2015 or Luong et al. 2015, trained with teacher forcing.
///
/// - Encoder: `encoder.embedding` (V_src, E) -> dropout -> `encoder.rnn` (GRU or LSTM, L layers,
///   optionally bidirectional, padding-aware through the source lengths as `pack_padded_sequence`).
///   A bidirectional encoder's two directions are **summed**, both its outputs (B, S, 2 H) -> (B, S, H)
///   and its final states (2 L, B, H) -> (L, B, H), as PyTorch's chatbot tutorial sums its bidirectional
///   GRU's outputs: it needs no parameters, keeps the keys H wide so that all four attentions (dot
///   included) and the decoder's sizes are the same whatever the encoder's directions, and adds no
///   nonlinearity to tune (a Linear bridge, as Bahdanau et al.'s tanh(W_s h_1), would add both).
/// - Decoder: `decoder.embedding` (V_tgt, E) -> dropout -> `decoder.rnn` (L layers) started from the
///   encoder's final states (h, and c for LSTM) -> `decoder.out` (Linear H -> V_tgt). Attention:
///   - `none`: the decoder reads the source only through its initial state (the tutorial's
///     `DecoderRNN`, without its ReLU on the embedding, which Sutskever et al. do not have).
///   - `bahdanau` (PyTorch's "NLP From Scratch: Translation with a Sequence to Sequence Network and
///     Attention", `AttnDecoderRNN` with `BahdanauAttention`): at step t the query is the previous hidden
///     state of the top layer q = h_{t-1}, score_s = Va(tanh(Wa(q) + Ua(k_s))), context c_t = Σ p_s k_s
///     over the encoder outputs k, and the RNN reads [embedded_t; c_t] (E + H).
///   - `luong_dot`, `luong_general` (Luong et al. 2015, global attention with input feeding, OpenNMT-py's
///     `GlobalAttention` layout): the RNN reads [embedded_t; h~_{t-1}] (E + H; h~_0 = 0) giving h_t,
///     score_s = h_t · k_s (dot) or h_t · attn(k_s) (general), c_t = Σ p_s k_s, and the attentional
///     vector h~_t = tanh(concat([c_t; h_t])) is what `decoder.out` reads and the next step is fed.
///   Padded source positions get score -inf (probability 0).
///
/// Parameters, in registration order (that of the fixture script's PyTorch reference module), with
/// G = 3 (GRU) or 4 (LSTM), D = 2 for a bidirectional encoder, and torch's recurrent names per layer k
/// (`weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, `_reverse` for the second direction):
/// - `encoder.embedding.weight` (V_src, E); `encoder.rnn.*` (layer 0 input E, others D H);
/// - `decoder.embedding.weight` (V_tgt, E);
/// - bahdanau: `decoder.attention.Wa.weight` (H, H), `.Wa.bias` (H), `decoder.attention.Ua.weight` (H, H),
///   `.Ua.bias` (H), `decoder.attention.Va.weight` (1, H), `.Va.bias` (1) (the tutorial's, kept although
///   softmax makes its gradient exactly zero);
/// - luong_general: `decoder.attention.attn.weight` (H, H), no bias (a bias would add h_t · b to every
///   score alike);
/// - `decoder.rnn.*` (layer 0 input E, or E + H with attention, others H);
/// - luong_dot, luong_general: `decoder.concat.weight` (H, 2 H), no bias (Luong's W_c);
/// - `decoder.out.weight` (V_tgt, H), `decoder.out.bias` (V_tgt).
///
/// Init as PyTorch's defaults: embeddings N(0, 1), Linear weights and biases U(-1/√in, 1/√in), the
/// recurrent layers U(-1/√H, 1/√H).
///
/// For the trainer (the `seq2seq` family in TandemTraining): `record` builds the teacher-forced graph,
/// whose loss is the mean cross-entropy over the labels that are not -100; a batch file holds
/// `input_ids`, `attention_mask` (B, S), `decoder_input_ids` and `labels` (B, T') as DESIGN.md says, the
/// lengths coming from `sourceLengths(attentionMask:)`. `Seq2SeqDecoder` translates (greedy, beam search)
/// for `tandem translate` and BLEU at evaluation; `checkpointTensors` and `load` read and write
/// model.safetensors under the names above.
public final class Seq2SeqModel {
    public let config: Seq2SeqConfig
    public let encoderEmbedding: Embedding
    public let encoderRNN: Recurrent
    public let decoderEmbedding: Embedding
    /// Bahdanau's query, key and score layers `Wa`, `Ua`, `Va` (nil otherwise).
    public let queryLayer: Linear?, keyLayer: Linear?, scoreLayer: Linear?
    /// Luong's general score matrix `attn` (nil otherwise).
    public let generalLayer: Linear?
    public let decoderRNN: Recurrent
    /// Luong's W_c, `concat` (nil otherwise).
    public let attentionalLayer: Linear?
    /// `decoder.out`.
    public let outputLayer: Linear
    /// This model's parameters in registration order.
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` and draws PyTorch's default init.
    public init(_ config: Seq2SeqConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let E = config.embeddingSize, H = config.hiddenSize, L = config.numLayers
        let encoder = root("encoder"), decoder = root("decoder"), attention = decoder("attention")
        encoderEmbedding = Embedding(encoder("embedding"), count: config.sourceVocabSize, dimensions: E, initializer: .normal(std: 1))
        encoderRNN = Recurrent(encoder("rnn"), cell: config.rnnType, inputSize: E, hiddenSize: H, layers: L,
                               bidirectional: config.bidirectionalEncoder, dropout: config.dropout)
        decoderEmbedding = Embedding(decoder("embedding"), count: config.targetVocabSize, dimensions: E, initializer: .normal(std: 1))
        let bahdanau = config.attention == .bahdanau
        queryLayer = bahdanau ? Linear(torchDefault: attention("Wa"), inputs: H, outputs: H) : nil
        keyLayer = bahdanau ? Linear(torchDefault: attention("Ua"), inputs: H, outputs: H) : nil
        scoreLayer = bahdanau ? Linear(torchDefault: attention("Va"), inputs: H, outputs: 1) : nil
        generalLayer = config.attention == .luongGeneral
            ? Linear(torchDefault: attention("attn"), inputs: H, outputs: H, bias: false) : nil
        decoderRNN = Recurrent(decoder("rnn"), cell: config.rnnType, inputSize: E + (config.attention == .none ? 0 : H),
                               hiddenSize: H, layers: L, dropout: config.dropout)
        attentionalLayer = config.attention.feedsInput
            ? Linear(torchDefault: decoder("concat"), inputs: 2 * H, outputs: H, bias: false) : nil
        outputLayer = Linear(torchDefault: decoder("out"), inputs: H, outputs: config.targetVocabSize)
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// Checkpoint names and values in state_dict order: every parameter under its name.
    public var checkpointTensors: [(String, Parameter)] { parameters.map { ($0.name, $0) } }

    /// The source lengths of a right-padded batch from its attention mask (B, S) (1 on tokens, then 0):
    /// an error names the sequence whose mask has a 1 after a 0 or a value other than 0 and 1.
    public static func sourceLengths(attentionMask mask: [Int64], batch B: Int, length S: Int) throws -> [Int32] {
        precondition(mask.count == B * S, "sourceLengths: \(mask.count) mask values for (\(B), \(S))")
        return try (0..<B).map { b in
            let row = mask[b * S..<(b + 1) * S]
            let n = row.prefix { $0 == 1 }.count
            guard row.dropFirst(n).allSatisfy({ $0 == 0 }) else {
                throw Seq2SeqError("attention_mask of sequence \(b) is not 1s followed by 0s (right padding)")
            }
            return Int32(n)
        }
    }

    /// The source lengths of a right-padded batch of ids (B, S): each sequence's count before its first
    /// `source_pad_token_id`.
    public func sourceLengths(ids: [Int32], batch B: Int, length S: Int) -> [Int32] {
        precondition(ids.count == B * S, "sourceLengths: \(ids.count) ids for (\(B), \(S))")
        let pad = Int32(config.sourcePadTokenId)
        return (0..<B).map { b in Int32(ids[b * S..<(b + 1) * S].prefix { $0 != pad }.count) }
    }

    // MARK: - Graph

    /// The tensors of one recorded teacher-forced graph for B sentence pairs of S source and T target
    /// positions. Integer inputs are filled before `tape.forward()`.
    public struct Graph {
        public let batch: Int
        public let sourceLength: Int
        public let targetLength: Int
        /// (B, S) source ids, each in 0..<source_vocab_size (starts all 0).
        public let sourceIDs: UnsafeMutablePointer<Int32>
        /// (B) the valid source positions of each sentence, each in 0...S (starts all S); padding follows them.
        public let sourceLengths: UnsafeMutablePointer<Int32>
        /// (B, T) decoder inputs (bos then the target shifted right), each in 0..<target_vocab_size (starts 0).
        public let decoderInputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) the target tokens; -100 is ignored (starts all -100).
        public let labels: UnsafeMutablePointer<Int32>
        /// (B, T, V_tgt)
        public let logits: Tensor
        /// Mean cross-entropy over the labels that are not -100.
        public let loss: Tensor
        /// (B, T, S) the attention probabilities of every decoder step over the source (rows sum to 1 over
        /// the valid positions, zeros on padding), read after `forward()`; no gradient. Nil for `none`.
        public let attention: Tensor?
    }

    /// Records the teacher-forced forward pass on `tape` (dropout follows `tape.training`).
    ///
    /// How it runs: the encoder is one padding-aware `Recurrent` call over all S positions (input
    /// projections of all positions one product), and the keys of the attention (Ua k or attn k) one
    /// Linear over all B S positions. Without attention the decoder is one `Recurrent` call over all T
    /// steps too. With attention, each step depends on the previous step's attention (Bahdanau's context
    /// enters the RNN input, Luong's h~ is fed to the next input), so the decoder runs step by step on
    /// the tape: per step one attention op over the memory and one `Recurrent` call with T = 1 started
    /// from the previous step's states; the decoder embeddings (one lookup over all B T ids, time-major)
    /// and the output projection and loss (one Linear over all B T hidden states) stay batched.
    /// The loss smooths its targets by `labelSmoothing` (Szegedy et al. 2016; 0: none).
    public func record(on tape: Tape, batch B: Int, sourceLength S: Int, targetLength T: Int, labelSmoothing: Float = 0) -> Graph {
        let E = config.embeddingSize, H = config.hiddenSize
        let sourceIDs = tape.intInput(count: B * S), lengths = tape.intInput(count: B)
        let decoderIDs = tape.intInput(count: B * T), labels = tape.intInput(count: B * T)
        sourceIDs.update(repeating: 0, count: B * S)
        lengths.update(repeating: Int32(S), count: B)
        decoderIDs.update(repeating: 0, count: B * T)
        labels.update(repeating: -100, count: B * T)
        let encoded = encode(sourceIDs, lengths: lengths, batch: B, length: S, on: tape)

        let hidden: Tensor, attention: Tensor?
        if config.attention == .none {
            let embedded = tape.dropout(decoderEmbedding(decoderIDs, count: B * T, on: tape), p: config.dropout)
            hidden = decoderRNN(embedded.reshaped(Shape(B, T, E)), lengths: nil, initial: encoded.state, on: tape).output
            attention = nil
        } else {
            // Time-major ids make each step's embeddings one contiguous (B, E) block.
            let timeMajor = tape.intInput(count: T * B)
            tape.record(inputs: [], forward: {
                for b in 0..<B { for t in 0..<T { timeMajor[t * B + b] = decoderIDs[b * T + t] } }
            }, backward: {})
            let embedded = tape.dropout(decoderEmbedding(timeMajor, count: T * B, on: tape), p: config.dropout)
            let weights = tape.input(Shape(B, T, S))
            var state = encoded.state
            var feed: Tensor? = nil
            if config.attention.feedsInput {
                feed = tape.input(Shape(B, H))
                feed!.data.update(repeating: 0, count: B * H)
            }
            var outputs: [Tensor] = []
            for t in 0..<T {
                let step = Tensor(shape: Shape(B, E), data: embedded.data + t * B * E, grad: embedded.grad.map { $0 + t * B * E })
                let (output, next) = decoderStep(step, state: state, feed: feed, encoded: encoded, lengths: lengths,
                                                 weights: weights.data + t * S, ldw: T * S, on: tape)
                outputs.append(output)
                state = next
                if feed != nil { feed = output }
            }
            hidden = tape.swapLeadingAxes(tape.concatenate(outputs).reshaped(Shape(T, B, H)))
            attention = weights
        }
        let logits = outputLayer(hidden, on: tape)
        let loss = tape.crossEntropy(logits, targets: labels, labelSmoothing: labelSmoothing)
        return Graph(batch: B, sourceLength: S, targetLength: T, sourceIDs: sourceIDs, sourceLengths: lengths,
                     decoderInputIDs: decoderIDs, labels: labels, logits: logits, loss: loss, attention: attention)
    }

    /// What the decoder reads from the encoder: `memory` (B, S, H) the encoder's outputs (values, and
    /// Luong dot's keys), `keys` (B, S, H) the keys as scored (Ua k, attn k, or the memory; nil without
    /// attention), and `state` the decoder's initial states (L, B, H).
    struct Encoded {
        var memory: Tensor
        var keys: Tensor?
        var state: RecurrentState
    }

    /// The encoder over ids (B, S) with `lengths` (B), directions summed, and the attention's keys.
    func encode(_ ids: UnsafeMutablePointer<Int32>, lengths: UnsafeMutablePointer<Int32>, batch B: Int, length S: Int,
                on tape: Tape) -> Encoded {
        let E = config.embeddingSize, H = config.hiddenSize, L = config.numLayers
        let embedded = tape.dropout(encoderEmbedding(ids, count: B * S, on: tape), p: config.dropout)
        var (memory, state) = encoderRNN(embedded.reshaped(Shape(B, S, E)), lengths: lengths, on: tape)
        if config.bidirectionalEncoder {
            // Outputs (B S, 2, H) and states (L, 2, B H): forward | reverse side by side, summed.
            memory = tape.sumBlocks(memory, rows: B * S, blocks: 2, shape: Shape(B, S, H))
            state = RecurrentState(hidden: tape.sumBlocks(state.hidden, rows: L, blocks: 2, shape: Shape(L, B, H)),
                                   cell: state.cell.map { tape.sumBlocks($0, rows: L, blocks: 2, shape: Shape(L, B, H)) })
        }
        let keys: Tensor?
        switch config.attention {
        case .none: keys = nil
        case .bahdanau: keys = keyLayer!(memory, on: tape)
        case .luongDot: keys = memory
        case .luongGeneral: keys = generalLayer!(memory, on: tape)
        }
        return Encoded(memory: memory, keys: keys, state: state)
    }

    /// One decoder step for N rows: `embedded` (N, E) the step's input embeddings, `state` (L, N, H) the
    /// previous states, `feed` (N, H) the previous attentional vector (Luong; nil otherwise). Returns what
    /// `decoder.out` reads (N, H) (h_t, or Luong's h~_t, which is also the next feed) and the new states;
    /// the attention probabilities go to `weights` rows of stride `ldw`.
    func decoderStep(_ embedded: Tensor, state: RecurrentState, feed: Tensor?, encoded: Encoded,
                     lengths: UnsafeMutablePointer<Int32>?, weights: UnsafeMutablePointer<Float>, ldw: Int,
                     on tape: Tape) -> (output: Tensor, state: RecurrentState) {
        let N = embedded.shape[0], H = config.hiddenSize, L = config.numLayers
        func run(_ x: Tensor) -> (Tensor, RecurrentState) {
            let (y, next) = decoderRNN(x.reshaped(Shape(N, 1, x.shape[-1])), lengths: nil, initial: state, on: tape)
            return (y.reshaped(Shape(N, H)), next)
        }
        switch config.attention {
        case .none:
            return run(embedded)
        case .bahdanau:
            let offset = (L - 1) * N * H
            let query = Tensor(shape: Shape(N, H), data: state.hidden.data + offset, grad: state.hidden.grad.map { $0 + offset })
            let context = tape.additiveAttention(query: queryLayer!(query, on: tape), keys: encoded.keys!,
                                                 v: scoreLayer!.weight, vBias: scoreLayer!.bias, values: encoded.memory,
                                                 lengths: lengths, weights: weights, ldw: ldw)
            return run(tape.concatenateColumns([embedded, context]))
        case .luongDot, .luongGeneral:
            let (h, next) = run(tape.concatenateColumns([embedded, feed!]))
            let context = tape.dotAttention(query: h, keys: encoded.keys!, values: encoded.memory, lengths: lengths,
                                            weights: weights, ldw: ldw)
            return (tape.tanh(attentionalLayer!(tape.concatenateColumns([context, h]), on: tape)), next)
        }
    }

    // MARK: - Cost

    /// Training FLOPs of one sentence pair of S source and T target tokens: 6 x the multiply-adds of the
    /// recurrent layers (G H (I + H) per direction and position), the attention's projections and its
    /// scores and contexts (about 2 S H per target step; Bahdanau's scores 2 S H more), Luong's W_c and the
    /// output projection H V_tgt per target token.
    public func trainingFLOPsPerSample(sourceLength S: Int, targetLength T: Int) -> Double {
        let G = config.rnnType.gates, H = config.hiddenSize, E = config.embeddingSize, D = config.bidirectionalEncoder ? 2 : 1
        var source = 0, target = H * config.targetVocabSize
        for k in 0..<config.numLayers {
            source += D * G * H * ((k == 0 ? E : D * H) + H)
            target += G * H * ((k == 0 ? E + (config.attention == .none ? 0 : H) : H) + H)
        }
        switch config.attention {
        case .none: break
        case .bahdanau: source += H * H; target += H * H + 3 * S * H
        case .luongDot: target += 2 * S * H + 2 * H * H
        case .luongGeneral: source += H * H; target += 2 * S * H + 2 * H * H
        }
        return 6 * Double(S * source + T * target)
    }

    // MARK: - Loading checkpoints

    /// Fills the parameters from a checkpoint with the names above, given its tensor shapes and a way to
    /// copy a tensor as Float32. Every parameter must be present with the config's shape (errors name the
    /// tensor and `origin`).
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "", isOptional: { _ in false }, shapes: shapes, origin: origin,
                                  error: { Seq2SeqError($0) }, copy: copy)
    }
}
