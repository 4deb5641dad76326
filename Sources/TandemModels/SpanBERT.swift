import TandemAutograd
import TandemKernels
import TandemNN

/// The span-boundary objective's head sizes (SpanBERT's `BertPairTargetPredictionHead`): rows of the
/// relative position table (`max_pair_targets`, 20) and their width (`position_embedding_size`, 200).
public struct SpanBoundaryHeadConfig: Equatable, Sendable {
    public var maxTargets = 20
    public var positionSize = 200
    public init(maxTargets: Int = 20, positionSize: Int = 200) { self.maxTargets = maxTargets; self.positionSize = positionSize }
}

/// SpanBERT for pretraining (Joshi et al. 2020): BERT's encoder with its pooler under `bert.` (so that the
/// encoder alone loads as transformers' `BertModel`, as the published SpanBERT checkpoints do), BERT's
/// masked-LM head `cls.predictions`, and the span-boundary objective's head `cls.pair_target_predictions`
/// under the names of SpanBERT's code (`pretraining/fairseq/models/pair_bert.py`): each masked token x_i of
/// a span (s, e) is predicted from the encoder's states at the boundary tokens s - 1 and e + 1 and the
/// relative position embedding p_(i - s):
///
///     h = LayerNorm(GeLU(W2 LayerNorm(GeLU(W1 [x_(s-1); x_(e+1); p_(i-s)] + b1)) + b2))
///     logits = h E^T + b (E the word embedding, tied as the MLM decoder is)
///
/// The loss is the MLM cross-entropy plus the SBO cross-entropy, each a mean over its targets. There is no
/// next-sentence head; the pooler gets no gradient (it is kept for `BertModel`).
public final class SpanBERT {
    public let config: BertConfig
    public let head: SpanBoundaryHeadConfig
    let embeddings: BertEmbeddings
    public let blocks: [TransformerBlock]
    public let pooler: Linear
    public let decoderBias: Parameter
    public let transform: Linear
    public let transformNorm: LayerNorm
    /// `cls.pair_target_predictions.bias`, the SBO decoder's output bias (V).
    public let spanDecoderBias: Parameter
    public let spanPositions: Embedding
    public let spanLinear1: Linear
    public let spanNorm1: LayerNorm
    public let spanLinear2: Linear
    public let spanNorm2: LayerNorm
    public let parameters: [Parameter]
    /// The encoder's parameters (`bert.*`, pooler included): what `BertModel` loads.
    public let encoderParameters: [Parameter]

    public var wordEmbedding: Embedding { embeddings.word }

    /// Registers every parameter with BERT's init (the SBO head's too: normal(0, initializer_range)
    /// weights, zero biases, LayerNorm ones and zeros).
    public init(_ config: BertConfig, head: SpanBoundaryHeadConfig = SpanBoundaryHeadConfig(), arena: ParameterArena, rng: Philox) {
        precondition(!config.isRoberta, "SpanBERT is a BERT (model_type bert)")
        self.config = config
        self.head = head
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let bert = root("bert")
        let C = config.hiddenSize, eps = config.layerNormEps
        let init_ = ParameterInit.normal(std: config.initializerRange)
        embeddings = BertEmbeddings(bert("embeddings"), config)
        blocks = BERT.encoderBlocks(bert("encoder"), config)
        pooler = Linear(bert("pooler")("dense"), inputs: C, outputs: C, initializer: init_)
        encoderParameters = Array(arena.parameters[firstIndex...])
        let predictions = root("cls")("predictions")
        decoderBias = predictions.parameter("bias", Shape(config.vocabSize), .zeros, decays: false)
        transform = Linear(predictions("transform")("dense"), inputs: C, outputs: C, initializer: init_)
        transformNorm = LayerNorm(predictions("transform")("LayerNorm"), dimensions: C, eps: eps)
        let pairs = root("cls")("pair_target_predictions")
        spanDecoderBias = pairs.parameter("bias", Shape(config.vocabSize), .zeros, decays: false)
        spanPositions = Embedding(pairs("position_embeddings"), count: head.maxTargets, dimensions: head.positionSize, initializer: init_)
        let mlp = pairs("mlp_layer_norm")
        spanLinear1 = Linear(mlp("linear1"), inputs: 2 * C + head.positionSize, outputs: C, initializer: init_)
        spanNorm1 = LayerNorm(mlp("layer_norm1"), dimensions: C, eps: 1e-12)
        spanLinear2 = Linear(mlp("linear2"), inputs: C, outputs: C, initializer: init_)
        spanNorm2 = LayerNorm(mlp("layer_norm2"), dimensions: C, eps: 1e-12)
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// The parameters of the heads (`cls.*`), saved beside the encoder.
    public var headParameters: [Parameter] { Array(parameters[encoderParameters.count...]) }

    /// The tensors of one recorded graph: B sequences of T tokens and P scored rows (the masked tokens),
    /// each with an MLM target and a span-boundary target.
    public struct Graph {
        public let batch: Int
        public let sequence: Int
        /// (B, T) token ids, segment ids (0) and key mask.
        public let inputIDs: UnsafeMutablePointer<Int32>
        public let tokenTypeIDs: UnsafeMutablePointer<Int32>
        public let attentionMask: Tensor
        /// (P) rows into the (B T) hidden states: the masked tokens, their spans' left and right
        /// boundary tokens, and each one's offset from its span's start (0..<maxTargets).
        public let maskedPositions: UnsafeMutablePointer<Int32>
        public let spanLeft: UnsafeMutablePointer<Int32>
        public let spanRight: UnsafeMutablePointer<Int32>
        public let spanOffset: UnsafeMutablePointer<Int32>
        /// (P) targets, -100 where unscored.
        public let mlmLabels: UnsafeMutablePointer<Int32>
        public let spanLabels: UnsafeMutablePointer<Int32>
        /// (B, T, C)
        public let lastHiddenState: Tensor
        /// (P, V) each
        public let mlmLogits: Tensor
        public let spanLogits: Tensor
        public let mlmLoss: Tensor
        public let spanLoss: Tensor
        /// mlmLoss + spanLoss
        public let loss: Tensor
    }

    public func record(on tape: Tape, batch B: Int, sequence T: Int, predictions P: Int) -> Graph {
        precondition(T <= config.maxPositionEmbeddings, "sequence length \(T) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        let N = B * T
        let ids = tape.intInput(count: N)
        let types = tape.intInput(count: N)
        types.update(repeating: 0, count: N)
        let mask = tape.input(Shape(B, T))
        var x = embeddings.record(ids, types, batch: B, sequence: T, config: config, on: tape)
        for block in blocks { x = block(x, keyMask: mask, causal: false, on: tape) }

        func rows() -> UnsafeMutablePointer<Int32> {
            let r = tape.intInput(count: P)
            r.update(repeating: 0, count: P)
            return r
        }
        let masked = rows(), left = rows(), right = rows(), offset = rows()
        let mlmLabels = rows(), spanLabels = rows()
        mlmLabels.update(repeating: -100, count: P)
        spanLabels.update(repeating: -100, count: P)

        let h = transformNorm(tape.gelu(transform(tape.gatherRows(x, rows: masked, count: P), on: tape), approximation: .erf), on: tape)
        let mlmLogits = tape.linear(h, weight: embeddings.word.weight, bias: decoderBias)

        let pairs = tape.concatenateColumns([tape.gatherRows(x, rows: left, count: P), tape.gatherRows(x, rows: right, count: P),
                                             spanPositions(offset, count: P, on: tape)])
        let h1 = spanNorm1(tape.gelu(spanLinear1(pairs, on: tape), approximation: .erf), on: tape)
        let h2 = spanNorm2(tape.gelu(spanLinear2(h1, on: tape), approximation: .erf), on: tape)
        let spanLogits = tape.linear(h2, weight: embeddings.word.weight, bias: spanDecoderBias)

        let mlmLoss = tape.crossEntropy(mlmLogits, targets: mlmLabels)
        let spanLoss = tape.crossEntropy(spanLogits, targets: spanLabels)
        return Graph(batch: B, sequence: T, inputIDs: ids, tokenTypeIDs: types, attentionMask: mask, maskedPositions: masked,
                     spanLeft: left, spanRight: right, spanOffset: offset, mlmLabels: mlmLabels, spanLabels: spanLabels,
                     lastHiddenState: x, mlmLogits: mlmLogits, spanLogits: spanLogits, mlmLoss: mlmLoss, spanLoss: spanLoss,
                     loss: tape.add(mlmLoss, spanLoss))
    }

    /// Fills the parameters from transformers-style tensors: the encoder under `bert.` or BertModel's
    /// bare names (required), the heads under `cls.` (optional: a BERT checkpoint without them leaves them
    /// at their init; a BertForPreTraining's `cls.predictions` is taken and its NSP head ignored).
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "bert.", aliases: ["cls.predictions.bias": "cls.predictions.decoder.bias"],
                                  isOptional: { $0.name.hasPrefix("cls.") || $0.name.hasPrefix("bert.pooler.") },
                                  shapes: shapes, origin: origin, error: { BertError($0) }, copy: copy)
    }
}
