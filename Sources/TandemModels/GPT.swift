import TandemAutograd
import TandemKernels
import TandemNN

public struct GPTError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// GPT-2 (Radford et al. 2019) as transformers' `GPT2LMHeadModel`: token and learned position embeddings,
/// pre-LN blocks of causal self-attention and an MLP, a final LayerNorm and an output projection tied to
/// the token embedding. Config fields are `GPT2Config`'s.
public struct GPTConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    public var nPositions: Int
    public var nEmbd: Int
    public var nLayer: Int
    public var nHead: Int
    /// The MLP's inner width; nil means 4 n_embd, as in GPT2Config.
    public var nInner: Int?
    /// `gelu_new` (GPT-2's tanh approximation, also `gelu_pytorch_tanh`) or `gelu` (erf).
    public var activationFunction: String
    public var residPdrop: Float
    public var embdPdrop: Float
    /// Dropout on the attention probabilities while training.
    public var attnPdrop: Float
    public var layerNormEpsilon: Float
    public var initializerRange: Float
    public var bosTokenID: Int
    public var eosTokenID: Int
    public var tieWordEmbeddings: Bool

    public init(vocabSize: Int = 50257, nPositions: Int = 1024, nEmbd: Int = 768, nLayer: Int = 12, nHead: Int = 12,
                nInner: Int? = nil, activationFunction: String = "gelu_new", residPdrop: Float = 0.1,
                embdPdrop: Float = 0.1, attnPdrop: Float = 0.1, layerNormEpsilon: Float = 1e-5,
                initializerRange: Float = 0.02, bosTokenID: Int = 50256, eosTokenID: Int = 50256,
                tieWordEmbeddings: Bool = true) {
        self.vocabSize = vocabSize; self.nPositions = nPositions; self.nEmbd = nEmbd; self.nLayer = nLayer
        self.nHead = nHead; self.nInner = nInner; self.activationFunction = activationFunction
        self.residPdrop = residPdrop; self.embdPdrop = embdPdrop; self.attnPdrop = attnPdrop
        self.layerNormEpsilon = layerNormEpsilon; self.initializerRange = initializerRange
        self.bosTokenID = bosTokenID; self.eosTokenID = eosTokenID; self.tieWordEmbeddings = tieWordEmbeddings
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", nPositions = "n_positions", nEmbd = "n_embd", nLayer = "n_layer"
        case nHead = "n_head", nInner = "n_inner", activationFunction = "activation_function"
        case residPdrop = "resid_pdrop", embdPdrop = "embd_pdrop", attnPdrop = "attn_pdrop"
        case layerNormEpsilon = "layer_norm_epsilon", initializerRange = "initializer_range"
        case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id", tieWordEmbeddings = "tie_word_embeddings"
    }

    /// Missing fields take GPT2Config's defaults, as `from_pretrained` does.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GPTConfig()
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        nPositions = try c.decodeIfPresent(Int.self, forKey: .nPositions) ?? d.nPositions
        nEmbd = try c.decodeIfPresent(Int.self, forKey: .nEmbd) ?? d.nEmbd
        nLayer = try c.decodeIfPresent(Int.self, forKey: .nLayer) ?? d.nLayer
        nHead = try c.decodeIfPresent(Int.self, forKey: .nHead) ?? d.nHead
        nInner = try c.decodeIfPresent(Int.self, forKey: .nInner)
        activationFunction = try c.decodeIfPresent(String.self, forKey: .activationFunction) ?? d.activationFunction
        residPdrop = try c.decodeIfPresent(Float.self, forKey: .residPdrop) ?? d.residPdrop
        embdPdrop = try c.decodeIfPresent(Float.self, forKey: .embdPdrop) ?? d.embdPdrop
        attnPdrop = try c.decodeIfPresent(Float.self, forKey: .attnPdrop) ?? d.attnPdrop
        layerNormEpsilon = try c.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? d.layerNormEpsilon
        initializerRange = try c.decodeIfPresent(Float.self, forKey: .initializerRange) ?? d.initializerRange
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID) ?? d.bosTokenID
        eosTokenID = try c.decodeIfPresent(Int.self, forKey: .eosTokenID) ?? d.eosTokenID
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? d.tieWordEmbeddings
    }

    /// The MLP's inner width.
    public var innerSize: Int { nInner ?? 4 * nEmbd }

    /// The activation as a GELU form; nil for a name Tandem does not implement.
    public var gelu: GELUApproximation? {
        switch activationFunction {
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": return .tanh
        case "gelu": return .erf
        default: return nil
        }
    }

    /// Why this config cannot be built, or nil; names the fields as `model.<field>` keys.
    public var problem: String? {
        if vocabSize <= 0 || nLayer <= 0 || nPositions <= 0 || nEmbd <= 0 || nHead <= 0 {
            return "model.vocab_size, model.n_layer, model.n_positions, model.n_embd and model.n_head must be positive"
        }
        if nEmbd % nHead != 0 { return "model.n_embd = \(nEmbd) is not divisible by model.n_head = \(nHead)" }
        if gelu == nil { return "model.activation_function = \(activationFunction) is not supported (gelu_new, gelu_pytorch_tanh, gelu)" }
        if !tieWordEmbeddings { return "model.tie_word_embeddings = false is not supported (GPT-2 ties lm_head to wte)" }
        if innerSize <= 0 { return "model.n_inner must be positive" }
        for (key, p) in [("resid_pdrop", residPdrop), ("embd_pdrop", embdPdrop), ("attn_pdrop", attnPdrop)] where !(p >= 0 && p < 1) {
            return "model.\(key) = \(p) must be in [0, 1)"
        }
        return nil
    }
}

/// One GPT-2 block: x = x + Drop(c_proj(Attn(c_attn(ln_1(x))))); x = x + Drop(mlp.c_proj(GELU(mlp.c_fc(ln_2(x))))).
public final class GPTBlock {
    public let ln1: LayerNorm, attention: Conv1D, attentionProjection: Conv1D
    public let ln2: LayerNorm, up: Conv1D, down: Conv1D
    let heads: Int, dropout: Float, attentionDropout: Float, gelu: GELUApproximation

    init(_ h: ParameterScope, _ c: GPTConfig) {
        let C = c.nEmbd
        let init_ = ParameterInit.normal(std: c.initializerRange)
        // GPT-2 scales the residual projections' init by 1/sqrt(2 * layers).
        let residual = ParameterInit.normal(std: c.initializerRange / Float(2 * c.nLayer).squareRoot())
        ln1 = LayerNorm(h("ln_1"), dimensions: C, eps: c.layerNormEpsilon)
        attention = Conv1D(h("attn")("c_attn"), inputs: C, outputs: 3 * C, initializer: init_)
        attentionProjection = Conv1D(h("attn")("c_proj"), inputs: C, outputs: C, initializer: residual)
        ln2 = LayerNorm(h("ln_2"), dimensions: C, eps: c.layerNormEpsilon)
        up = Conv1D(h("mlp")("c_fc"), inputs: C, outputs: c.innerSize, initializer: init_)
        down = Conv1D(h("mlp")("c_proj"), inputs: c.innerSize, outputs: C, initializer: residual)
        heads = c.nHead; dropout = c.residPdrop; attentionDropout = c.attnPdrop; gelu = c.gelu!
    }

    func callAsFunction(_ x: Tensor, firstKeys: UnsafeMutablePointer<Int32>?, on tape: Tape) -> Tensor {
        let qkv = attention(ln1(x, on: tape), on: tape)
        let a = tape.causalSelfAttention(packed: qkv, heads: heads, firstKeys: firstKeys, dropout: attentionDropout)
        let h = tape.add(x, tape.dropout(attentionProjection(a, on: tape), p: dropout, consumingInput: true))
        let f = down(tape.gelu(up(ln2(h, on: tape), on: tape), approximation: gelu), on: tape)
        return tape.add(h, tape.dropout(f, p: dropout, consumingInput: true))
    }
}

/// The GPT-2 model's parameters, registered in `GPT2LMHeadModel`'s order (`transformer.wte`,
/// `transformer.wpe`, `transformer.h.N.{ln_1,attn.c_attn,attn.c_proj,ln_2,mlp.c_fc,mlp.c_proj}`,
/// `transformer.ln_f`), Conv1D weights (in, out); `lm_head.weight` is `wte` (tied, so not stored twice).
public final class GPT {
    public let config: GPTConfig
    public let tokenEmbedding: Embedding
    public let positionEmbedding: Embedding
    public let blocks: [GPTBlock]
    public let finalNorm: LayerNorm
    public let parameters: [Parameter]

    public init(_ config: GPTConfig, arena: ParameterArena, rng: Philox) {
        precondition(config.problem == nil, config.problem ?? "")
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)("transformer")
        let first = arena.parameters.count
        let init_ = ParameterInit.normal(std: config.initializerRange)
        tokenEmbedding = Embedding(root("wte"), count: config.vocabSize, dimensions: config.nEmbd, initializer: init_)
        positionEmbedding = Embedding(root("wpe"), count: config.nPositions, dimensions: config.nEmbd, initializer: init_)
        blocks = (0..<config.nLayer).map { GPTBlock(root("h")("\($0)"), config) }
        finalNorm = LayerNorm(root("ln_f"), dimensions: config.nEmbd, eps: config.layerNormEpsilon)
        parameters = Array(arena.parameters[first...])
    }

    /// The tensors of one recorded training graph for a (B, T) batch.
    public struct Graph {
        /// (B, T) token ids to fill before `tape.forward()`.
        public let inputIDs: UnsafeMutablePointer<Int32>
        /// (B, T) next-token targets; -100 is ignored.
        public let targets: UnsafeMutablePointer<Int32>
        /// (B, T) position ids, 0..<T in every row unless the caller restarts them at document starts.
        public let positions: UnsafeMutablePointer<Int32>
        /// (B, T) the first key each query sees, when recorded with `documents` (else nil): 0 everywhere,
        /// or the start of the query's document (`attentionForward`'s block-diagonal masks).
        public let firstKeys: UnsafeMutablePointer<Int32>?
        /// (B, T, V)
        public let logits: Tensor
        /// Mean cross-entropy over the targets that are not -100, a scalar.
        public let loss: Tensor
        public let batch: Int, sequence: Int
    }

    /// Records the forward pass for a batch of B sequences of T tokens on `tape`; with `documents`, the
    /// graph has `firstKeys` for packed documents.
    public func record(on tape: Tape, batch B: Int, sequence T: Int, documents: Bool = false) -> Graph {
        precondition(T <= config.nPositions, "sequence length \(T) exceeds n_positions \(config.nPositions)")
        let ids = tape.intInput(count: B * T)
        let targets = tape.intInput(count: B * T)
        let positions = tape.intInput(count: B * T)
        for b in 0..<B { for t in 0..<T { positions[b * T + t] = Int32(t) } }
        let firstKeys = documents ? tape.intInput(count: B * T) : nil
        firstKeys?.update(repeating: 0, count: B * T)
        let tokens = tokenEmbedding(ids, count: B * T, on: tape)
        let where_ = positionEmbedding(positions, count: B * T, on: tape)
        var x = tape.dropout(tape.add(tokens, where_), p: config.embdPdrop).reshaped(Shape(B, T, config.nEmbd))
        for block in blocks { x = block(x, firstKeys: firstKeys, on: tape) }
        let h = finalNorm(x, on: tape)
        let logits = tape.linear(h, weight: tokenEmbedding.weight, bias: nil)
        let loss = tape.crossEntropy(logits, targets: targets)
        return Graph(inputIDs: ids, targets: targets, positions: positions, firstKeys: firstKeys, logits: logits,
                     loss: loss, batch: B, sequence: T)
    }

    /// Fills `positions` and `firstKeys` of a (B, T) window from its tokens: a document starts at every
    /// `separator` (the stream puts one before each document), and at the window's start for the document
    /// already under way there. Positions count from each start; `firstKeys` is that start.
    public static func fillDocuments(inputIDs: UnsafePointer<Int32>, positions: UnsafeMutablePointer<Int32>,
                                     firstKeys: UnsafeMutablePointer<Int32>, batch B: Int, sequence T: Int, separator: Int32) {
        for b in 0..<B {
            var start = 0
            for t in 0..<T {
                if inputIDs[b * T + t] == separator { start = t }
                positions[b * T + t] = Int32(t - start)
                firstKeys[b * T + t] = Int32(start)
            }
        }
    }

    /// Training FLOPs per token: 6 x parameters (the tied output projection counted once, as llm.c does)
    /// + 12 x layers x hidden x T for the attention products over T keys.
    public func trainingFLOPsPerToken(parameters: Int, sequence T: Int) -> Double {
        6.0 * Double(parameters) + 12.0 * Double(config.nLayer * config.nEmbd * T)
    }

    /// Loads a transformers GPT-2 checkpoint (`GPT2LMHeadModel` names, or `GPT2Model`'s without the
    /// `transformer.` prefix). `lm_head.weight`, when stored, is not read (it is `wte`, tied), nor are the
    /// attention mask buffers of older checkpoints (`attn.bias`, `attn.masked_bias`): the report lists them.
    @discardableResult
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "transformer.", isOptional: { _ in false }, shapes: shapes, origin: origin,
                                  error: { GPTError($0) }, copy: copy)
    }
}

