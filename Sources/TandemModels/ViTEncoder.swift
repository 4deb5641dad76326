import TandemAutograd
import TandemKernels
import TandemNN

/// The ViT encoder (HF's ViTModel without pooler) that every ViT head shares: patches of P x P pixels
/// embedded by one GEMM (HF's Conv2d with kernel = stride = P), SimMIM's mask token replacing masked
/// patch embeddings, a learned [CLS] token (and DeiT's distillation token) in front, learned position
/// embeddings, pre-LN transformer blocks with erf GELU, and a final LayerNorm.
///
/// Parameters under `vit.` (`deit.`): `embeddings.{cls_token, distillation_token (DeiT), mask_token
/// (MIM), position_embeddings, patch_embeddings.projection.{weight, bias}}`, then per layer
/// `encoder.layer.{i}.attention.attention.{query, key, value}`, `attention.output.dense`,
/// `intermediate.dense`, `output.dense`, `layernorm_before`, `layernorm_after`, then `layernorm`.
///
/// Dropout (`hidden_dropout_prob`) follows the embeddings and the attention and MLP outputs of every
/// block; `attention_probs_dropout_prob` the attention probabilities.
public final class ViTEncoder {
    public let config: ViTConfig
    /// (1, 1, C)
    public let classToken: Parameter
    /// (1, 1, C), DeiT only.
    public let distillationToken: Parameter?
    /// (1, 1, C), SimMIM only.
    public let maskToken: Parameter?
    /// (1, T, C)
    public let positionEmbeddings: Parameter
    /// (C, channels, P, P)
    public let patchWeight: Parameter
    /// (C)
    public let patchBias: Parameter
    public let blocks: [TransformerBlock]
    public let finalNorm: LayerNorm

    /// Registers the encoder's parameters under `vit` and draws HF's init: normal(0, initializer_range)
    /// for Linear and Conv2d weights, the tokens and the positions (HF truncates those at ±2, which at this
    /// std never happens), zero biases and mask token, LayerNorm ones and zeros. The tokens and positions
    /// are excluded from weight decay, as in DeiT and timm.
    public init(_ config: ViTConfig, scope vit: ParameterScope, distillationToken withDistillation: Bool,
                maskToken withMask: Bool) {
        self.config = config
        let embeddings = vit("embeddings")
        let C = config.hiddenSize, eps = config.layerNormEps, P = config.patchSize
        let init_ = ParameterInit.normal(std: config.initializerRange)
        // PyTorch lists a module's own parameters (in assignment order) before its children's.
        classToken = embeddings.parameter("cls_token", Shape(1, 1, C), init_, decays: false)
        distillationToken = withDistillation
            ? embeddings.parameter("distillation_token", Shape(1, 1, C), init_, decays: false) : nil
        maskToken = withMask ? embeddings.parameter("mask_token", Shape(1, 1, C), .zeros, decays: false) : nil
        positionEmbeddings = embeddings.parameter("position_embeddings", Shape(1, config.sequenceLength, C), init_,
                                                  decays: false)
        let projection = embeddings("patch_embeddings")("projection")
        patchWeight = projection.parameter("weight", Shape(C, config.numChannels, P, P), init_)
        patchBias = projection.parameter("bias", Shape(C), .zeros, decays: false)
        blocks = (0..<config.numHiddenLayers).map { i in
            let layer = vit("encoder")("layer")("\(i)")
            let attention = layer("attention"), selfAttention = attention("attention")
            let heads = MultiHeadAttention(
                query: Linear(selfAttention("query"), inputs: C, outputs: C, bias: config.qkvBias, initializer: init_),
                key: Linear(selfAttention("key"), inputs: C, outputs: C, bias: config.qkvBias, initializer: init_),
                value: Linear(selfAttention("value"), inputs: C, outputs: C, bias: config.qkvBias, initializer: init_),
                output: Linear(attention("output")("dense"), inputs: C, outputs: C, initializer: init_),
                heads: config.numAttentionHeads, dropout: config.attentionProbsDropoutProb)
            let up = Linear(layer("intermediate")("dense"), inputs: C, outputs: config.intermediateSize, initializer: init_)
            let down = Linear(layer("output")("dense"), inputs: config.intermediateSize, outputs: C, initializer: init_)
            let before = LayerNorm(layer("layernorm_before"), dimensions: C, eps: eps)
            let after = LayerNorm(layer("layernorm_after"), dimensions: C, eps: eps)
            return TransformerBlock(attention: heads, attentionNorm: before,
                                    feedForward: FeedForward(up: up, down: down, approximation: .erf),
                                    feedForwardNorm: after, norm: .pre, dropout: config.hiddenDropoutProb)
        }
        finalNorm = LayerNorm(vit("layernorm"), dimensions: C, eps: eps)
    }

    /// Records the encoder on (B, channels, H, W) `pixels` and returns the final-LayerNorm'd hidden states,
    /// (B, R, C) with R = `lastLayerRows`: the last block computes its queries, attention output and
    /// feed-forward network (and the final LayerNorm runs) only at the leading R rows when R < T, its keys
    /// and values at all T (`TransformerBlock.leadingRows`). `mask` (B, NP), 1 where a patch is masked,
    /// replaces those patch embeddings by the mask token (SimMIM).
    public func record(on tape: Tape, pixels: Tensor, mask: Tensor?, lastLayerRows rows: Int) -> Tensor {
        let T = config.sequenceLength
        var x = tape.linear(tape.patches(pixels, size: config.patchSize), weight: patchWeight, bias: patchBias)
        if let maskToken, let mask { x = tape.maskTokens(x, mask: mask, token: maskToken) }
        x = tape.dropout(tape.prependTokens(x, tokens: [classToken] + (distillationToken.map { [$0] } ?? []),
                                            positions: positionEmbeddings),
                         p: config.hiddenDropoutProb)
        for (i, block) in blocks.enumerated() {
            x = i == blocks.count - 1 && rows < T
                ? block.leadingRows(x, count: rows, keyMask: nil, causal: false, on: tape)
                : block(x, keyMask: nil, causal: false, on: tape)
        }
        return finalNorm(x, on: tape)
    }

    /// Training FLOPs per image of `record` with `lastLayerRows` rows in the last block: the patch
    /// embedding on the NP patch rows; every block on all T tokens, except that the last block's queries,
    /// attention output, LayerNorm-after and feed-forward network and the final LayerNorm run on
    /// `lastLayerRows` (its LayerNorm-before, keys and values on all T). The tokens, positions and mask
    /// token are lookups and count nothing.
    public func trainingFLOPsPerImage(lastLayerRows: Int) -> Double {
        let T = Double(config.sequenceLength), NP = Double(config.numPatches), C = Double(config.hiddenSize)
        let lastRows = Double(lastLayerRows)
        func count(_ parameters: [Parameter?]) -> Double { Double(parameters.reduce(0) { $0 + ($1?.count ?? 0) }) }
        func linear(_ l: Linear) -> [Parameter?] { [l.weight, l.bias] }
        func norm(_ n: LayerNorm) -> [Parameter?] { [n.weight, n.bias] }
        var flops = 6 * count([patchWeight, patchBias]) * NP
        for (i, block) in blocks.enumerated() {
            let rows = i == blocks.count - 1 ? lastRows : T
            let a = block.attention, f = block.feedForward
            flops += 6 * count(norm(block.attentionNorm) + linear(a.key) + linear(a.value)) * T
            flops += 6 * count(linear(a.query) + linear(a.output) + norm(block.feedForwardNorm) + linear(f.up)
                               + linear(f.down)) * rows
            flops += 12 * C * rows * T
        }
        return flops + 6 * count(norm(finalNorm)) * lastRows
    }
}
