import TandemAutograd
import TandemKernels
import TandemNN

/// An error in an ALBERT config or checkpoint, naming the file and the field or tensor concerned.
public struct AlbertError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// ALBERT's hyper-parameters (Lan et al. 2020) as HF `AlbertConfig`'s config.json fields.
public struct AlbertConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    /// E, the width of the factorised embeddings (ALBERT's §3.1): the tables are (V, E), and
    /// `embedding_hidden_mapping_in` maps E to H.
    public var embeddingSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    /// "gelu_new" (the tanh approximation, ALBERT's default) or "gelu" (the erf form).
    public var hiddenAct: String
    public var hiddenDropoutProb: Float
    /// Dropout on the attention probabilities while training (0 in ALBERT v2 and in every preset).
    public var attentionProbsDropoutProb: Float
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var initializerRange: Float
    public var layerNormEps: Float
    /// Dropout on the pooled output before the sentence-order classifier.
    public var classifierDropoutProb: Float
    public var padTokenId: Int

    /// The defaults are HF AlbertConfig's (ALBERT-xxlarge's shape, the 30000-piece SentencePiece vocabulary),
    /// which `from_pretrained` gives to a field a config.json leaves out, except for `embedding_size`
    /// (see `init(from:)`).
    public init(vocabSize: Int = 30000, embeddingSize: Int = 128, hiddenSize: Int = 4096, numHiddenLayers: Int = 12,
                numAttentionHeads: Int = 64, intermediateSize: Int = 16384, hiddenAct: String = "gelu_new",
                hiddenDropoutProb: Float = 0, attentionProbsDropoutProb: Float = 0, maxPositionEmbeddings: Int = 512,
                typeVocabSize: Int = 2, initializerRange: Float = 0.02, layerNormEps: Float = 1e-12,
                classifierDropoutProb: Float = 0.1, padTokenId: Int = 0) {
        self.vocabSize = vocabSize; self.embeddingSize = embeddingSize; self.hiddenSize = hiddenSize
        self.numHiddenLayers = numHiddenLayers; self.numAttentionHeads = numAttentionHeads
        self.intermediateSize = intermediateSize; self.hiddenAct = hiddenAct; self.hiddenDropoutProb = hiddenDropoutProb
        self.attentionProbsDropoutProb = attentionProbsDropoutProb; self.maxPositionEmbeddings = maxPositionEmbeddings
        self.typeVocabSize = typeVocabSize; self.initializerRange = initializerRange; self.layerNormEps = layerNormEps
        self.classifierDropoutProb = classifierDropoutProb; self.padTokenId = padTokenId
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", embeddingSize = "embedding_size", hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers", numHiddenGroups = "num_hidden_groups"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case innerGroupNum = "inner_group_num", hiddenAct = "hidden_act", hiddenDropoutProb = "hidden_dropout_prob"
        case attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case initializerRange = "initializer_range", layerNormEps = "layer_norm_eps"
        case classifierDropoutProb = "classifier_dropout_prob", padTokenId = "pad_token_id"
        case positionEmbeddingType = "position_embedding_type", modelType = "model_type"
        case architectures, tieWordEmbeddings = "tie_word_embeddings"
    }

    /// Missing fields take AlbertConfig's defaults, as `from_pretrained` does, except `embedding_size`,
    /// which must be present: its default (128) would silently build a model with other embedding
    /// shapes than a config written for E = H expects. One layer group of one layer (the shared layer of
    /// every released ALBERT) is supported; other `num_hidden_groups` / `inner_group_num`, relative
    /// positions, an untied decoder, an unknown activation or shapes that do not fit are errors.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AlbertConfig()
        guard let e = try c.decodeIfPresent(Int.self, forKey: .embeddingSize) else {
            throw AlbertError("embedding_size is missing (ALBERT's factorised embedding width E, e.g. 128; it has no safe default)")
        }
        embeddingSize = e
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        hiddenDropoutProb = try c.decodeIfPresent(Float.self, forKey: .hiddenDropoutProb) ?? d.hiddenDropoutProb
        attentionProbsDropoutProb = try c.decodeIfPresent(Float.self, forKey: .attentionProbsDropoutProb)
            ?? d.attentionProbsDropoutProb
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d.maxPositionEmbeddings
        typeVocabSize = try c.decodeIfPresent(Int.self, forKey: .typeVocabSize) ?? d.typeVocabSize
        initializerRange = try c.decodeIfPresent(Float.self, forKey: .initializerRange) ?? d.initializerRange
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? d.layerNormEps
        classifierDropoutProb = try c.decodeIfPresent(Float.self, forKey: .classifierDropoutProb) ?? d.classifierDropoutProb
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId) ?? d.padTokenId
        for (key, field) in [("num_hidden_groups", CodingKeys.numHiddenGroups), ("inner_group_num", .innerGroupNum)] {
            let value = try c.decodeIfPresent(Int.self, forKey: field) ?? 1
            guard value == 1 else {
                throw AlbertError("\(key) \(value) is not supported (only 1: one layer shared by all num_hidden_layers, as in every released ALBERT)")
            }
        }
        let positions = try c.decodeIfPresent(String.self, forKey: .positionEmbeddingType) ?? "absolute"
        guard positions == "absolute" else {
            throw AlbertError("position_embedding_type \"\(positions)\" is not supported (only absolute)")
        }
        guard try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true else {
            throw AlbertError("tie_word_embeddings false is not supported (the decoder is the word embedding)")
        }
        try validate()
    }

    /// Writes a config.json that transformers loads as `AlbertForPreTraining`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(["AlbertForPreTraining"], forKey: .architectures)
        try c.encode("albert", forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(embeddingSize, forKey: .embeddingSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(1, forKey: .numHiddenGroups)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(1, forKey: .innerGroupNum)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(hiddenDropoutProb, forKey: .hiddenDropoutProb)
        try c.encode(attentionProbsDropoutProb, forKey: .attentionProbsDropoutProb)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(typeVocabSize, forKey: .typeVocabSize)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(classifierDropoutProb, forKey: .classifierDropoutProb)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode("absolute", forKey: .positionEmbeddingType)
        try c.encode(true, forKey: .tieWordEmbeddings)
    }

    /// The GELU of `hidden_act`.
    public var geluApproximation: GELUApproximation { hiddenAct == "gelu" ? .erf : .tanh }

    /// Checks what the model relies on: a supported GELU, heads dividing the width, positive sizes.
    public func validate() throws {
        guard hiddenAct == "gelu_new" || hiddenAct == "gelu" else {
            throw AlbertError("hidden_act \"\(hiddenAct)\" is not supported (gelu_new, the tanh form, or gelu, the erf form)")
        }
        for (key, value) in [("vocab_size", vocabSize), ("embedding_size", embeddingSize), ("hidden_size", hiddenSize),
                             ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                             ("intermediate_size", intermediateSize), ("max_position_embeddings", maxPositionEmbeddings),
                             ("type_vocab_size", typeVocabSize)]
        where value <= 0 {
            throw AlbertError("\(key) must be positive, not \(value)")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw AlbertError("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        for (key, p) in [("hidden_dropout_prob", hiddenDropoutProb), ("attention_probs_dropout_prob", attentionProbsDropoutProb)]
        where !(p >= 0 && p < 1) {
            throw AlbertError("\(key) = \(p) must be in [0, 1)")
        }
        guard (0..<vocabSize).contains(padTokenId) else {
            throw AlbertError("pad_token_id \(padTokenId) is outside the vocabulary 0..<\(vocabSize)")
        }
    }

    /// The parameters of this shape: (V + P + S) E + 2E embeddings, the E -> H mapping, ONE layer,
    /// the pooler, the MLM head (H -> E, LayerNorm, the V output biases) and the SOP classifier.
    public var parameterCount: Int {
        let V = vocabSize, E = embeddingSize, H = hiddenSize, I = intermediateSize
        let embeddings = (V + maxPositionEmbeddings + typeVocabSize) * E + 2 * E
        let layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
        return embeddings + (E * H + H) + layer + (H * H + H) + (V + 2 * E + H * E + E) + (2 * H + 2)
    }

    /// The parameters of BERT (`BertForPreTraining`) of the same vocabulary, width, depth, heads and
    /// feed-forward: (V + P + S) H embeddings and L layers of its own each, for `tandem inspect`.
    public var bertParameterCount: Int {
        let V = vocabSize, H = hiddenSize, I = intermediateSize
        let embeddings = (V + maxPositionEmbeddings + typeVocabSize) * H + 2 * H
        let layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
        return embeddings + numHiddenLayers * layer + (H * H + H) + (V + H * H + H + 2 * H) + (2 * H + 2)
    }
}

/// ALBERT for pretraining (Lan et al. 2020, "A Lite BERT"): BERT's post-LN encoder with two changes to
/// its parameters and one to its objective.
/// - Factorised embeddings: word, position and token-type tables of width E, summed and normalised, then
///   mapped to the hidden width H by `embedding_hidden_mapping_in` (§3.1).
/// - Cross-layer sharing: ONE transformer layer applied `num_hidden_layers` times (§3.1). Its gradient is
///   the sum over every use: each use's backward adds into the same gradient buffer.
/// - Sentence-order prediction instead of next-sentence prediction: the pooled [CLS] (tanh) through
///   dropout and a 2-way classifier (§3.2).
/// The masked-LM head maps H to E (dense, activation, LayerNorm) and decodes with the word embedding
/// (V, E) plus its own output bias.
///
/// Parameters are registered under HF `AlbertForPreTraining`'s names, in its `named_parameters()` order,
/// with PyTorch layouts (Linear weights (out, in)); the tied decoder has no parameter of its own.
///
/// Dropout (`hidden_dropout_prob`) follows the embeddings and the attention output as in HF's
/// AlbertEmbeddings and AlbertAttention; HF's AlbertLayer applies none after `ffn_output`, nor does this
/// model. `attention_probs_dropout_prob` drops out the attention probabilities.
public final class ALBERT {
    public let config: AlbertConfig
    public let wordEmbedding: Embedding
    public let positionEmbedding: Embedding
    public let tokenTypeEmbedding: Embedding
    public let embeddingNorm: LayerNorm
    /// E -> H.
    public let embeddingMapping: Linear
    /// The one layer every depth uses (its `feedForwardNorm` is HF's `full_layer_layer_norm`).
    public let sharedLayer: TransformerBlock
    public let pooler: Linear
    /// `predictions.bias`, the decoder's output bias (V).
    public let decoderBias: Parameter
    /// H -> E.
    public let transform: Linear
    public let transformNorm: LayerNorm
    public let sopClassifier: Linear
    /// This model's parameters in registration order (HF `named_parameters()` order).
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` and draws HF's init (`PreTrainedModel._init_weights`):
    /// normal(0, initializer_range) for Linear and Embedding weights, zero biases, LayerNorm ones and
    /// zeros, and a zero padding row in the word embedding.
    public init(_ config: AlbertConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let albert = root("albert"), embeddings = albert("embeddings")
        let E = config.embeddingSize, H = config.hiddenSize, eps = config.layerNormEps
        let init_ = ParameterInit.normal(std: config.initializerRange)
        wordEmbedding = Embedding(embeddings("word_embeddings"), count: config.vocabSize, dimensions: E, initializer: init_)
        (wordEmbedding.weight.value + config.padTokenId * E).update(repeating: 0, count: E)
        positionEmbedding = Embedding(embeddings("position_embeddings"), count: config.maxPositionEmbeddings,
                                      dimensions: E, initializer: init_)
        tokenTypeEmbedding = Embedding(embeddings("token_type_embeddings"), count: config.typeVocabSize,
                                       dimensions: E, initializer: init_)
        embeddingNorm = LayerNorm(embeddings("LayerNorm"), dimensions: E, eps: eps)
        let encoder = albert("encoder")
        embeddingMapping = Linear(encoder("embedding_hidden_mapping_in"), inputs: E, outputs: H, initializer: init_)
        // AlbertLayer registers full_layer_layer_norm before its attention and feed-forward network.
        let layer = encoder("albert_layer_groups")("0")("albert_layers")("0")
        let outputNorm = LayerNorm(layer("full_layer_layer_norm"), dimensions: H, eps: eps)
        let attention = layer("attention")
        let heads = MultiHeadAttention(
            query: Linear(attention("query"), inputs: H, outputs: H, initializer: init_),
            key: Linear(attention("key"), inputs: H, outputs: H, initializer: init_),
            value: Linear(attention("value"), inputs: H, outputs: H, initializer: init_),
            output: Linear(attention("dense"), inputs: H, outputs: H, initializer: init_),
            heads: config.numAttentionHeads, dropout: config.attentionProbsDropoutProb)
        let attentionNorm = LayerNorm(attention("LayerNorm"), dimensions: H, eps: eps)
        let up = Linear(layer("ffn"), inputs: H, outputs: config.intermediateSize, initializer: init_)
        let down = Linear(layer("ffn_output"), inputs: config.intermediateSize, outputs: H, initializer: init_)
        sharedLayer = TransformerBlock(attention: heads, attentionNorm: attentionNorm,
                                       feedForward: FeedForward(up: up, down: down, approximation: config.geluApproximation),
                                       feedForwardNorm: outputNorm, norm: .post, dropout: config.hiddenDropoutProb)
        pooler = Linear(albert("pooler"), inputs: H, outputs: H, initializer: init_)
        // PyTorch lists a module's own parameters before its children's: AlbertMLMHead's bias comes first,
        // then its LayerNorm and dense in the order __init__ assigns them.
        let predictions = root("predictions")
        decoderBias = predictions.parameter("bias", Shape(config.vocabSize), .zeros, decays: false)
        transformNorm = LayerNorm(predictions("LayerNorm"), dimensions: E, eps: eps)
        transform = Linear(predictions("dense"), inputs: H, outputs: E, initializer: init_)
        sopClassifier = Linear(root("sop_classifier")("classifier"), inputs: H, outputs: 2, initializer: init_)
        parameters = Array(arena.parameters[firstIndex...])
    }

    // MARK: - Graph

    /// The tensors of one recorded graph for a (B, T) batch. Integer inputs are filled before
    /// `tape.forward()`; labels equal to -100 are ignored by the losses.
    public struct Graph {
        public let batch: Int
        public let sequence: Int
        /// (B, T) token ids, each in 0..<vocab_size.
        public let inputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) segment ids, each in 0..<type_vocab_size (0 for the first segment, 1 for the second).
        public let tokenTypeIDs: UnsafeMutablePointer<Int32>
        /// (B, T) key mask: 1 for tokens to attend to, 0 for padding.
        public let attentionMask: Tensor
        /// (P) rows into the (B T) hidden states that the MLM head scores, when the graph was recorded
        /// with `maskedPositions: P`; nil when it scores every position.
        public let maskedPositions: UnsafeMutablePointer<Int32>?
        /// MLM targets, (B, T) or (P) like the scored rows.
        public let mlmLabels: UnsafeMutablePointer<Int32>
        /// (B) sentence-order targets: 0 when the segments are in their order, 1 when swapped.
        public let sentenceOrderLabels: UnsafeMutablePointer<Int32>
        /// (B, T, H), the encoder's output.
        public let lastHiddenState: Tensor
        /// (B, T, V), or (P, V) at the masked positions.
        public let predictionLogits: Tensor
        /// (B, 2)
        public let sopLogits: Tensor
        /// Mean MLM cross-entropy over the labels that are not -100 (0 when there are none).
        public let mlmLoss: Tensor
        /// Mean SOP cross-entropy over the labels that are not -100.
        public let sopLoss: Tensor
        /// mlmLoss + sopLoss, HF AlbertForPreTraining's `loss`.
        public let loss: Tensor
    }

    /// Records the forward pass for B sequences of T tokens on `tape`. With `maskedPositions: P` the MLM
    /// head only scores the P rows the caller lists in `Graph.maskedPositions` (padded slots point at
    /// row 0 with label -100); with nil it scores every position, as HF's `prediction_logits`.
    public func record(on tape: Tape, batch B: Int, sequence T: Int, maskedPositions P: Int? = nil) -> Graph {
        record(on: tape, batch: B, sequence: T, maskedPositions: P,
               layers: Array(repeating: sharedLayer, count: config.numHiddenLayers))
    }

    /// The graph with `layers[i]` at depth i: the shared layer at every depth, or (in tests) layers
    /// with parameters of their own, to compare the shared gradient with the sum over its uses.
    func record(on tape: Tape, batch B: Int, sequence T: Int, maskedPositions P: Int?, layers: [TransformerBlock]) -> Graph {
        precondition(T <= config.maxPositionEmbeddings,
                     "sequence length \(T) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        let H = config.hiddenSize, N = B * T, p = config.hiddenDropoutProb
        let ids = tape.intInput(count: N)
        let types = tape.intInput(count: N)
        let positions = tape.intInput(count: N)
        for b in 0..<B { for t in 0..<T { positions[b * T + t] = Int32(t) } }
        let mask = tape.input(Shape(B, T))

        // AlbertEmbeddings: (words + token types) + positions, in that order.
        let words = tape.embedding(ids, count: N, table: wordEmbedding.weight, paddingIndex: Int32(config.padTokenId))
        let sum = tape.add(tape.add(words, tokenTypeEmbedding(types, count: N, on: tape)),
                           positionEmbedding(positions, count: N, on: tape))
        let embedded = tape.dropout(embeddingNorm(sum, on: tape), p: p)
        var x = embeddingMapping(embedded, on: tape).reshaped(Shape(B, T, H))
        for layer in layers {
            // HF's AlbertLayer: LN(x + Drop(Attn(x))), then LN(h + FFN(h)) with no dropout on the FFN.
            let a = tape.dropout(layer.attention(x, keyMask: mask, causal: false, on: tape), p: p, consumingInput: true)
            let h = layer.attentionNorm(tape.add(x, a), on: tape)
            x = layer.feedForwardNorm(tape.add(h, layer.feedForward(h, on: tape)), on: tape)
        }

        let first = tape.intInput(count: B)
        for b in 0..<B { first[b] = Int32(b * T) }
        let pooled = tape.tanh(pooler(tape.gatherRows(x, rows: first, count: B), on: tape))
        let sopLogits = sopClassifier(tape.dropout(pooled, p: config.classifierDropoutProb), on: tape)

        let (masked, scored) = BERT.scoredRows(x, maskedPositions: P, on: tape)
        let h = transformNorm(tape.gelu(transform(scored, on: tape), approximation: config.geluApproximation), on: tape)
        let logits = tape.linear(h, weight: wordEmbedding.weight, bias: decoderBias)
        let mlmLabels = tape.intInput(count: P ?? N)
        let sopLabels = tape.intInput(count: B)
        mlmLabels.update(repeating: -100, count: P ?? N)
        sopLabels.update(repeating: -100, count: B)
        let mlmLoss = tape.crossEntropy(logits, targets: mlmLabels)
        let sopLoss = tape.crossEntropy(sopLogits, targets: sopLabels)
        return Graph(batch: B, sequence: T, inputIDs: ids, tokenTypeIDs: types, attentionMask: mask,
                     maskedPositions: masked, mlmLabels: mlmLabels, sentenceOrderLabels: sopLabels,
                     lastHiddenState: x, predictionLogits: logits, sopLogits: sopLogits,
                     mlmLoss: mlmLoss, sopLoss: sopLoss, loss: tape.add(mlmLoss, sopLoss))
    }

    // MARK: - Loading transformers checkpoints

    /// Fills the parameters from a transformers checkpoint, given its tensor shapes and a way to copy a
    /// tensor as Float32. Names may carry the `albert.` prefix (AlbertForPreTraining) or not (AlbertModel,
    /// which has no heads); `predictions.bias` may also be stored as `predictions.decoder.bias`, its alias
    /// in HF. Embedding and encoder tensors must all be present; the pooler and the heads keep their init
    /// when absent. A shape that differs is an error naming the tensor and `origin`.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "albert.", aliases: ["predictions.bias": "predictions.decoder.bias"],
                                  isOptional: { !$0.name.hasPrefix("albert.") || $0.name.hasPrefix("albert.pooler.") },
                                  shapes: shapes, origin: origin, error: { AlbertError($0) }, copy: copy)
    }
}
