import TandemAutograd
import TandemKernels
import TandemNN

/// RoBERTa for masked-LM pretraining (Liu et al. 2019) in transformers' `RobertaForMaskedLM` layout: BERT's
/// encoder under `roberta.` (word, position and token-type embeddings, post-LN blocks with erf GELU), no
/// pooler and no next-sentence head, and the LM head `lm_head` (dense, GELU, `layer_norm`, then a decoder
/// tied to the word embedding plus `lm_head.bias`). Position ids count from `pad_token_id + 1` over the
/// tokens that are not padding (`create_position_ids_from_input_ids`), so padding takes the position
/// `pad_token_id`, whose embedding row, like the word embedding's padding row, is zero at init and gets
/// no gradient.
///
/// Parameters are registered under HF's names in its `named_parameters()` order, with PyTorch layouts.
public final class RoBERTa {
    public let config: BertConfig
    public let wordEmbedding: Embedding
    public let positionEmbedding: Embedding
    public let tokenTypeEmbedding: Embedding
    public let embeddingNorm: LayerNorm
    public let blocks: [TransformerBlock]
    /// `lm_head.bias`, the decoder's output bias (V).
    public let decoderBias: Parameter
    public let dense: Linear
    public let layerNorm: LayerNorm
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` with RoBERTa's init (BERT's: normal(0, initializer_range)
    /// weights, zero biases, LayerNorm ones and zeros) and zero padding rows in the word and position
    /// embeddings (`nn.Embedding(padding_idx=pad_token_id)`).
    public init(_ config: BertConfig, arena: ParameterArena, rng: Philox) {
        precondition(config.isRoberta, "RoBERTa needs a config with model_type roberta")
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let roberta = root("roberta"), embeddings = roberta("embeddings")
        let C = config.hiddenSize, eps = config.layerNormEps, pad = config.padTokenId
        let init_ = ParameterInit.normal(std: config.initializerRange)
        wordEmbedding = Embedding(embeddings("word_embeddings"), count: config.vocabSize, dimensions: C, initializer: init_)
        (wordEmbedding.weight.value + pad * C).update(repeating: 0, count: C)
        // RobertaEmbeddings registers the position table last (transformers 5).
        tokenTypeEmbedding = Embedding(embeddings("token_type_embeddings"), count: config.typeVocabSize,
                                       dimensions: C, initializer: init_)
        embeddingNorm = LayerNorm(embeddings("LayerNorm"), dimensions: C, eps: eps)
        positionEmbedding = Embedding(embeddings("position_embeddings"), count: config.maxPositionEmbeddings,
                                      dimensions: C, initializer: init_)
        (positionEmbedding.weight.value + pad * C).update(repeating: 0, count: C)
        blocks = BERT.encoderBlocks(roberta("encoder"), config)
        // RobertaLMHead's own parameter (the bias) comes before its children's in named_parameters().
        let head = root("lm_head")
        decoderBias = head.parameter("bias", Shape(config.vocabSize), .zeros, decays: false)
        dense = Linear(head("dense"), inputs: C, outputs: C, initializer: init_)
        layerNorm = LayerNorm(head("layer_norm"), dimensions: C, eps: eps)
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// The longest sequence the position table allows: positions run up to T + pad_token_id.
    public var maxSequence: Int { config.maxPositionEmbeddings - config.padTokenId - 1 }

    /// The tensors of one recorded graph for a (B, T) batch; integer inputs are filled before
    /// `tape.forward()` (the position ids follow from the input ids at replay).
    public struct Graph {
        public let batch: Int
        public let sequence: Int
        /// (B, T) token ids.
        public let inputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) segment ids (all 0 with RoBERTa's single segment type).
        public let tokenTypeIDs: UnsafeMutablePointer<Int32>
        /// (B, T) key mask: 1 for tokens, 0 for padding.
        public let attentionMask: Tensor
        /// (P) rows into the (B T) hidden states the LM head scores, or nil when it scores every position.
        public let maskedPositions: UnsafeMutablePointer<Int32>?
        /// MLM targets, (B, T) or (P), -100 where unscored.
        public let labels: UnsafeMutablePointer<Int32>
        /// (B, T, C)
        public let lastHiddenState: Tensor
        /// (B, T, V), or (P, V) at the masked positions.
        public let logits: Tensor
        /// Mean MLM cross-entropy over the labels that are not -100, RobertaForMaskedLM's `loss`.
        public let loss: Tensor
    }

    /// Records the forward pass for B sequences of T tokens; with `maskedPositions: P` the LM head scores
    /// only the P rows listed in `Graph.maskedPositions` (as BERT's does in training).
    public func record(on tape: Tape, batch B: Int, sequence T: Int, maskedPositions P: Int? = nil) -> Graph {
        precondition(T <= maxSequence, "sequence length \(T) needs positions up to \(T + config.padTokenId), beyond max_position_embeddings \(config.maxPositionEmbeddings)")
        let C = config.hiddenSize, N = B * T, pad = Int32(config.padTokenId)
        let ids = tape.intInput(count: N)
        let types = tape.intInput(count: N)
        types.update(repeating: 0, count: N)
        let mask = tape.input(Shape(B, T))
        let positions = tape.paddedPositions(ids, batch: B, sequence: T, paddingIndex: pad)

        let words = tape.embedding(ids, count: N, table: wordEmbedding.weight, paddingIndex: pad)
        let placed = tape.embedding(positions, count: N, table: positionEmbedding.weight, paddingIndex: pad)
        let sum = tape.add(tape.add(words, placed), tokenTypeEmbedding(types, count: N, on: tape))
        var x = tape.dropout(embeddingNorm(sum, on: tape), p: config.hiddenDropoutProb).reshaped(Shape(B, T, C))
        for block in blocks { x = block(x, keyMask: mask, causal: false, on: tape) }

        let (masked, scored) = BERT.scoredRows(x, maskedPositions: P, on: tape)
        let h = layerNorm(tape.gelu(dense(scored, on: tape), approximation: .erf), on: tape)
        let logits = tape.linear(h, weight: wordEmbedding.weight, bias: decoderBias)
        let labels = tape.intInput(count: P ?? N)
        labels.update(repeating: -100, count: P ?? N)
        let loss = tape.crossEntropy(logits, targets: labels)
        return Graph(batch: B, sequence: T, inputIDs: ids, tokenTypeIDs: types, attentionMask: mask, maskedPositions: masked,
                     labels: labels, lastHiddenState: x, logits: logits, loss: loss)
    }

    /// Fills the parameters from a transformers checkpoint: `RobertaForMaskedLM` names, or `RobertaModel`'s
    /// without the `roberta.` prefix (the LM head then keeps its init). The tied decoder may be stored as
    /// `lm_head.decoder.bias` beside `lm_head.bias`; a pooler is ignored.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "roberta.", aliases: ["lm_head.bias": "lm_head.decoder.bias"],
                                  isOptional: { $0.name.hasPrefix("lm_head.") },
                                  shapes: shapes, origin: origin, error: { BertError($0) }, copy: copy)
    }
}
