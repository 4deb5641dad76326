import TandemAutograd
import TandemKernels
import TandemNN

/// A GPT-2-style causal language model (Radford et al. 2019): token and learned position embeddings,
/// pre-LN transformer blocks with causal self-attention and tanh-GELU, a final LayerNorm and an output
/// projection tied to the token embedding. Config fields are HF `GPT2Config`'s.
public struct GPTConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    public var nPositions: Int
    public var nEmbd: Int
    public var nLayer: Int
    public var nHead: Int
    public var residPdrop: Float
    public var layerNormEpsilon: Float
    public var initializerRange: Float

    public init(vocabSize: Int = 256, nPositions: Int = 256, nEmbd: Int = 128, nLayer: Int = 4, nHead: Int = 4,
                residPdrop: Float = 0.1, layerNormEpsilon: Float = 1e-5, initializerRange: Float = 0.02) {
        self.vocabSize = vocabSize; self.nPositions = nPositions; self.nEmbd = nEmbd; self.nLayer = nLayer
        self.nHead = nHead; self.residPdrop = residPdrop; self.layerNormEpsilon = layerNormEpsilon
        self.initializerRange = initializerRange
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", nPositions = "n_positions", nEmbd = "n_embd", nLayer = "n_layer"
        case nHead = "n_head", residPdrop = "resid_pdrop", layerNormEpsilon = "layer_norm_epsilon"
        case initializerRange = "initializer_range"
    }

    /// Missing fields take GPT2Config's defaults, as `from_pretrained` does.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GPTConfig()
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 50257
        nPositions = try c.decodeIfPresent(Int.self, forKey: .nPositions) ?? 1024
        nEmbd = try c.decodeIfPresent(Int.self, forKey: .nEmbd) ?? 768
        nLayer = try c.decodeIfPresent(Int.self, forKey: .nLayer) ?? 12
        nHead = try c.decodeIfPresent(Int.self, forKey: .nHead) ?? 12
        residPdrop = try c.decodeIfPresent(Float.self, forKey: .residPdrop) ?? d.residPdrop
        layerNormEpsilon = try c.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? d.layerNormEpsilon
        initializerRange = try c.decodeIfPresent(Float.self, forKey: .initializerRange) ?? d.initializerRange
    }
}

/// The GPT model's parameters, registered in HF GPT2LMHeadModel's module order
/// (`transformer.wte`, `transformer.wpe`, `transformer.h.N...`, `transformer.ln_f`). Linear weights are
/// kept as (out, in) with separate query/key/value projections.
public final class GPT {
    public let config: GPTConfig
    public let tokenEmbedding: Embedding
    public let positionEmbedding: Embedding
    public let blocks: [TransformerBlock]
    public let finalNorm: LayerNorm

    public init(_ config: GPTConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)("transformer")
        let C = config.nEmbd
        let init_ = ParameterInit.normal(std: config.initializerRange)
        // GPT-2 scales the residual projections' init by 1/sqrt(2 * layers).
        let residualInit = ParameterInit.normal(std: config.initializerRange / Float(2 * config.nLayer).squareRoot())
        tokenEmbedding = Embedding(root("wte"), count: config.vocabSize, dimensions: C, initializer: init_)
        positionEmbedding = Embedding(root("wpe"), count: config.nPositions, dimensions: C, initializer: .normal(std: 0.01))
        blocks = (0..<config.nLayer).map { i in
            let h = root("h")("\(i)")
            let ln1 = LayerNorm(h("ln_1"), dimensions: C, eps: config.layerNormEpsilon)
            let attention = MultiHeadAttention(
                query: Linear(h("attn")("q_proj"), inputs: C, outputs: C, initializer: init_),
                key: Linear(h("attn")("k_proj"), inputs: C, outputs: C, initializer: init_),
                value: Linear(h("attn")("v_proj"), inputs: C, outputs: C, initializer: init_),
                output: Linear(h("attn")("c_proj"), inputs: C, outputs: C, initializer: residualInit),
                heads: config.nHead)
            let ln2 = LayerNorm(h("ln_2"), dimensions: C, eps: config.layerNormEpsilon)
            let mlp = FeedForward(up: Linear(h("mlp")("c_fc"), inputs: C, outputs: 4 * C, initializer: init_),
                                  down: Linear(h("mlp")("c_proj"), inputs: 4 * C, outputs: C, initializer: residualInit),
                                  approximation: .tanh)
            return TransformerBlock(attention: attention, attentionNorm: ln1, feedForward: mlp, feedForwardNorm: ln2,
                                    norm: .pre, dropout: config.residPdrop)
        }
        finalNorm = LayerNorm(root("ln_f"), dimensions: C, eps: config.layerNormEpsilon)
    }

    /// The tensors of one recorded training graph for a (B, T) batch.
    public struct Graph {
        /// (B, T) token ids to fill before `tape.forward()`.
        public let inputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) next-token targets; -100 is ignored.
        public let targets: UnsafeMutablePointer<Int32>
        /// (B, T, V)
        public let logits: Tensor
        /// Mean cross-entropy, a scalar.
        public let loss: Tensor
    }

    /// Records the forward pass for a batch of B sequences of T tokens on `tape`.
    public func record(on tape: Tape, batch B: Int, sequence T: Int) -> Graph {
        precondition(T <= config.nPositions, "sequence length \(T) exceeds n_positions \(config.nPositions)")
        let C = config.nEmbd
        let ids = tape.intInput(count: B * T)
        let targets = tape.intInput(count: B * T)
        let positions = tape.intInput(count: B * T)
        for b in 0..<B { for t in 0..<T { positions[b * T + t] = Int32(t) } }
        let tokens = tokenEmbedding(ids, count: B * T, on: tape)
        let where_ = positionEmbedding(positions, count: B * T, on: tape)
        var x = tape.dropout(tape.add(tokens, where_), p: config.residPdrop).reshaped(Shape(B, T, C))
        for block in blocks { x = block(x, keyMask: nil, causal: true, on: tape) }
        let h = finalNorm(x, on: tape)
        let logits = tape.linear(h, weight: tokenEmbedding.weight, bias: nil)
        let loss = tape.crossEntropy(logits, targets: targets)
        return Graph(inputIDs: ids, targets: targets, logits: logits, loss: loss)
    }
}
