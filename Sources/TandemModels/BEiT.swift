import TandemAutograd
import TandemKernels
import TandemNN

/// One BEiT layer (transformers' `BeitLayer`, timm's `Block`): pre-LN attention and feed-forward
/// branches, each scaled by LayerScale (`lambda_1`, `lambda_2`) and stochastic depth before its residual:
/// x = x + DropPath(λ1 ⊙ Drop(Attn(LN(x)))); x = x + DropPath(λ2 ⊙ Drop(FFN(LN(x)))). The attention's key
/// projection has no bias (its query and value do), and a relative position bias (the layer's own table,
/// a shared one, or their sum) is added to the scores before the softmax.
public final class BEiTLayer {
    /// (C), LayerScale's factors on the attention and feed-forward branches; nil when
    /// layer_scale_init_value is 0.
    public let lambda1: Parameter?, lambda2: Parameter?
    public let attention: MultiHeadAttention
    /// ((2G - 1)² + 3, NH), the layer's own table (`use_relative_position_bias`).
    public let relativePositionBiasTable: Parameter?
    public let attentionNorm: LayerNorm
    public let feedForward: FeedForward
    public let feedForwardNorm: LayerNorm
    public let dropout: Float
    /// This layer's stochastic depth rate.
    public let dropPath: Float

    /// Registers the layer under `layer` (`beit.encoder.layer.i`) in transformers 4's `named_parameters`
    /// order: the lambdas (the layer's own parameters), query, key (weight only), value, the relative
    /// position table, attention output, intermediate, output, layernorm_before, layernorm_after.
    init(_ config: BEiTConfig, scope layer: ParameterScope, dropPath: Float) {
        let C = config.hiddenSize, eps = config.layerNormEps, init_ = ParameterInit.normal(std: config.initializerRange)
        func lambda(_ name: String) -> Parameter? {
            guard config.layerScaleInitValue > 0 else { return nil }
            // ParameterInit has no constant: ones scaled to layer_scale_init_value.
            let p = layer.parameter(name, Shape(C), .ones, decays: false)
            for i in 0..<C { p.values[i] = config.layerScaleInitValue }
            return p
        }
        lambda1 = lambda("lambda_1")
        lambda2 = lambda("lambda_2")
        let attentionScope = layer("attention"), selfAttention = attentionScope("attention")
        let query = Linear(selfAttention("query"), inputs: C, outputs: C, initializer: init_)
        let key = Linear(selfAttention("key"), inputs: C, outputs: C, bias: false, initializer: init_)
        let value = Linear(selfAttention("value"), inputs: C, outputs: C, initializer: init_)
        relativePositionBiasTable = config.useRelativePositionBias
            ? BEiTEncoder.relativePositionTable(config, scope: selfAttention("relative_position_bias")) : nil
        attention = MultiHeadAttention(query: query, key: key, value: value,
                                       output: Linear(attentionScope("output")("dense"), inputs: C, outputs: C, initializer: init_),
                                       heads: config.numAttentionHeads, dropout: config.attentionProbsDropoutProb)
        let up = Linear(layer("intermediate")("dense"), inputs: C, outputs: config.intermediateSize, initializer: init_)
        let down = Linear(layer("output")("dense"), inputs: config.intermediateSize, outputs: C, initializer: init_)
        feedForward = FeedForward(up: up, down: down, approximation: .erf)
        attentionNorm = LayerNorm(layer("layernorm_before"), dimensions: C, eps: eps)
        feedForwardNorm = LayerNorm(layer("layernorm_after"), dimensions: C, eps: eps)
        dropout = config.hiddenDropoutProb
        self.dropPath = dropPath
    }

    /// x (B, T, C) -> (B, T, C); `sharedBias` (NH, T, T) is the shared table's bias, when there is one,
    /// `index` the (T, T) relative position index.
    func callAsFunction(_ x: Tensor, sharedBias: Tensor?, index: [Int32], on tape: Tape) -> Tensor {
        let own = relativePositionBiasTable.map { tape.relativePositionBias(table: $0, index: index) }
        let bias: Tensor?
        switch (own, sharedBias) {
        case let (own?, shared?): bias = tape.add(shared, own)
        default: bias = own ?? sharedBias
        }
        /// Dropout, LayerScale and stochastic depth on a branch's output.
        func scaled(_ branch: Tensor, _ lambda: Parameter?) -> Tensor {
            let dropped = tape.dropout(branch, p: dropout)
            return tape.dropPath(lambda.map { tape.layerScale(dropped, scale: $0) } ?? dropped, p: dropPath)
        }
        let h = attentionNorm(x, on: tape), a = attention
        let heads = tape.attention(q: a.query(h, on: tape), k: a.key(h, on: tape), v: a.value(h, on: tape), heads: a.heads,
                                   keyMask: nil, causal: false, scoreBias: bias, dropout: a.dropout)
        let y = tape.add(x, scaled(a.output(heads, on: tape), lambda1))
        return tape.add(y, scaled(feedForward(feedForwardNorm(y, on: tape), on: tape), lambda2))
    }
}

/// The BEiT encoder (transformers' `BeitModel`, Bao et al. 2022): patches of P x P pixels embedded by one
/// GEMM (a Conv2d with kernel = stride = P), the mask token in place of masked patches (pre-training),
/// [CLS] in front, optional learned absolute positions, dropout, `BEiTLayer`s with relative position
/// biases, and a final LayerNorm unless the model mean-pools (`use_mean_pooling`, where the pooler's
/// LayerNorm follows the mean instead).
///
/// Parameters under `beit.`: `embeddings.{cls_token, mask_token, position_embeddings,
/// patch_embeddings.projection.{weight, bias}}`, `encoder.relative_position_bias.relative_position_bias_table`
/// (shared), `encoder.layer.{i}.*` (`BEiTLayer`), `layernorm`, `pooler.layernorm` (classification with
/// mean pooling), in transformers 4's `named_parameters` order, the names its checkpoints use.
public final class BEiTEncoder {
    public let config: BEiTConfig
    /// (1, 1, C)
    public let classToken: Parameter
    /// (1, 1, C), with use_mask_token.
    public let maskToken: Parameter?
    /// (1, T, C), with use_absolute_position_embeddings.
    public let positionEmbeddings: Parameter?
    /// (C, channels, P, P)
    public let patchWeight: Parameter
    /// (C)
    public let patchBias: Parameter
    /// ((2G - 1)² + 3, NH), with use_shared_relative_position_bias.
    public let sharedRelativePositionBiasTable: Parameter?
    public let layers: [BEiTLayer]
    /// `beit.layernorm`, absent with use_mean_pooling (transformers' `nn.Identity`).
    public let finalNorm: LayerNorm?
    /// `beit.pooler.layernorm`, on the mean of the patch tokens: classification with use_mean_pooling.
    public let poolerNorm: LayerNorm?
    /// (T, T) rows of the relative position tables each score reads (`relativePositionIndex`), the
    /// non-persistent buffer transformers computes.
    public let relativePositionIndex: [Int32]

    /// A relative position bias table, zeros as transformers' `_init_weights`, without weight decay.
    static func relativePositionTable(_ config: BEiTConfig, scope: ParameterScope) -> Parameter {
        scope.parameter("relative_position_bias_table", Shape(config.relativeDistances, config.numAttentionHeads), .zeros,
                        decays: false)
    }

    /// Registers the encoder under `beit` with transformers' init: normal(0, initializer_range) Linear and
    /// Conv2d weights, zero biases, tokens, positions and tables, LayerNorm ones and zeros, lambdas at
    /// layer_scale_init_value. Tokens, positions, tables and lambdas are excluded from weight decay, as
    /// in BEiT's fine-tuning recipe. `pooler` adds the pooler (BeitForImageClassification).
    init(_ config: BEiTConfig, scope beit: ParameterScope, pooler: Bool) {
        self.config = config
        let embeddings = beit("embeddings")
        let C = config.hiddenSize, P = config.patchSize, init_ = ParameterInit.normal(std: config.initializerRange)
        classToken = embeddings.parameter("cls_token", Shape(1, 1, C), .zeros, decays: false)
        maskToken = config.useMaskToken ? embeddings.parameter("mask_token", Shape(1, 1, C), .zeros, decays: false) : nil
        positionEmbeddings = config.useAbsolutePositionEmbeddings
            ? embeddings.parameter("position_embeddings", Shape(1, config.sequenceLength, C), .zeros, decays: false) : nil
        let projection = embeddings("patch_embeddings")("projection")
        patchWeight = projection.parameter("weight", Shape(C, config.numChannels, P, P), init_)
        patchBias = projection.parameter("bias", Shape(C), .zeros, decays: false)
        let encoder = beit("encoder")
        sharedRelativePositionBiasTable = config.useSharedRelativePositionBias
            ? Self.relativePositionTable(config, scope: encoder("relative_position_bias")) : nil
        layers = (0..<config.numHiddenLayers).map { i in
            BEiTLayer(config, scope: encoder("layer")("\(i)"), dropPath: config.dropPathRate(layer: i))
        }
        finalNorm = config.useMeanPooling ? nil : LayerNorm(beit("layernorm"), dimensions: C, eps: config.layerNormEps)
        poolerNorm = pooler && config.useMeanPooling
            ? LayerNorm(beit("pooler")("layernorm"), dimensions: C, eps: config.layerNormEps) : nil
        relativePositionIndex = TandemKernels.relativePositionIndex(height: config.gridSize, width: config.gridSize)
    }

    /// Records the encoder on (B, channels, H, W) `pixels` and returns transformers' `last_hidden_state`,
    /// (B, T, C) with [CLS] first: after the final LayerNorm, or the last layer's output under mean
    /// pooling. `mask` (B, NP), 1 where a patch is masked, replaces those patch embeddings by the mask token.
    public func record(on tape: Tape, pixels: Tensor, mask: Tensor?) -> Tensor {
        var x = tape.linear(tape.patches(pixels, size: config.patchSize), weight: patchWeight, bias: patchBias)
        if let mask {
            guard let maskToken else { preconditionFailure("BEiT: a patch mask needs use_mask_token") }
            x = tape.maskTokens(x, mask: mask, token: maskToken)
        }
        x = positionEmbeddings.map { tape.prependTokens(x, tokens: [classToken], positions: $0) }
            ?? tape.prependTokens(x, tokens: [classToken])
        x = tape.dropout(x, p: config.hiddenDropoutProb)
        let shared = sharedRelativePositionBiasTable.map { tape.relativePositionBias(table: $0, index: relativePositionIndex) }
        for layer in layers { x = layer(x, sharedBias: shared, index: relativePositionIndex, on: tape) }
        return finalNorm.map { $0(x, on: tape) } ?? x
    }
}

/// BEiT (Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022) with one of
/// transformers' heads: masked image modeling (`BeitForMaskedImageModeling`: the final `layernorm` and
/// `lm_head` on the patch tokens, cross-entropy on the masked ones against their visual tokens) or image
/// classification (`BeitForImageClassification`: `classifier` on the pooler's output).
///
/// Parameters carry the names of transformers' checkpoints (what `save_pretrained` writes, transformers 4
/// module names, which transformers 5 still reads and writes), in transformers 4's `named_parameters`
/// order: the encoder's under `beit.`, then `layernorm` and `lm_head`, or `classifier`. The relative
/// position index is computed, not stored (transformers' buffer is non-persistent and ignored on load).
public final class BEiT {
    public let config: BEiTConfig
    public let encoder: BEiTEncoder
    /// Masked image modeling: the LayerNorm before `lm_head`.
    public let headNorm: LayerNorm?
    /// Masked image modeling: (vocab_size, C) and (vocab_size).
    public let lmHead: Linear?
    /// Classification: (num_labels, C) and (num_labels).
    public let classifier: Linear?
    /// This model's parameters in registration order.
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` (the encoder's, then the head's) with transformers' init.
    /// Throws when the config is invalid (`BEiTConfig.validate`).
    public init(_ config: BEiTConfig, arena: ParameterArena, rng: Philox) throws {
        try config.validate()
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let C = config.hiddenSize, init_ = ParameterInit.normal(std: config.initializerRange)
        encoder = BEiTEncoder(config, scope: root("beit"), pooler: config.head == .imageClassification)
        switch config.head {
        case .maskedImageModeling:
            headNorm = LayerNorm(root("layernorm"), dimensions: C, eps: config.layerNormEps)
            lmHead = Linear(root("lm_head"), inputs: C, outputs: config.vocabSize, initializer: init_)
            classifier = nil
        case .imageClassification:
            headNorm = nil
            lmHead = nil
            classifier = Linear(root("classifier"), inputs: C, outputs: config.numLabels, initializer: init_)
        }
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// The head's parameters in registration order.
    public var headParameters: [Parameter] {
        [headNorm?.weight, headNorm?.bias, lmHead?.weight, lmHead?.bias, classifier?.weight, classifier?.bias].compactMap { $0 }
    }

    // MARK: - Graph

    /// The tensors of one recorded graph for B images. The caller fills the inputs before `tape.forward()`.
    public struct Graph {
        public let batch: Int
        /// (B, channels, H, W) input pixels, H = W = image_size.
        public let pixelValues: Tensor
        /// (B, NP) patch mask, 1 for masked patches and 0 elsewhere (masked image modeling; zeros when recorded).
        public let boolMaskedPos: Tensor?
        /// Masked image modeling: (B, NP) every patch's visual token (only the masked patches' count, as
        /// transformers' `labels` is this tensor indexed by `bool_masked_pos`; -100 ignores one).
        /// Classification: (B) class labels, -100 for none. -100 when recorded.
        public let labels: UnsafeMutablePointer<Int32>
        /// (B, num_labels) soft targets, when the classification objective asks for them (zeros when recorded).
        public let softTargets: Tensor?
        /// (B, T, C), transformers' `last_hidden_state` ([CLS] first).
        public let lastHiddenState: Tensor
        /// (B, C), transformers' `pooler_output` (classification): the pooler-LayerNorm'd mean of the patch
        /// tokens, or the [CLS] row of the last hidden state.
        public let pooled: Tensor?
        /// Masked image modeling: (B, NP, vocab_size) `prediction_scores` of every patch; classification:
        /// (B, num_labels).
        public let logits: Tensor
        /// Mean cross-entropy over the masked patches (or the labelled images) whose label is not -100.
        public let loss: Tensor
    }

    /// Records the forward pass for B images on `tape`. Every layer runs on all T tokens (the relative
    /// position bias and mean pooling read every row). `objective` applies to classification only.
    public func record(on tape: Tape, batch B: Int, objective: ViT.Objective = ViT.Objective()) -> Graph {
        let S = config.imageSize, NP = config.numPatches, T = config.sequenceLength, C = config.hiddenSize
        let pixels = tape.input(Shape(B, config.numChannels, S, S))
        switch config.head {
        case .maskedImageModeling:
            let mask = tape.input(Shape(B, NP))
            mask.data.update(repeating: 0, count: mask.count)
            let hidden = encoder.record(on: tape, pixels: pixels, mask: mask)
            let rows = tape.intInput(count: B * NP)
            for b in 0..<B { for i in 0..<NP { rows[b * NP + i] = Int32(b * T + 1 + i) } }
            let patches = tape.gatherRows(hidden, rows: rows, count: B * NP).reshaped(Shape(B, NP, C))
            let logits = lmHead!(headNorm!(patches, on: tape), on: tape)
            let labels = tape.intInput(count: B * NP), targets = tape.intInput(count: B * NP)
            labels.update(repeating: -100, count: B * NP)
            // The masked patches' labels, -100 elsewhere: transformers' loss on prediction_scores[bool_masked_pos].
            tape.record(inputs: [], forward: {
                for i in 0..<B * NP { targets[i] = mask.data[i] != 0 ? labels[i] : -100 }
            }, backward: {})
            let loss = tape.crossEntropy(logits, targets: targets)
            return Graph(batch: B, pixelValues: pixels, boolMaskedPos: mask, labels: labels, softTargets: nil,
                         lastHiddenState: hidden, pooled: nil, logits: logits, loss: loss)
        case .imageClassification:
            let hidden = encoder.record(on: tape, pixels: pixels, mask: nil)
            let pooled: Tensor
            if let poolerNorm = encoder.poolerNorm {
                pooled = poolerNorm(tape.meanRows(hidden, from: 1), on: tape)
            } else {
                pooled = tape.leadingRows(hidden, count: 1).reshaped(Shape(B, C))
            }
            let logits = classifier!(pooled, on: tape)
            let (loss, labels, targets) = recordClassificationLoss(on: tape, logits: logits, objective: objective)
            return Graph(batch: B, pixelValues: pixels, boolMaskedPos: nil, labels: labels, softTargets: targets,
                         lastHiddenState: hidden, pooled: pooled, logits: logits, loss: loss)
        }
    }

    /// Training FLOPs per image of the graph `record` builds: DESIGN.md's 6 per parameter per row it
    /// multiplies or normalises (2 forward, 4 backward) plus 12 C T² per layer for attention's two
    /// products. The patch embedding runs on the NP patches; every layer (its LayerNorms, projections,
    /// LayerScale factors and feed-forward network) and the final LayerNorm on all T tokens; the pooler's
    /// LayerNorm and the classifier on one row per image, or the masked image modeling head on the NP
    /// patches. The [CLS] token, the positions, the relative position tables (gathered and added) and the
    /// mean over the patches count nothing.
    public var trainingFLOPsPerImage: Double {
        let T = Double(config.sequenceLength), NP = Double(config.numPatches), C = Double(config.hiddenSize)
        func count(_ parameters: [Parameter?]) -> Double { Double(parameters.reduce(0) { $0 + ($1?.count ?? 0) }) }
        func linear(_ l: Linear?) -> [Parameter?] { [l?.weight, l?.bias] }
        func norm(_ n: LayerNorm?) -> [Parameter?] { [n?.weight, n?.bias] }
        var flops = 6 * count([encoder.patchWeight, encoder.patchBias]) * NP
        for layer in encoder.layers {
            let a = layer.attention, f = layer.feedForward
            flops += 6 * count(norm(layer.attentionNorm) + linear(a.query) + linear(a.key) + linear(a.value) + linear(a.output)
                               + [layer.lambda1, layer.lambda2] + norm(layer.feedForwardNorm) + linear(f.up) + linear(f.down)) * T
            flops += 12 * C * T * T
        }
        flops += 6 * count(norm(encoder.finalNorm)) * T
        switch config.head {
        case .imageClassification: return flops + 6 * count(norm(encoder.poolerNorm) + linear(classifier))
        case .maskedImageModeling: return flops + 6 * count(norm(headNorm) + linear(lmHead)) * NP
        }
    }

    // MARK: - Loading transformers checkpoints

    /// Fills the parameters from a transformers checkpoint, given its tensor shapes and a way to copy a
    /// tensor as Float32. Names may carry the `beit.` prefix (a model with a head) or not (BeitModel).
    /// Embedding and encoder tensors must all be present; the mask token, the pooler and the head keep
    /// their init when absent (a pre-trained checkpoint fine-tuned with another head). The
    /// `relative_position_index` buffers older checkpoints hold are reported as ignored. A shape that
    /// differs is an error naming the tensor and `origin`.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        let optional = Set(([encoder.maskToken, encoder.poolerNorm?.weight, encoder.poolerNorm?.bias].compactMap { $0 }
                            + headParameters).map(\.name))
        return try loadCheckpointTensors(parameters, prefix: "beit.", isOptional: { optional.contains($0.name) },
                                         shapes: shapes, origin: origin, error: { BEiTError($0) }, copy: copy)
    }
}
