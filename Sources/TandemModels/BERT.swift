import TandemAutograd
import TandemKernels
import TandemNN

/// An error in a BERT config or checkpoint, naming the file and the field or tensor concerned.
public struct BertError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// BERT's hyper-parameters (Devlin et al. 2019) as HF `BertConfig`'s config.json fields, and RoBERTa's
/// (`model_type: roberta`, HF `RobertaConfig`: the same fields plus the `<s>` and `</s>` ids).
public struct BertConfig: Codable, Equatable, Sendable {
    /// "bert" or "roberta".
    public var modelType: String = "bert"
    /// RoBERTa's `<s>` and `</s>` ids (nil for BERT).
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    /// Only "gelu" (the exact, erf form) is supported.
    public var hiddenAct: String
    public var hiddenDropoutProb: Float
    /// Dropout on the attention probabilities while training (`Tape.attention`: the mask is drawn again in
    /// backward, never stored).
    public var attentionProbsDropoutProb: Float
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var initializerRange: Float
    public var layerNormEps: Float
    public var padTokenId: Int

    /// The defaults are BertConfig's (BERT-base, uncased vocabulary).
    public init(vocabSize: Int = 30522, hiddenSize: Int = 768, numHiddenLayers: Int = 12, numAttentionHeads: Int = 12,
                intermediateSize: Int = 3072, hiddenAct: String = "gelu", hiddenDropoutProb: Float = 0.1,
                attentionProbsDropoutProb: Float = 0.1, maxPositionEmbeddings: Int = 512, typeVocabSize: Int = 2,
                initializerRange: Float = 0.02, layerNormEps: Float = 1e-12, padTokenId: Int = 0) {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.intermediateSize = intermediateSize
        self.hiddenAct = hiddenAct; self.hiddenDropoutProb = hiddenDropoutProb
        self.attentionProbsDropoutProb = attentionProbsDropoutProb
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.typeVocabSize = typeVocabSize
        self.initializerRange = initializerRange; self.layerNormEps = layerNormEps; self.padTokenId = padTokenId
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case hiddenAct = "hidden_act", hiddenDropoutProb = "hidden_dropout_prob"
        case attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case initializerRange = "initializer_range", layerNormEps = "layer_norm_eps", padTokenId = "pad_token_id"
        case positionEmbeddingType = "position_embedding_type", modelType = "model_type"
        case architectures, tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
    }

    /// HF `RobertaConfig`'s defaults: BertConfig's with `<pad>` 1, `<s>` 0, `</s>` 2 and RoBERTa's
    /// 50265-token vocabulary.
    public static func roberta(vocabSize: Int = 50265, hiddenSize: Int = 768, numHiddenLayers: Int = 12,
                               numAttentionHeads: Int = 12, intermediateSize: Int = 3072,
                               maxPositionEmbeddings: Int = 514, typeVocabSize: Int = 1, layerNormEps: Float = 1e-5) -> BertConfig {
        var c = BertConfig(vocabSize: vocabSize, hiddenSize: hiddenSize, numHiddenLayers: numHiddenLayers,
                           numAttentionHeads: numAttentionHeads, intermediateSize: intermediateSize,
                           maxPositionEmbeddings: maxPositionEmbeddings, typeVocabSize: typeVocabSize,
                           layerNormEps: layerNormEps, padTokenId: 1)
        c.modelType = "roberta"; c.bosTokenId = 0; c.eosTokenId = 2
        return c
    }

    public var isRoberta: Bool { modelType == "roberta" }

    /// Missing fields take BertConfig's defaults, as `from_pretrained` does; unsupported settings
    /// (an activation other than gelu, relative position embeddings, an untied decoder, shapes that do
    /// not fit) are errors.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "bert"
        guard ["bert", "roberta"].contains(modelType) else {
            throw BertError("model_type \"\(modelType)\" is not a BERT model (bert or roberta)")
        }
        var d = BertConfig()
        if modelType == "roberta" {
            // RobertaConfig's own defaults are BertConfig's but for the special ids and the vocabulary.
            d = BertConfig(vocabSize: 50265, padTokenId: 1); d.bosTokenId = 0; d.eosTokenId = 2
        }
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId) ?? d.bosTokenId
        eosTokenId = try c.decodeIfPresent(Int.self, forKey: .eosTokenId) ?? d.eosTokenId
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
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId) ?? d.padTokenId
        let positions = try c.decodeIfPresent(String.self, forKey: .positionEmbeddingType) ?? "absolute"
        guard positions == "absolute" else {
            throw BertError("position_embedding_type \"\(positions)\" is not supported (only absolute)")
        }
        guard try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true else {
            throw BertError("tie_word_embeddings false is not supported (the decoder is the word embedding)")
        }
        try validate()
    }

    /// Writes a config.json that transformers loads as `BertForPreTraining` (or `RobertaForMaskedLM`).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode([isRoberta ? "RobertaForMaskedLM" : "BertForPreTraining"], forKey: .architectures)
        try c.encode(modelType, forKey: .modelType)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        try c.encodeIfPresent(eosTokenId, forKey: .eosTokenId)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(hiddenDropoutProb, forKey: .hiddenDropoutProb)
        try c.encode(attentionProbsDropoutProb, forKey: .attentionProbsDropoutProb)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(typeVocabSize, forKey: .typeVocabSize)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode("absolute", forKey: .positionEmbeddingType)
        try c.encode(true, forKey: .tieWordEmbeddings)
    }

    /// Checks what the model relies on: the GELU flavour, heads dividing the width, positive sizes.
    public func validate() throws {
        guard hiddenAct == "gelu" else {
            throw BertError("hidden_act \"\(hiddenAct)\" is not supported (only gelu, the erf form)")
        }
        for (key, value) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                             ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
                             ("max_position_embeddings", maxPositionEmbeddings), ("type_vocab_size", typeVocabSize)]
        where value <= 0 {
            throw BertError("\(key) must be positive, not \(value)")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw BertError("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        for (key, p) in [("hidden_dropout_prob", hiddenDropoutProb), ("attention_probs_dropout_prob", attentionProbsDropoutProb)]
        where !(p >= 0 && p < 1) {
            throw BertError("\(key) = \(p) must be in [0, 1)")
        }
        let ids: [(String, Int?)] = [("pad_token_id", padTokenId), ("bos_token_id", bosTokenId), ("eos_token_id", eosTokenId)]
        for (key, id) in ids {
            if let id, !(0..<vocabSize).contains(id) {
                throw BertError("\(key) \(id) is outside the vocabulary 0..<\(vocabSize)")
            }
        }
        if isRoberta && maxPositionEmbeddings <= padTokenId + 1 {
            throw BertError("max_position_embeddings \(maxPositionEmbeddings) leaves no positions: RoBERTa's start at pad_token_id + 1 = \(padTokenId + 1)")
        }
    }
}

/// BERT's embeddings under `embeddings.` (BertEmbeddings' names): word, absolute position and token-type
/// tables summed, normalised and dropped out.
struct BertEmbeddings {
    let word: Embedding, position: Embedding, tokenType: Embedding, norm: LayerNorm

    init(word: Embedding, position: Embedding, tokenType: Embedding, norm: LayerNorm) {
        self.word = word; self.position = position; self.tokenType = tokenType; self.norm = norm
    }

    /// Registers the tables with BERT's init: normal(0, initializer_range), a zero padding row in the
    /// word table.
    init(_ embeddings: ParameterScope, _ config: BertConfig) {
        let C = config.hiddenSize
        let init_ = ParameterInit.normal(std: config.initializerRange)
        word = Embedding(embeddings("word_embeddings"), count: config.vocabSize, dimensions: C, initializer: init_)
        (word.weight.value + config.padTokenId * C).update(repeating: 0, count: C)
        position = Embedding(embeddings("position_embeddings"), count: config.maxPositionEmbeddings, dimensions: C, initializer: init_)
        tokenType = Embedding(embeddings("token_type_embeddings"), count: config.typeVocabSize, dimensions: C, initializer: init_)
        norm = LayerNorm(embeddings("LayerNorm"), dimensions: C, eps: config.layerNormEps)
    }

    /// (B, T, C) embeddings of `ids` and `types` at positions 0..<T.
    func record(_ ids: UnsafeMutablePointer<Int32>, _ types: UnsafeMutablePointer<Int32>, batch B: Int, sequence T: Int,
                config: BertConfig, on tape: Tape) -> Tensor {
        let N = B * T
        let positions = tape.intInput(count: N)
        for b in 0..<B { for t in 0..<T { positions[b * T + t] = Int32(t) } }
        let words = tape.embedding(ids, count: N, table: word.weight, paddingIndex: Int32(config.padTokenId))
        let sum = tape.add(tape.add(words, position(positions, count: N, on: tape)), tokenType(types, count: N, on: tape))
        return tape.dropout(norm(sum, on: tape), p: config.hiddenDropoutProb).reshaped(Shape(B, T, config.hiddenSize))
    }
}

/// BERT for pretraining (Devlin et al. 2019): word, position and token-type embeddings summed and
/// normalised, post-LN transformer blocks with erf GELU, a tanh pooler over [CLS] with the next-sentence
/// head, and the masked-LM head (dense, GELU, LayerNorm, then a decoder tied to the word embedding plus
/// its own output bias).
///
/// Parameters are registered under HF `BertForPreTraining`'s names, in its `named_parameters()` order,
/// with PyTorch layouts (Linear weights (out, in)). The tied decoder has no parameter of its own: its
/// gradient accumulates into `bert.embeddings.word_embeddings.weight`, as in PyTorch.
///
/// Dropout (`hidden_dropout_prob`) follows the embeddings and the attention and feed-forward outputs of
/// every block, and `attention_probs_dropout_prob` the attention probabilities.
public final class BERT {
    public let config: BertConfig
    public let wordEmbedding: Embedding
    public let positionEmbedding: Embedding
    public let tokenTypeEmbedding: Embedding
    public let embeddingNorm: LayerNorm
    public let blocks: [TransformerBlock]
    public let pooler: Linear
    /// `cls.predictions.bias`, the decoder's output bias (V).
    public let decoderBias: Parameter
    public let transform: Linear
    public let transformNorm: LayerNorm
    public let seqRelationship: Linear
    /// This model's parameters in registration order (HF `named_parameters()` order).
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` and draws BERT's init: normal(0, initializer_range) for
    /// Linear and Embedding weights, zero biases, LayerNorm ones and zeros, and a zero padding row in
    /// the word embedding (HF `BertPreTrainedModel._init_weights`).
    public init(_ config: BertConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let bert = root("bert")
        let C = config.hiddenSize, eps = config.layerNormEps
        let init_ = ParameterInit.normal(std: config.initializerRange)
        let embeddings = BertEmbeddings(bert("embeddings"), config)
        wordEmbedding = embeddings.word; positionEmbedding = embeddings.position
        tokenTypeEmbedding = embeddings.tokenType; embeddingNorm = embeddings.norm
        blocks = Self.encoderBlocks(bert("encoder"), config)
        pooler = Linear(bert("pooler")("dense"), inputs: C, outputs: C, initializer: init_)
        // PyTorch lists a module's own parameters before its children's: the bias of
        // BertLMPredictionHead comes before its transform.
        let predictions = root("cls")("predictions")
        decoderBias = predictions.parameter("bias", Shape(config.vocabSize), .zeros, decays: false)
        transform = Linear(predictions("transform")("dense"), inputs: C, outputs: C, initializer: init_)
        transformNorm = LayerNorm(predictions("transform")("LayerNorm"), dimensions: C, eps: eps)
        seqRelationship = Linear(root("cls")("seq_relationship"), inputs: C, outputs: 2, initializer: init_)
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// The encoder's post-LN blocks under `encoder.layer.N` (BertLayer's names, which RoBERTa shares),
    /// with BERT's init.
    static func encoderBlocks(_ encoder: ParameterScope, _ config: BertConfig) -> [TransformerBlock] {
        let C = config.hiddenSize, eps = config.layerNormEps
        let init_ = ParameterInit.normal(std: config.initializerRange)
        return (0..<config.numHiddenLayers).map { i in
            let layer = encoder("layer")("\(i)")
            let attention = layer("attention"), selfAttention = attention("self")
            let heads = MultiHeadAttention(
                query: Linear(selfAttention("query"), inputs: C, outputs: C, initializer: init_),
                key: Linear(selfAttention("key"), inputs: C, outputs: C, initializer: init_),
                value: Linear(selfAttention("value"), inputs: C, outputs: C, initializer: init_),
                output: Linear(attention("output")("dense"), inputs: C, outputs: C, initializer: init_),
                heads: config.numAttentionHeads, dropout: config.attentionProbsDropoutProb)
            let attentionNorm = LayerNorm(attention("output")("LayerNorm"), dimensions: C, eps: eps)
            let up = Linear(layer("intermediate")("dense"), inputs: C, outputs: config.intermediateSize, initializer: init_)
            let down = Linear(layer("output")("dense"), inputs: config.intermediateSize, outputs: C, initializer: init_)
            let outputNorm = LayerNorm(layer("output")("LayerNorm"), dimensions: C, eps: eps)
            return TransformerBlock(attention: heads, attentionNorm: attentionNorm,
                                    feedForward: FeedForward(up: up, down: down, approximation: .erf),
                                    feedForwardNorm: outputNorm, norm: .post, dropout: config.hiddenDropoutProb)
        }
    }

    // MARK: - Graph

    /// The tensors of one recorded graph for a (B, T) batch. Integer inputs are filled before
    /// `tape.forward()`; labels equal to -100 are ignored by the losses.
    public struct Graph {
        public let batch: Int
        public let sequence: Int
        /// (B, T) token ids, each in 0..<vocab_size.
        public let inputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) segment ids, each in 0..<type_vocab_size (0 for sentence A, 1 for B).
        public let tokenTypeIDs: UnsafeMutablePointer<Int32>
        /// (B, T) key mask: 1 for tokens to attend to, 0 for padding.
        public let attentionMask: Tensor
        /// (P) rows into the (B T) hidden states that the MLM head scores, when the graph was recorded
        /// with `maskedPositions: P`; nil when it scores every position.
        public let maskedPositions: UnsafeMutablePointer<Int32>?
        /// MLM targets, (B, T) or (P) like the scored rows.
        public let mlmLabels: UnsafeMutablePointer<Int32>
        /// (B) next-sentence targets: 0 when B follows A, 1 when B is random.
        public let nextSentenceLabels: UnsafeMutablePointer<Int32>
        /// (B, T, C), the encoder's output.
        public let lastHiddenState: Tensor
        /// (B, C), tanh(dense(hidden state of [CLS])).
        public let pooled: Tensor
        /// (B, T, V), or (P, V) at the masked positions.
        public let predictionLogits: Tensor
        /// (B, 2)
        public let seqRelationshipLogits: Tensor
        /// Mean MLM cross-entropy over the labels that are not -100 (0 when there are none).
        public let mlmLoss: Tensor
        /// Mean NSP cross-entropy over the labels that are not -100.
        public let nspLoss: Tensor
        /// mlmLoss + nspLoss, HF BertForPreTraining's `loss`.
        public let loss: Tensor
    }

    /// Records the forward pass for B sequences of T tokens on `tape`. With `maskedPositions: P` the MLM
    /// head only scores the P rows the caller lists in `Graph.maskedPositions` (padded slots point at
    /// row 0 with label -100), which saves the (B T, V) logits in training; with nil it scores every
    /// position, as HF's `prediction_logits`.
    public func record(on tape: Tape, batch B: Int, sequence T: Int, maskedPositions P: Int? = nil) -> Graph {
        precondition(T <= config.maxPositionEmbeddings,
                     "sequence length \(T) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        let N = B * T
        let ids = tape.intInput(count: N)
        let types = tape.intInput(count: N)
        let mask = tape.input(Shape(B, T))
        var x = BertEmbeddings(word: wordEmbedding, position: positionEmbedding, tokenType: tokenTypeEmbedding, norm: embeddingNorm)
            .record(ids, types, batch: B, sequence: T, config: config, on: tape)
        for block in blocks { x = block(x, keyMask: mask, causal: false, on: tape) }

        let first = tape.intInput(count: B)
        for b in 0..<B { first[b] = Int32(b * T) }
        let pooled = tape.tanh(pooler(tape.gatherRows(x, rows: first, count: B), on: tape))
        let nspLogits = seqRelationship(pooled, on: tape)

        let (masked, scored) = Self.scoredRows(x, maskedPositions: P, on: tape)
        let h = transformNorm(tape.gelu(transform(scored, on: tape), approximation: .erf), on: tape)
        let logits = tape.linear(h, weight: wordEmbedding.weight, bias: decoderBias)
        let mlmLabels = tape.intInput(count: P ?? N)
        let nspLabels = tape.intInput(count: B)
        mlmLabels.update(repeating: -100, count: P ?? N)
        nspLabels.update(repeating: -100, count: B)
        let mlmLoss = tape.crossEntropy(logits, targets: mlmLabels)
        let nspLoss = tape.crossEntropy(nspLogits, targets: nspLabels)
        return Graph(batch: B, sequence: T, inputIDs: ids, tokenTypeIDs: types, attentionMask: mask,
                     maskedPositions: masked, mlmLabels: mlmLabels, nextSentenceLabels: nspLabels,
                     lastHiddenState: x, pooled: pooled, predictionLogits: logits,
                     seqRelationshipLogits: nspLogits, mlmLoss: mlmLoss, nspLoss: nspLoss,
                     loss: tape.add(mlmLoss, nspLoss))
    }

    /// The rows an MLM head scores: all of `x`, or P rows gathered from it at the positions the caller
    /// writes into the returned buffer (zeroed: padded slots point at row 0, with label -100).
    static func scoredRows(_ x: Tensor, maskedPositions P: Int?, on tape: Tape) -> (rows: UnsafeMutablePointer<Int32>?, scored: Tensor) {
        guard let P else { return (nil, x) }
        let rows = tape.intInput(count: P)
        rows.update(repeating: 0, count: P)
        return (rows, tape.gatherRows(x, rows: rows, count: P))
    }

    // MARK: - Loading transformers checkpoints

    /// What `load(shapes:origin:copy:)` did besides copying.
    public typealias LoadReport = CheckpointLoadReport

    /// Fills the parameters from a transformers checkpoint, given its tensor shapes and a way to copy a
    /// tensor as Float32. Names may carry the `bert.` prefix (BertForPreTraining) or not (BertModel, which
    /// has no heads); `cls.predictions.bias` may also be stored as `cls.predictions.decoder.bias`, its alias
    /// in HF. Embedding and encoder tensors must all be present; the pooler and the heads keep their init
    /// when absent. A shape that differs is an error naming the tensor and `origin`.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> LoadReport {
        try loadCheckpointTensors(parameters, prefix: "bert.", aliases: ["cls.predictions.bias": "cls.predictions.decoder.bias"],
                                  isOptional: { $0.name.hasPrefix("cls.") || $0.name.hasPrefix("bert.pooler.") },
                                  shapes: shapes, origin: origin, error: { BertError($0) }, copy: copy)
    }
}
