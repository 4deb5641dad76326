import TandemAutograd
import TandemKernels
import TandemNN

/// DistilBERT's hyper-parameters (Sanh et al. 2019) as HF `DistilBertConfig`'s config.json fields
/// (`model_type: distilbert`).
public struct DistilBertConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    /// Layers (HF `n_layers`).
    public var numLayers: Int
    /// Attention heads (HF `n_heads`).
    public var numHeads: Int
    /// Width C (HF `dim`).
    public var dim: Int
    /// Feed-forward width (HF `hidden_dim`).
    public var hiddenDim: Int
    /// Dropout after the embeddings and the feed-forward network.
    public var dropout: Float
    /// Dropout on the attention probabilities while training (as BERT's `attention_probs_dropout_prob`).
    public var attentionDropout: Float
    /// Only "gelu" (the exact, erf form) is supported.
    public var activation: String
    public var initializerRange: Float
    public var padTokenId: Int
    /// DistilBERT's LayerNorms all use eps 1e-12 (hard-wired in transformers, not a config field).
    public var layerNormEps: Float { 1e-12 }

    /// The defaults are DistilBertConfig's (distilbert-base-uncased).
    public init(vocabSize: Int = 30522, maxPositionEmbeddings: Int = 512, numLayers: Int = 6, numHeads: Int = 12,
                dim: Int = 768, hiddenDim: Int = 3072, dropout: Float = 0.1, attentionDropout: Float = 0.1,
                activation: String = "gelu", initializerRange: Float = 0.02, padTokenId: Int = 0) {
        self.vocabSize = vocabSize; self.maxPositionEmbeddings = maxPositionEmbeddings; self.numLayers = numLayers
        self.numHeads = numHeads; self.dim = dim; self.hiddenDim = hiddenDim; self.dropout = dropout
        self.attentionDropout = attentionDropout; self.activation = activation
        self.initializerRange = initializerRange; self.padTokenId = padTokenId
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", maxPositionEmbeddings = "max_position_embeddings", numLayers = "n_layers"
        case numHeads = "n_heads", dim, hiddenDim = "hidden_dim", dropout, attentionDropout = "attention_dropout"
        case activation, initializerRange = "initializer_range", padTokenId = "pad_token_id"
        case sinusoidalPosEmbds = "sinusoidal_pos_embds", tieWordEmbeddings = "tie_word_embeddings"
        case modelType = "model_type", architectures
    }

    /// Missing fields take DistilBertConfig's defaults, as `from_pretrained` does; unsupported settings
    /// (sinusoidal positions, an activation other than gelu, an untied projector) are errors.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "distilbert"
        guard modelType == "distilbert" else {
            throw BertError("model_type \"\(modelType)\" is not a DistilBERT model (distilbert)")
        }
        let d = DistilBertConfig()
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d.maxPositionEmbeddings
        numLayers = try c.decodeIfPresent(Int.self, forKey: .numLayers) ?? d.numLayers
        numHeads = try c.decodeIfPresent(Int.self, forKey: .numHeads) ?? d.numHeads
        dim = try c.decodeIfPresent(Int.self, forKey: .dim) ?? d.dim
        hiddenDim = try c.decodeIfPresent(Int.self, forKey: .hiddenDim) ?? d.hiddenDim
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? d.dropout
        attentionDropout = try c.decodeIfPresent(Float.self, forKey: .attentionDropout) ?? d.attentionDropout
        activation = try c.decodeIfPresent(String.self, forKey: .activation) ?? d.activation
        initializerRange = try c.decodeIfPresent(Float.self, forKey: .initializerRange) ?? d.initializerRange
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId) ?? d.padTokenId
        guard try !(c.decodeIfPresent(Bool.self, forKey: .sinusoidalPosEmbds) ?? false) else {
            throw BertError("sinusoidal_pos_embds true is not supported (only learned position embeddings)")
        }
        guard try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true else {
            throw BertError("tie_word_embeddings false is not supported (vocab_projector is the word embedding)")
        }
        try validate()
    }

    /// Writes a config.json that transformers loads as `DistilBertForMaskedLM`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(["DistilBertForMaskedLM"], forKey: .architectures)
        try c.encode("distilbert", forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(false, forKey: .sinusoidalPosEmbds)
        try c.encode(numLayers, forKey: .numLayers)
        try c.encode(numHeads, forKey: .numHeads)
        try c.encode(dim, forKey: .dim)
        try c.encode(hiddenDim, forKey: .hiddenDim)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(attentionDropout, forKey: .attentionDropout)
        try c.encode(activation, forKey: .activation)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode(true, forKey: .tieWordEmbeddings)
    }

    /// Checks what the model relies on: the GELU flavour, heads dividing the width, positive sizes, the
    /// padding id inside the vocabulary.
    public func validate() throws {
        guard activation == "gelu" else {
            throw BertError("activation \"\(activation)\" is not supported (only gelu, the erf form)")
        }
        for (key, value) in [("vocab_size", vocabSize), ("max_position_embeddings", maxPositionEmbeddings), ("n_layers", numLayers),
                             ("n_heads", numHeads), ("dim", dim), ("hidden_dim", hiddenDim)] where value <= 0 {
            throw BertError("\(key) must be positive, not \(value)")
        }
        guard dim % numHeads == 0 else { throw BertError("dim \(dim) is not a multiple of n_heads \(numHeads)") }
        for (key, p) in [("dropout", dropout), ("attention_dropout", attentionDropout)] where !(p >= 0 && p < 1) {
            throw BertError("\(key) = \(p) must be in [0, 1)")
        }
        guard (0..<vocabSize).contains(padTokenId) else {
            throw BertError("pad_token_id \(padTokenId) is outside the vocabulary 0..<\(vocabSize)")
        }
    }
}

/// DistilBERT for masked LM (Sanh et al. 2019) in transformers' `DistilBertForMaskedLM` layout: word and
/// position embeddings (positions 0..<T, no token types) summed and normalised, post-LN blocks with erf
/// GELU under `distilbert.transformer.layer.N`, and the LM head `vocab_transform` -> GELU ->
/// `vocab_layer_norm` -> `vocab_projector` (tied to the word embedding, plus its own bias).
///
/// The block is BERT's but for one dropout: transformers' `TransformerBlock` has none after the attention
/// output, only after the feed-forward network, so `record` runs the blocks' layers itself rather than
/// `TransformerBlock.callAsFunction` (which drops out after both). `attention_dropout` drops out the
/// attention probabilities. All LayerNorms use eps 1e-12.
///
/// Parameters are registered under HF's names in its `named_parameters()` order, with PyTorch layouts;
/// the tied projector's gradient accumulates into `distilbert.embeddings.word_embeddings.weight`.
public final class DistilBERT {
    public let config: DistilBertConfig
    public let wordEmbedding: Embedding
    public let positionEmbedding: Embedding
    public let embeddingNorm: LayerNorm
    /// The layers of each block (`attention`, `sa_layer_norm`, `ffn`, `output_layer_norm`).
    public let blocks: [TransformerBlock]
    public let vocabTransform: Linear
    public let vocabLayerNorm: LayerNorm
    /// `vocab_projector.bias` (V).
    public let projectorBias: Parameter
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` with HF's init (`DistilBertPreTrainedModel._init_weights`):
    /// normal(0, initializer_range) Linear and Embedding weights, zero biases, LayerNorm ones and zeros,
    /// and a zero padding row in the word embedding.
    public init(_ config: DistilBertConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let distilbert = root("distilbert"), embeddings = distilbert("embeddings")
        let C = config.dim, eps = config.layerNormEps
        let init_ = ParameterInit.normal(std: config.initializerRange)
        wordEmbedding = Embedding(embeddings("word_embeddings"), count: config.vocabSize, dimensions: C, initializer: init_)
        (wordEmbedding.weight.value + config.padTokenId * C).update(repeating: 0, count: C)
        positionEmbedding = Embedding(embeddings("position_embeddings"), count: config.maxPositionEmbeddings,
                                      dimensions: C, initializer: init_)
        embeddingNorm = LayerNorm(embeddings("LayerNorm"), dimensions: C, eps: eps)
        blocks = (0..<config.numLayers).map { i in
            let layer = distilbert("transformer")("layer")("\(i)"), attention = layer("attention")
            let heads = MultiHeadAttention(
                query: Linear(attention("q_lin"), inputs: C, outputs: C, initializer: init_),
                key: Linear(attention("k_lin"), inputs: C, outputs: C, initializer: init_),
                value: Linear(attention("v_lin"), inputs: C, outputs: C, initializer: init_),
                output: Linear(attention("out_lin"), inputs: C, outputs: C, initializer: init_),
                heads: config.numHeads, dropout: config.attentionDropout)
            let attentionNorm = LayerNorm(layer("sa_layer_norm"), dimensions: C, eps: eps)
            let up = Linear(layer("ffn")("lin1"), inputs: C, outputs: config.hiddenDim, initializer: init_)
            let down = Linear(layer("ffn")("lin2"), inputs: config.hiddenDim, outputs: C, initializer: init_)
            let outputNorm = LayerNorm(layer("output_layer_norm"), dimensions: C, eps: eps)
            return TransformerBlock(attention: heads, attentionNorm: attentionNorm,
                                    feedForward: FeedForward(up: up, down: down, approximation: .erf),
                                    feedForwardNorm: outputNorm, norm: .post, dropout: config.dropout)
        }
        vocabTransform = Linear(root("vocab_transform"), inputs: C, outputs: C, initializer: init_)
        vocabLayerNorm = LayerNorm(root("vocab_layer_norm"), dimensions: C, eps: eps)
        projectorBias = root("vocab_projector").parameter("bias", Shape(config.vocabSize), .zeros, decays: false)
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// The tensors of one recorded graph for a (B, T) batch. Integer inputs are filled before
    /// `tape.forward()`; labels equal to -100 are ignored by the loss.
    public struct Graph {
        public let batch: Int
        public let sequence: Int
        /// (B, T) token ids.
        public let inputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) key mask: 1 for tokens, 0 for padding.
        public let attentionMask: Tensor
        /// (P) rows into the (B T) hidden states the LM head scores, or nil when it scores every position.
        public let maskedPositions: UnsafeMutablePointer<Int32>?
        /// MLM targets, (B, T) or (P), -100 where unscored.
        public let labels: UnsafeMutablePointer<Int32>
        /// (B, T, C), the last block's output.
        public let lastHiddenState: Tensor
        /// (B, T, V), or (P, V) at the masked positions.
        public let logits: Tensor
        /// Mean MLM cross-entropy over the labels that are not -100, DistilBertForMaskedLM's `loss`.
        public let loss: Tensor
    }

    /// Records the forward pass for B sequences of T tokens; with `maskedPositions: P` the LM head scores
    /// only the P rows listed in `Graph.maskedPositions` (padded slots point at row 0 with label -100).
    public func record(on tape: Tape, batch B: Int, sequence T: Int, maskedPositions P: Int? = nil) -> Graph {
        precondition(T <= config.maxPositionEmbeddings,
                     "sequence length \(T) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        let C = config.dim, N = B * T
        let ids = tape.intInput(count: N)
        let positions = tape.intInput(count: N)
        for b in 0..<B { for t in 0..<T { positions[b * T + t] = Int32(t) } }
        let mask = tape.input(Shape(B, T))

        let words = tape.embedding(ids, count: N, table: wordEmbedding.weight, paddingIndex: Int32(config.padTokenId))
        let sum = tape.add(words, positionEmbedding(positions, count: N, on: tape))
        var x = tape.dropout(embeddingNorm(sum, on: tape), p: config.dropout).reshaped(Shape(B, T, C))
        for block in blocks { x = Self.layer(block, x, keyMask: mask, dropout: config.dropout, on: tape) }

        let (masked, scored) = BERT.scoredRows(x, maskedPositions: P, on: tape)
        let h = vocabLayerNorm(tape.gelu(vocabTransform(scored, on: tape), approximation: .erf), on: tape)
        let logits = tape.linear(h, weight: wordEmbedding.weight, bias: projectorBias)
        let labels = tape.intInput(count: P ?? N)
        labels.update(repeating: -100, count: P ?? N)
        let loss = tape.crossEntropy(logits, targets: labels)
        return Graph(batch: B, sequence: T, inputIDs: ids, attentionMask: mask, maskedPositions: masked, labels: labels,
                     lastHiddenState: x, logits: logits, loss: loss)
    }

    /// transformers' DistilBERT `TransformerBlock`: x = LN(x + Attn(x)); x = LN(x + Drop(FFN(x))).
    static func layer(_ block: TransformerBlock, _ x: Tensor, keyMask: Tensor, dropout: Float, on tape: Tape) -> Tensor {
        let h = block.attentionNorm(tape.add(x, block.attention(x, keyMask: keyMask, causal: false, on: tape)), on: tape)
        let f = tape.dropout(block.feedForward(h, on: tape), p: dropout, consumingInput: true)
        return block.feedForwardNorm(tape.add(h, f), on: tape)
    }

    /// Fills the parameters from a transformers checkpoint: `DistilBertForMaskedLM` names, or
    /// `DistilBertModel`'s without the `distilbert.` prefix (the LM head then keeps its init). A stored
    /// `vocab_projector.weight` (the tied word embedding) is ignored.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "distilbert.",
                                  isOptional: { $0.name.hasPrefix("vocab_") },
                                  shapes: shapes, origin: origin, error: { BertError($0) }, copy: copy)
    }
}

// MARK: - Initialisation from a BERT teacher

extension DistilBERT {
    /// Copies a BERT teacher's weights into the student as DistilBERT was initialised (Sanh et al. 2019,
    /// section 3: "taking one layer out of two"): the word and position embeddings and their LayerNorm
    /// (the token-type table has no counterpart and is dropped, as transformers' `extract_distilbert.py`
    /// does), block i from the teacher's block 2i, and the MLM head (`cls.predictions.transform` ->
    /// `vocab_transform` and `vocab_layer_norm`, `cls.predictions.bias` -> `vocab_projector.bias`). A shape
    /// that differs, or a student with more than ⌈L/2⌉ layers, is an error naming the tensors.
    public func initialise(fromTeacher teacher: BERT) throws {
        guard blocks.count <= (teacher.blocks.count + 1) / 2 else {
            throw BertError("the student's \(blocks.count) layers need teacher layers up to \(2 * (blocks.count - 1)), but the teacher has \(teacher.blocks.count)")
        }
        var pairs: [(Parameter, Parameter)] = [
            (wordEmbedding.weight, teacher.wordEmbedding.weight), (positionEmbedding.weight, teacher.positionEmbedding.weight),
            (embeddingNorm.weight, teacher.embeddingNorm.weight), (embeddingNorm.bias, teacher.embeddingNorm.bias),
        ]
        for (i, block) in blocks.enumerated() {
            pairs += zip(Self.parameters(of: block), Self.parameters(of: teacher.blocks[2 * i])).map { ($0, $1) }
        }
        pairs += [(vocabTransform.weight, teacher.transform.weight), (vocabTransform.bias!, teacher.transform.bias!),
                  (vocabLayerNorm.weight, teacher.transformNorm.weight), (vocabLayerNorm.bias, teacher.transformNorm.bias),
                  (projectorBias, teacher.decoderBias)]
        for (student, source) in pairs where student.shape != source.shape {
            throw BertError("the student's \(student.name) \(student.shape) cannot start from the teacher's \(source.name) \(source.shape)")
        }
        for (student, source) in pairs { student.value.update(from: source.value, count: source.count) }
    }

    /// A post-LN block's parameters in registration order (the same for BERT's and DistilBERT's names).
    static func parameters(of block: TransformerBlock) -> [Parameter] {
        let a = block.attention, f = block.feedForward
        return [a.query, a.key, a.value, a.output].flatMap { [$0.weight, $0.bias!] }
            + [block.attentionNorm.weight, block.attentionNorm.bias, f.up.weight, f.up.bias!, f.down.weight, f.down.bias!,
               block.feedForwardNorm.weight, block.feedForwardNorm.bias]
    }
}
