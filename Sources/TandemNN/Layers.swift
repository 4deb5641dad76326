import TandemAutograd
import TandemKernels

/// How a model names and initialises its parameters: a prefix joined with dots (HF's module paths), the
/// arena they are registered in, and the generator that draws their initial values.
public struct ParameterScope {
    public let arena: ParameterArena
    public let prefix: String
    public let rng: Philox

    public init(arena: ParameterArena, prefix: String = "", rng: Philox) {
        self.arena = arena; self.prefix = prefix; self.rng = rng
    }

    /// The scope of a sub-module: `encoder` -> `encoder.layer.0`.
    public func callAsFunction(_ name: String) -> ParameterScope {
        ParameterScope(arena: arena, prefix: prefix.isEmpty ? name : prefix + "." + name, rng: rng)
    }

    /// Registers `prefix.name`.
    public func parameter(_ name: String, _ shape: Shape, _ initializer: ParameterInit, decays: Bool = true) -> Parameter {
        arena.register(prefix.isEmpty ? name : prefix + "." + name, shape, initializer: initializer, decays: decays, rng: rng)
    }
}

/// y = x W^T + b (PyTorch `nn.Linear`; weight (out, in)).
public final class Linear {
    public let weight: Parameter
    public let bias: Parameter?

    /// The bias starts at `biasInitializer`: zeros as the transformers' `_init_weights`, or
    /// `.uniform(bound: 1/√inputs)` as `nn.Linear`'s own `reset_parameters`.
    public init(_ scope: ParameterScope, inputs: Int, outputs: Int, bias: Bool = true, initializer: ParameterInit,
                biasInitializer: ParameterInit = .zeros) {
        weight = scope.parameter("weight", Shape(outputs, inputs), initializer)
        self.bias = bias ? scope.parameter("bias", Shape(outputs), biasInitializer, decays: false) : nil
    }

    /// `nn.Linear(inputs, outputs, bias)` with PyTorch's default init: weight and bias U(-1/√inputs, 1/√inputs)
    /// (kaiming_uniform with a = √5 gives the same bound for the weight).
    public convenience init(torchDefault scope: ParameterScope, inputs: Int, outputs: Int, bias: Bool = true) {
        let bound = ParameterInit.uniform(bound: 1 / Float(inputs).squareRoot())
        self.init(scope, inputs: inputs, outputs: outputs, bias: bias, initializer: bound, biasInitializer: bound)
    }

    public func callAsFunction(_ x: Tensor, on tape: Tape) -> Tensor {
        tape.linear(x, weight: weight, bias: bias)
    }
}

/// y = x W + b with W stored (in, out): transformers' `Conv1D` (GPT-2's projections), a linear layer
/// whose weight is the transpose of `nn.Linear`'s.
public final class Conv1D {
    public let weight: Parameter
    public let bias: Parameter

    public init(_ scope: ParameterScope, inputs: Int, outputs: Int, initializer: ParameterInit) {
        weight = scope.parameter("weight", Shape(inputs, outputs), initializer)
        bias = scope.parameter("bias", Shape(outputs), .zeros, decays: false)
    }

    public func callAsFunction(_ x: Tensor, on tape: Tape) -> Tensor {
        tape.linear(x, weight: weight, bias: bias, layout: .inputsByOutputs)
    }
}

/// A lookup table of `count` vectors of `dimensions` (PyTorch `nn.Embedding`).
public final class Embedding {
    public let weight: Parameter

    public init(_ scope: ParameterScope, count: Int, dimensions: Int, initializer: ParameterInit) {
        weight = scope.parameter("weight", Shape(count, dimensions), initializer)
    }

    public func callAsFunction(_ ids: UnsafeMutablePointer<Int32>, count: Int, on tape: Tape) -> Tensor {
        tape.embedding(ids, count: count, table: weight)
    }
}

/// LayerNorm over the last dimension with learned scale and shift, excluded from weight decay.
public final class LayerNorm {
    public let weight: Parameter
    public let bias: Parameter
    public let eps: Float

    public init(_ scope: ParameterScope, dimensions: Int, eps: Float) {
        weight = scope.parameter("weight", Shape(dimensions), .ones, decays: false)
        bias = scope.parameter("bias", Shape(dimensions), .zeros, decays: false)
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor, on tape: Tape) -> Tensor {
        tape.layerNorm(x, weight: weight, bias: bias, eps: eps)
    }
}

/// Multi-head self-attention: separate query, key and value projections, scaled dot-product attention
/// per head, and an output projection (Vaswani et al. 2017, §3.2.2).
public final class MultiHeadAttention {
    public let query: Linear, key: Linear, value: Linear, output: Linear
    public let heads: Int
    /// Dropout on the attention probabilities while training (HF `attention_probs_dropout_prob`,
    /// `attention_dropout`; `Tape.attention`).
    public let dropout: Float

    /// The model passes the four projections so that their parameter names follow its checkpoint layout.
    public init(query: Linear, key: Linear, value: Linear, output: Linear, heads: Int, dropout: Float = 0) {
        self.query = query; self.key = key; self.value = value; self.output = output
        self.heads = heads; self.dropout = dropout
    }

    /// x (B, T, C) -> (B, T, C).
    public func callAsFunction(_ x: Tensor, keyMask: Tensor?, causal: Bool, on tape: Tape) -> Tensor {
        self(x, queries: x, keyMask: keyMask, causal: causal, on: tape)
    }

    /// x (B, T, C) for the keys and values, `queries` (B, Tq, C) the first Tq positions of x (or of
    /// whatever x was computed from row by row) -> (B, Tq, C): the first Tq rows of the self-attention's
    /// output, at Tq/T of the cost of the query and output projections. Not causal, `queries` may be any
    /// other sequence's positions (`crossAttention`).
    public func callAsFunction(_ x: Tensor, queries: Tensor, keyMask: Tensor?, causal: Bool, on tape: Tape) -> Tensor {
        let q = query(queries, on: tape), k = key(x, on: tape), v = value(x, on: tape)
        let a = tape.attention(q: q, k: k, v: v, heads: heads, keyMask: keyMask, causal: causal, dropout: dropout)
        return output(a, on: tape)
    }
}

extension MultiHeadAttention {
    /// Cross-attention (Vaswani et al. 2017, §3.2.3; HF `encoder_attn`): queries (B, Tq, C) from the
    /// decoder, keys and values from `memory` (B, T, C), the encoder's output, whose padding `memoryMask`
    /// (B, T) hides -> (B, Tq, C). Tq and T are independent.
    public func crossAttention(_ queries: Tensor, memory: Tensor, memoryMask: Tensor?, on tape: Tape) -> Tensor {
        self(memory, queries: queries, keyMask: memoryMask, causal: false, on: tape)
    }
}

/// The position-wise feed-forward network: Linear, activation (GELU, SiLU or ReLU), dropout, Linear.
public final class FeedForward {
    public let up: Linear, down: Linear
    public let activation: Activation
    /// Dropout on the activation's output (HF `activation_dropout`; 0 in BERT, GPT-2 and ViT, which have none there).
    public let activationDropout: Float

    public init(up: Linear, down: Linear, activation: Activation, activationDropout: Float = 0) {
        self.up = up; self.down = down; self.activation = activation; self.activationDropout = activationDropout
    }

    /// A GELU network.
    public convenience init(up: Linear, down: Linear, approximation: GELUApproximation) {
        self.init(up: up, down: down, activation: .gelu(approximation))
    }

    public func callAsFunction(_ x: Tensor, on tape: Tape) -> Tensor {
        // The activation's output feeds only the dropout, and its backward reads its input.
        down(tape.dropout(tape.activation(up(x, on: tape), activation), p: activationDropout, consumingInput: true), on: tape)
    }
}

/// A transformer block, post-LN as in BERT (x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))) or pre-LN
/// as in GPT-2 and ViT (x = x + Drop(Attn(LN(x))); x = x + Drop(FFN(LN(x)))).
public final class TransformerBlock {
    public enum Norm { case pre, post }
    public let attention: MultiHeadAttention
    public let attentionNorm: LayerNorm
    public let feedForward: FeedForward
    public let feedForwardNorm: LayerNorm
    public let norm: Norm
    public let dropout: Float

    public init(attention: MultiHeadAttention, attentionNorm: LayerNorm, feedForward: FeedForward,
                feedForwardNorm: LayerNorm, norm: Norm, dropout: Float) {
        self.attention = attention; self.attentionNorm = attentionNorm
        self.feedForward = feedForward; self.feedForwardNorm = feedForwardNorm
        self.norm = norm; self.dropout = dropout
    }

    /// The dropouts take their input's memory: the attention's and the feed-forward network's outputs
    /// are Linear outputs that feed nothing else.
    public func callAsFunction(_ x: Tensor, keyMask: Tensor?, causal: Bool, on tape: Tape) -> Tensor {
        switch norm {
        case .post:
            let a = tape.dropout(attention(x, keyMask: keyMask, causal: causal, on: tape), p: dropout, consumingInput: true)
            let h = attentionNorm(tape.add(x, a), on: tape)
            let f = tape.dropout(feedForward(h, on: tape), p: dropout, consumingInput: true)
            return feedForwardNorm(tape.add(h, f), on: tape)
        case .pre:
            let a = tape.dropout(attention(attentionNorm(x, on: tape), keyMask: keyMask, causal: causal, on: tape), p: dropout, consumingInput: true)
            let h = tape.add(x, a)
            let f = tape.dropout(feedForward(feedForwardNorm(h, on: tape), on: tape), p: dropout, consumingInput: true)
            return tape.add(h, f)
        }
    }

    /// The block's output at the first L positions of each sequence only: x (B, T, C) -> (B, L, C), the
    /// same values as the first L rows of `callAsFunction` (dropout aside, whose draws depend on the
    /// shape). For a model whose loss reads nothing else after this block (ViT's [CLS] token after the
    /// last one): the first LayerNorm, keys and values still run on all T positions, but the queries,
    /// the attention output, the residuals and the feed-forward network on L. Pre-LN blocks only.
    public func leadingRows(_ x: Tensor, count L: Int, keyMask: Tensor?, causal: Bool, on tape: Tape) -> Tensor {
        precondition(norm == .pre, "leadingRows: only pre-LN blocks")
        let normed = attentionNorm(x, on: tape)
        let a = tape.dropout(attention(normed, queries: tape.leadingRows(normed, count: L), keyMask: keyMask,
                                       causal: causal, on: tape), p: dropout, consumingInput: true)
        let h = tape.add(tape.leadingRows(x, count: L), a)
        let f = tape.dropout(feedForward(feedForwardNorm(h, on: tape), on: tape), p: dropout, consumingInput: true)
        return tape.add(h, f)
    }
}
