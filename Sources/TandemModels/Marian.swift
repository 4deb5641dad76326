import TandemAutograd
import TandemKernels
import TandemNN

/// An error in a Marian config or checkpoint, naming the field or tensor concerned.
public struct MarianError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The Transformer encoder-decoder's hyper-parameters as HF `MarianConfig`'s config.json fields.
///
/// Only the shared vocabulary is supported (`share_encoder_decoder_embeddings` and `tie_word_embeddings`
/// true, `decoder_vocab_size` equal to `vocab_size`): one table `model.shared.weight` is the encoder's and
/// the decoder's token embedding and the output projection, as in Vaswani et al. 2017, §3.4, and in the
/// opus-mt models. `attention_dropout` drops out the attention probabilities of every attention, self and
/// cross, as BERT's `attention_probs_dropout_prob`.
public struct MarianConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    public var dModel: Int
    public var encoderLayers: Int
    public var decoderLayers: Int
    public var encoderAttentionHeads: Int
    public var decoderAttentionHeads: Int
    public var encoderFfnDim: Int
    public var decoderFfnDim: Int
    /// The longest source or target the fixed sinusoidal table covers.
    public var maxPositionEmbeddings: Int
    /// After the embeddings and after every attention and feed-forward output (training only).
    public var dropout: Float
    /// Not applied (see the type's comment).
    public var attentionDropout: Float
    /// After the feed-forward activation (training only).
    public var activationDropout: Float
    /// An HF `ACT2FN` name: "swish"/"silu" (opus-mt), "gelu" (MarianConfig's default), "gelu_new", "relu".
    public var activationFunction: String
    /// Token embeddings times √d_model (Vaswani et al. §3.4), as opus-mt; false in MarianConfig's defaults.
    public var scaleEmbedding: Bool
    /// The std of the normal init of embeddings and Linear weights.
    public var initStd: Float
    public var padTokenId: Int
    /// The decoder's first input (Marian uses the pad id; Tandem's WordPiece runs use [CLS]).
    public var decoderStartTokenId: Int
    /// The token that ends a translation.
    public var eosTokenId: Int

    /// The defaults are MarianConfig's (transformers 5).
    public init(vocabSize: Int = 58101, dModel: Int = 1024, encoderLayers: Int = 12, decoderLayers: Int = 12,
                encoderAttentionHeads: Int = 16, decoderAttentionHeads: Int = 16, encoderFfnDim: Int = 4096,
                decoderFfnDim: Int = 4096, maxPositionEmbeddings: Int = 1024, dropout: Float = 0.1,
                attentionDropout: Float = 0, activationDropout: Float = 0, activationFunction: String = "gelu",
                scaleEmbedding: Bool = false, initStd: Float = 0.02, padTokenId: Int = 58100,
                decoderStartTokenId: Int = 58100, eosTokenId: Int = 0) {
        self.vocabSize = vocabSize; self.dModel = dModel
        self.encoderLayers = encoderLayers; self.decoderLayers = decoderLayers
        self.encoderAttentionHeads = encoderAttentionHeads; self.decoderAttentionHeads = decoderAttentionHeads
        self.encoderFfnDim = encoderFfnDim; self.decoderFfnDim = decoderFfnDim
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.dropout = dropout
        self.attentionDropout = attentionDropout; self.activationDropout = activationDropout
        self.activationFunction = activationFunction; self.scaleEmbedding = scaleEmbedding; self.initStd = initStd
        self.padTokenId = padTokenId; self.decoderStartTokenId = decoderStartTokenId; self.eosTokenId = eosTokenId
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", dModel = "d_model", encoderLayers = "encoder_layers", decoderLayers = "decoder_layers"
        case encoderAttentionHeads = "encoder_attention_heads", decoderAttentionHeads = "decoder_attention_heads"
        case encoderFfnDim = "encoder_ffn_dim", decoderFfnDim = "decoder_ffn_dim"
        case maxPositionEmbeddings = "max_position_embeddings", dropout, attentionDropout = "attention_dropout"
        case activationDropout = "activation_dropout", activationFunction = "activation_function"
        case scaleEmbedding = "scale_embedding", initStd = "init_std", padTokenId = "pad_token_id"
        case decoderStartTokenId = "decoder_start_token_id", eosTokenId = "eos_token_id"
        case modelType = "model_type", architectures, decoderVocabSize = "decoder_vocab_size"
        case shareEncoderDecoderEmbeddings = "share_encoder_decoder_embeddings", tieWordEmbeddings = "tie_word_embeddings"
        case encoderLayerdrop = "encoder_layerdrop", decoderLayerdrop = "decoder_layerdrop"
        case isEncoderDecoder = "is_encoder_decoder", forcedEosTokenId = "forced_eos_token_id"
    }

    /// Missing fields take MarianConfig's defaults, as `from_pretrained` does; what the model cannot do
    /// (separate vocabularies, LayerDrop, an unknown activation) is an error naming the field.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != "marian" {
            throw MarianError("model_type \"\(type)\" is not marian")
        }
        let d = MarianConfig()
        func field<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            do { return try c.decodeIfPresent(T.self, forKey: key) ?? fallback } catch {
                throw MarianError("\(key.rawValue) is not a \(T.self)")
            }
        }
        self.init(vocabSize: try field(.vocabSize, d.vocabSize), dModel: try field(.dModel, d.dModel),
                  encoderLayers: try field(.encoderLayers, d.encoderLayers), decoderLayers: try field(.decoderLayers, d.decoderLayers),
                  encoderAttentionHeads: try field(.encoderAttentionHeads, d.encoderAttentionHeads),
                  decoderAttentionHeads: try field(.decoderAttentionHeads, d.decoderAttentionHeads),
                  encoderFfnDim: try field(.encoderFfnDim, d.encoderFfnDim), decoderFfnDim: try field(.decoderFfnDim, d.decoderFfnDim),
                  maxPositionEmbeddings: try field(.maxPositionEmbeddings, d.maxPositionEmbeddings),
                  dropout: try field(.dropout, d.dropout), attentionDropout: try field(.attentionDropout, d.attentionDropout),
                  activationDropout: try field(.activationDropout, d.activationDropout),
                  activationFunction: try field(.activationFunction, d.activationFunction),
                  scaleEmbedding: try field(.scaleEmbedding, d.scaleEmbedding), initStd: try field(.initStd, d.initStd),
                  padTokenId: try field(.padTokenId, d.padTokenId),
                  decoderStartTokenId: try field(.decoderStartTokenId, d.decoderStartTokenId),
                  eosTokenId: try field(.eosTokenId, d.eosTokenId))
        if let v = try c.decodeIfPresent(Int.self, forKey: .decoderVocabSize), v != vocabSize {
            throw MarianError("decoder_vocab_size \(v) differs from vocab_size \(vocabSize): only a shared vocabulary is supported")
        }
        for key in [CodingKeys.shareEncoderDecoderEmbeddings, .tieWordEmbeddings] {
            if try c.decodeIfPresent(Bool.self, forKey: key) == false {
                throw MarianError("\(key.rawValue) false is not supported (one shared table embeds both sides and projects the output)")
            }
        }
        for key in [CodingKeys.encoderLayerdrop, .decoderLayerdrop] {
            if let p = try c.decodeIfPresent(Float.self, forKey: key), p != 0 {
                throw MarianError("\(key.rawValue) \(p) is not supported (LayerDrop); use 0")
            }
        }
        try validate()
    }

    /// Writes a config.json that transformers loads as `MarianMTModel`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(["MarianMTModel"], forKey: .architectures)
        try c.encode("marian", forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(vocabSize, forKey: .decoderVocabSize)
        try c.encode(dModel, forKey: .dModel)
        try c.encode(encoderLayers, forKey: .encoderLayers)
        try c.encode(decoderLayers, forKey: .decoderLayers)
        try c.encode(encoderAttentionHeads, forKey: .encoderAttentionHeads)
        try c.encode(decoderAttentionHeads, forKey: .decoderAttentionHeads)
        try c.encode(encoderFfnDim, forKey: .encoderFfnDim)
        try c.encode(decoderFfnDim, forKey: .decoderFfnDim)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(attentionDropout, forKey: .attentionDropout)
        try c.encode(activationDropout, forKey: .activationDropout)
        try c.encode(activationFunction, forKey: .activationFunction)
        try c.encode(scaleEmbedding, forKey: .scaleEmbedding)
        try c.encode(initStd, forKey: .initStd)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode(decoderStartTokenId, forKey: .decoderStartTokenId)
        try c.encode(eosTokenId, forKey: .eosTokenId)
        // generate() forces eos at the length limit with this; MarianConfig's default is 0, eos's id there.
        try c.encode(eosTokenId, forKey: .forcedEosTokenId)
        try c.encode(true, forKey: .shareEncoderDecoderEmbeddings)
        try c.encode(true, forKey: .tieWordEmbeddings)
        try c.encode(true, forKey: .isEncoderDecoder)
        try c.encode(0.0, forKey: .encoderLayerdrop)
        try c.encode(0.0, forKey: .decoderLayerdrop)
    }

    /// The feed-forward activation, or nil when `activation_function` is not supported.
    public var activation: Activation? { Activation(huggingFaceName: activationFunction) }

    /// Checks positive sizes, heads dividing d_model, the dropout ranges, the activation and that every
    /// token id is inside the vocabulary; errors name the field.
    public func validate() throws {
        for (key, value) in [("vocab_size", vocabSize), ("d_model", dModel), ("encoder_layers", encoderLayers),
                             ("decoder_layers", decoderLayers), ("encoder_attention_heads", encoderAttentionHeads),
                             ("decoder_attention_heads", decoderAttentionHeads), ("encoder_ffn_dim", encoderFfnDim),
                             ("decoder_ffn_dim", decoderFfnDim), ("max_position_embeddings", maxPositionEmbeddings)]
        where value <= 0 {
            throw MarianError("\(key) must be positive, not \(value)")
        }
        for (key, heads) in [("encoder_attention_heads", encoderAttentionHeads), ("decoder_attention_heads", decoderAttentionHeads)]
        where dModel % heads != 0 {
            throw MarianError("d_model \(dModel) is not a multiple of \(key) \(heads)")
        }
        for (key, p) in [("dropout", dropout), ("attention_dropout", attentionDropout), ("activation_dropout", activationDropout)]
        where !(p >= 0 && p < 1) {
            throw MarianError("\(key) must be in [0, 1), not \(p)")
        }
        guard activation != nil else {
            throw MarianError("activation_function \"\(activationFunction)\" is not supported (swish, silu, gelu, gelu_new, relu)")
        }
        for (key, id) in [("pad_token_id", padTokenId), ("decoder_start_token_id", decoderStartTokenId), ("eos_token_id", eosTokenId)]
        where !(0..<vocabSize).contains(id) {
            throw MarianError("\(key) \(id) is outside the vocabulary 0..<\(vocabSize)")
        }
    }
}

/// A decoder layer of the Transformer (Vaswani et al. 2017, §3.1), post-LN as HF `MarianDecoderLayer`:
/// x = LN(x + Drop(SelfAttn(x, causal))); x = LN(x + Drop(CrossAttn(x, memory))); x = LN(x + Drop(FFN(x))).
public final class MarianDecoderLayer {
    public let selfAttention: MultiHeadAttention
    public let selfAttentionNorm: LayerNorm
    public let crossAttention: MultiHeadAttention
    public let crossAttentionNorm: LayerNorm
    public let feedForward: FeedForward
    public let finalNorm: LayerNorm
    public let dropout: Float

    init(selfAttention: MultiHeadAttention, selfAttentionNorm: LayerNorm, crossAttention: MultiHeadAttention,
         crossAttentionNorm: LayerNorm, feedForward: FeedForward, finalNorm: LayerNorm, dropout: Float) {
        self.selfAttention = selfAttention; self.selfAttentionNorm = selfAttentionNorm
        self.crossAttention = crossAttention; self.crossAttentionNorm = crossAttentionNorm
        self.feedForward = feedForward; self.finalNorm = finalNorm; self.dropout = dropout
    }

    /// x (B, T, C) -> (B, T, C), reading `memory` (B, S, C) where `memoryMask` (B, S) is 1; the decoder's
    /// own keys are masked by `keyMask` (B, T) (nil: all) and causally.
    public func callAsFunction(_ x: Tensor, keyMask: Tensor?, memory: Tensor, memoryMask: Tensor, on tape: Tape) -> Tensor {
        let a = tape.dropout(selfAttention(x, keyMask: keyMask, causal: true, on: tape), p: dropout, consumingInput: true)
        return afterSelfAttention(x, a, memory: memory, memoryMask: memoryMask, on: tape)
    }

    /// The rest of the layer from the self-attention's output `a` (after dropout) onwards.
    func afterSelfAttention(_ x: Tensor, _ a: Tensor, memory: Tensor, memoryMask: Tensor, on tape: Tape) -> Tensor {
        let h = selfAttentionNorm(tape.add(x, a), on: tape)
        let c = tape.dropout(crossAttention.crossAttention(h, memory: memory, memoryMask: memoryMask, on: tape), p: dropout, consumingInput: true)
        let h2 = crossAttentionNorm(tape.add(h, c), on: tape)
        let f = tape.dropout(feedForward(h2, on: tape), p: dropout, consumingInput: true)
        return finalNorm(tape.add(h2, f), on: tape)
    }
}

/// The Transformer of "Attention Is All You Need" (Vaswani et al. 2017) in HF `MarianMTModel`'s layout:
/// a shared token embedding times √d_model (`scale_embedding`) plus fixed sinusoidal positions
/// (`sinusoidalPositions`, not parameters) and dropout, post-LN encoder layers (self-attention over the
/// source with its padding masked, feed-forward), post-LN decoder layers (`MarianDecoderLayer`), and
/// logits = h · sharedᵀ + `final_logits_bias`. The loss is the mean cross-entropy over the labels that
/// are not -100, with optional label smoothing (Szegedy et al. 2016; the paper's ε_ls = 0.1).
///
/// Parameters, registered in `MarianMTModel.named_parameters()` order, then the buffer:
/// - `model.shared.weight` (V, C), which HF ties to `model.encoder.embed_tokens.weight`,
///   `model.decoder.embed_tokens.weight` and `lm_head.weight`; lookups of `pad_token_id` pass it no
///   gradient (`nn.Embedding(padding_idx:)`), the output projection does;
/// - `model.encoder.layers.{i}.`: `self_attn.{k,v,q,out}_proj.{weight,bias}`, `self_attn_layer_norm`,
///   `fc1` (F, C), `fc2` (C, F), `final_layer_norm`;
/// - `model.decoder.layers.{i}.`: `self_attn.{k,v,q,out}_proj`, `self_attn_layer_norm`,
///   `encoder_attn.{k,v,q,out}_proj`, `encoder_attn_layer_norm`, `fc1`, `fc2`, `final_layer_norm`;
/// - `final_logits_bias` (1, V): an HF buffer, saved but not trained; here a parameter whose gradient
///   stays zero (`frozenBias`), so that checkpoints, broadcast and the optimizer need no special case.
///
/// Init as `MarianPreTrainedModel._init_weights`: normal(0, init_std) weights with a zero padding row,
/// zero biases, LayerNorm ones and zeros, a zero `final_logits_bias`. `save_pretrained` of a tied
/// Marian writes exactly `checkpointTensors` (the tied aliases and the positions are not saved), and
/// `from_pretrained` reports no missing or unexpected keys for them.
public final class MarianMT {
    public let config: MarianConfig
    public let shared: Embedding
    public let encoderLayers: [TransformerBlock]
    public let decoderLayers: [MarianDecoderLayer]
    public let finalLogitsBias: Parameter
    /// (max_position_embeddings, C), constant; the graphs' ops hold it too, so a tape may outlive the model.
    public let positions: [Float]
    /// This model's parameters in registration order.
    public let parameters: [Parameter]

    public init(_ config: MarianConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let model = root("model"), C = config.dModel
        let init_ = ParameterInit.normal(std: config.initStd)
        shared = Embedding(model("shared"), count: config.vocabSize, dimensions: C, initializer: init_)
        (shared.weight.value + config.padTokenId * C).update(repeating: 0, count: C)
        let activation = config.activation ?? .gelu(.erf)
        /// HF's MarianAttention creates k, v, q, out in that order.
        func attention(_ scope: ParameterScope, heads: Int) -> MultiHeadAttention {
            let k = Linear(scope("k_proj"), inputs: C, outputs: C, initializer: init_)
            let v = Linear(scope("v_proj"), inputs: C, outputs: C, initializer: init_)
            let q = Linear(scope("q_proj"), inputs: C, outputs: C, initializer: init_)
            let o = Linear(scope("out_proj"), inputs: C, outputs: C, initializer: init_)
            return MultiHeadAttention(query: q, key: k, value: v, output: o, heads: heads, dropout: config.attentionDropout)
        }
        func feedForward(_ scope: ParameterScope, width F: Int) -> FeedForward {
            FeedForward(up: Linear(scope("fc1"), inputs: C, outputs: F, initializer: init_),
                        down: Linear(scope("fc2"), inputs: F, outputs: C, initializer: init_),
                        activation: activation, activationDropout: config.activationDropout)
        }
        encoderLayers = (0..<config.encoderLayers).map { i in
            let layer = model("encoder")("layers")("\(i)")
            let heads = attention(layer("self_attn"), heads: config.encoderAttentionHeads)
            let norm = LayerNorm(layer("self_attn_layer_norm"), dimensions: C, eps: 1e-5)
            let ffn = feedForward(layer, width: config.encoderFfnDim)
            return TransformerBlock(attention: heads, attentionNorm: norm, feedForward: ffn,
                                    feedForwardNorm: LayerNorm(layer("final_layer_norm"), dimensions: C, eps: 1e-5),
                                    norm: .post, dropout: config.dropout)
        }
        decoderLayers = (0..<config.decoderLayers).map { i in
            let layer = model("decoder")("layers")("\(i)")
            let selfAttention = attention(layer("self_attn"), heads: config.decoderAttentionHeads)
            let selfNorm = LayerNorm(layer("self_attn_layer_norm"), dimensions: C, eps: 1e-5)
            let cross = attention(layer("encoder_attn"), heads: config.decoderAttentionHeads)
            let crossNorm = LayerNorm(layer("encoder_attn_layer_norm"), dimensions: C, eps: 1e-5)
            let ffn = feedForward(layer, width: config.decoderFfnDim)
            return MarianDecoderLayer(selfAttention: selfAttention, selfAttentionNorm: selfNorm, crossAttention: cross,
                                      crossAttentionNorm: crossNorm, feedForward: ffn,
                                      finalNorm: LayerNorm(layer("final_layer_norm"), dimensions: C, eps: 1e-5),
                                      dropout: config.dropout)
        }
        finalLogitsBias = root.parameter("final_logits_bias", Shape(1, config.vocabSize), .zeros, decays: false)
        positions = sinusoidalPositions(count: config.maxPositionEmbeddings, dimensions: C)
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// √d_model with `scale_embedding`, else 1.
    public var embeddingScale: Float { config.scaleEmbedding ? Float(config.dModel).squareRoot() : 1 }

    /// Checkpoint names and values: every parameter under its name (what `save_pretrained` writes).
    public var checkpointTensors: [(String, Parameter)] { parameters.map { ($0.name, $0) } }

    // MARK: - Graph

    /// The tensors of one recorded teacher-forced graph for B sentence pairs of S source and T target
    /// positions (right-padded). Integer inputs are filled before `tape.forward()`.
    public struct Graph {
        public let batch: Int
        public let sourceLength: Int
        public let targetLength: Int
        /// (B, S) source ids (starts all pad).
        public let sourceIDs: UnsafeMutablePointer<Int32>
        /// (B) each source's length in 1...S (starts S): the encoder's and cross-attention's key mask.
        public let sourceLengths: UnsafeMutablePointer<Int32>
        /// (B, T) decoder inputs: decoder_start then the target shifted right (starts all pad).
        public let decoderInputIDs: UnsafeMutablePointer<Int32>
        /// (B) each decoder input's length in 1...T (starts T): HF's `decoder_attention_mask`. Rows past it
        /// are padding whose outputs only padding reads (the self-attention is causal), so the loss and
        /// the gradients do not depend on it; the logits of those rows do.
        public let targetLengths: UnsafeMutablePointer<Int32>
        /// (B, T) the target tokens; -100 is ignored (starts all -100).
        public let labels: UnsafeMutablePointer<Int32>
        /// (B, S, C)
        public let encoderOutput: Tensor
        /// (B, T, V)
        public let logits: Tensor
        public let loss: Tensor
    }

    /// Records the teacher-forced forward pass on `tape` (dropout follows `tape.training`).
    public func record(on tape: Tape, batch B: Int, sourceLength S: Int, targetLength T: Int,
                       labelSmoothing: Float = 0) -> Graph {
        precondition(S <= config.maxPositionEmbeddings && T <= config.maxPositionEmbeddings,
                     "source \(S) or target \(T) positions exceed max_position_embeddings \(config.maxPositionEmbeddings)")
        let pad = Int32(config.padTokenId)
        let sourceIDs = tape.intInput(count: B * S), sourceLengths = tape.intInput(count: B)
        let decoderIDs = tape.intInput(count: B * T), targetLengths = tape.intInput(count: B)
        let labels = tape.intInput(count: B * T)
        sourceIDs.update(repeating: pad, count: B * S)
        sourceLengths.update(repeating: Int32(S), count: B)
        decoderIDs.update(repeating: pad, count: B * T)
        targetLengths.update(repeating: Int32(T), count: B)
        labels.update(repeating: -100, count: B * T)
        let sourceMask = tape.input(Shape(B, S)), targetMask = tape.input(Shape(B, T))
        tape.record(inputs: [], forward: {
            Self.fillMask(sourceMask.data, lengths: sourceLengths, batch: B, length: S)
            Self.fillMask(targetMask.data, lengths: targetLengths, batch: B, length: T)
        }, backward: {})
        let memory = encode(sourceIDs, mask: sourceMask, batch: B, length: S, on: tape)
        var x = embed(decoderIDs, positions: Self.positionIDs(tape, batch: B, length: T), count: B * T, on: tape)
            .reshaped(Shape(B, T, config.dModel))
        for layer in decoderLayers { x = layer(x, keyMask: targetMask, memory: memory, memoryMask: sourceMask, on: tape) }
        let logits = project(x, on: tape)
        let loss = tape.crossEntropy(logits, targets: labels, labelSmoothing: labelSmoothing)
        return Graph(batch: B, sourceLength: S, targetLength: T, sourceIDs: sourceIDs, sourceLengths: sourceLengths,
                     decoderInputIDs: decoderIDs, targetLengths: targetLengths, labels: labels, encoderOutput: memory,
                     logits: logits, loss: loss)
    }

    /// mask (B, L) = 1 on the first lengths[b] positions of each row, 0 after.
    static func fillMask(_ mask: UnsafeMutablePointer<Float>, lengths: UnsafePointer<Int32>, batch B: Int, length L: Int) {
        for b in 0..<B {
            let n = min(max(Int(lengths[b]), 0), L)
            (mask + b * L).update(repeating: 1, count: n)
            (mask + b * L + n).update(repeating: 0, count: L - n)
        }
    }

    /// (B L) position ids 0..<L for each of B rows, filled at recording.
    static func positionIDs(_ tape: Tape, batch B: Int, length L: Int) -> UnsafeMutablePointer<Int32> {
        let ids = tape.intInput(count: B * L)
        for b in 0..<B { for t in 0..<L { ids[b * L + t] = Int32(t) } }
        return ids
    }

    /// Token embeddings (the pad row gets no gradient from them) times the scale, plus positions, then
    /// dropout: (N, C).
    func embed(_ ids: UnsafeMutablePointer<Int32>, positions: UnsafeMutablePointer<Int32>, count N: Int, on tape: Tape) -> Tensor {
        let tokens = tape.embedding(ids, count: N, table: shared.weight, paddingIndex: Int32(config.padTokenId))
        return tape.dropout(tape.scaledPositions(tokens, table: self.positions, positions: positions, scale: embeddingScale),
                            p: config.dropout)
    }

    /// The encoder over ids (B, S) whose padding `mask` (B, S) hides: (B, S, C).
    func encode(_ ids: UnsafeMutablePointer<Int32>, mask: Tensor, batch B: Int, length S: Int, on tape: Tape) -> Tensor {
        var x = embed(ids, positions: Self.positionIDs(tape, batch: B, length: S), count: B * S, on: tape)
            .reshaped(Shape(B, S, config.dModel))
        for layer in encoderLayers { x = layer(x, keyMask: mask, causal: false, on: tape) }
        return x
    }

    /// logits = h sharedᵀ + final_logits_bias (the bias frozen).
    func project(_ h: Tensor, on tape: Tape) -> Tensor {
        tape.linear(h, weight: shared.weight, bias: finalLogitsBias, frozenBias: true)
    }

    // MARK: - Cost

    /// Training FLOPs of one sentence pair of S source and T target tokens: 6 x (the multiply-adds of the
    /// encoder's projections per source token, the decoder's and the output projection per target token)
    /// plus 12 x C x queries x keys per attention layer (the encoder's S x S, the decoder's T x T
    /// self-attention, counted whole as GPT's causal one is, and its T x S cross-attention): the DESIGN.md
    /// rule applied to each stack.
    public func trainingFLOPsPerSample(sourceLength S: Int, targetLength T: Int) -> Double {
        let C = Double(config.dModel), V = Double(config.vocabSize)
        let encoder = Double(config.encoderLayers) * (4 * C * C + 2 * C * Double(config.encoderFfnDim))
        let decoder = Double(config.decoderLayers) * (8 * C * C + 2 * C * Double(config.decoderFfnDim))
        let s = Double(S), t = Double(T)
        let attention = 12 * C * (Double(config.encoderLayers) * s * s
                                  + Double(config.decoderLayers) * (t * t + t * s))
        return 6 * (s * encoder + t * (decoder + C * V)) + attention
    }

    // MARK: - Loading checkpoints

    /// Fills the parameters from a transformers Marian checkpoint, given its tensor shapes and a way to
    /// copy a tensor as Float32. The shared table may be stored as `model.shared.weight` or under one of
    /// its tied names; `final_logits_bias` keeps its zeros when absent (HF ignores it missing too); the
    /// positions' tables, when saved, are ignored (they are computed). Errors name the tensor and `origin`.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        var shapes = shapes
        let tied = ["model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"]
        var aliases: [String: String] = [:]
        if shapes["model.shared.weight"] == nil, let name = tied.first(where: { shapes[$0] != nil }) {
            aliases["model.shared.weight"] = name
        }
        var report = try loadCheckpointTensors(parameters, prefix: "", aliases: aliases,
                                               isOptional: { $0 === self.finalLogitsBias }, shapes: shapes, origin: origin,
                                               error: { MarianError($0) }, copy: copy)
        for name in tied + ["model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"] { shapes[name] = nil }
        report.ignored = report.ignored.filter { shapes[$0] != nil }
        return report
    }
}
