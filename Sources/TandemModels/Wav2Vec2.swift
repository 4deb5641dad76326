import TandemAutograd
import TandemKernels
import TandemNN

/// wav2vec 2.0 (Baevski et al. 2020) as transformers' `Wav2Vec2ForPreTraining` and `Wav2Vec2ForCTC`
/// compute it, on channels-last activations (B, T, C) throughout:
///
/// - the feature encoder: 1-D convolutions over the raw 16 kHz samples (wav2vec2-base: kernels 10, 3, 3, 3,
///   3, 2, 2 and strides 5, 2, 2, 2, 2, 2, 2, 512 channels, 20 ms per frame), each followed by GELU, with a
///   GroupNorm of one group per channel after the first ("group") or a LayerNorm after each ("layer");
/// - the feature projection: a LayerNorm (whose output the quantiser reads) and a Linear to the hidden size;
/// - time masking: the frames of `maskTimeIndices` replaced by the learned `masked_spec_embed`; in training,
///   feature masking: the channels `featureKeep` zeroes set to 0 on every frame of their utterance (HF's
///   `mask_feature_prob`, applied after time masking, on the transformer's input only: the quantiser reads
///   the unmasked features);
/// - the encoder: padded frames zeroed, the convolutional positional embedding (a grouped convolution of
///   kernel 128 in 16 groups under weight normalisation over dim 2, the last frame of its even-kernel output
///   dropped, GELU) added, then post-LN layers after a LayerNorm (base) or pre-LN layers before one
///   ("stable layer norm", large), attending only to the frames of each utterance; in training each layer
///   is skipped (its input passed through) with probability `layerdrop` (LayerDrop, HF's
///   `Wav2Vec2Encoder`), one decision per layer for the whole micro-batch, from (tape rng, `tape.step`,
///   layer) only, so the same on every rank for a global micro-batch and after a resume;
/// - `Wav2Vec2ForCTC`: dropout and `lm_head` on every frame, and the CTC loss with the pad token as blank;
/// - `Wav2Vec2ForPreTraining`: `project_hid` on the encoder output; the Gumbel-softmax product quantiser
///   on the (dropped-out) normalised features, then `project_q`; the contrastive loss of each masked frame
///   against K distractors from its utterance plus the diversity loss on the codebooks' perplexity.
///
/// Parameters are registered under HF's checkpoint names in `named_parameters()` order (the positional
/// convolution's weight norm as transformers saves it: `pos_conv_embed.conv.parametrizations.weight.original0`
/// for g (1, 1, K) and `original1` for v; `weight_g`/`weight_v` of older checkpoints load too).
/// `attention_dropout` drops out the attention probabilities.
public final class Wav2Vec2 {
    public let config: Wav2Vec2Config
    /// The Philox stream of LayerDrop's decisions (index: the layer; step: `tape.step`).
    public static let layerDropStream: UInt64 = 0x1a7e_d209

    /// One convolution of the feature encoder with its norm.
    public struct ConvLayer {
        public let weight: Parameter
        public let bias: Parameter?
        /// GroupNorm (first layer of "group") or LayerNorm ("layer") weight and bias, or nil.
        public let norm: (weight: Parameter, bias: Parameter)?
        public let stride: Int
    }

    /// (C), present when the config masks (`mask_time_prob` or `mask_feature_prob` > 0).
    public let maskedSpecEmbed: Parameter?
    public let convLayers: [ConvLayer]
    public let featureNorm: LayerNorm
    public let featureProjection: Linear
    public let positionalBias: Parameter
    /// Weight norm's g (1, 1, K) and v (C, C / groups, K).
    public let positionalG: Parameter, positionalV: Parameter
    public let encoderNorm: LayerNorm
    public let layers: [TransformerBlock]

    /// What sits on the model.
    public enum Head {
        case ctc(lmHead: Linear)
        case preTraining(codevectors: Parameter, weightProjection: Linear, projectHidden: Linear, projectQuantized: Linear)
    }
    public let head: Head
    /// The parameters in registration order.
    public let parameters: [Parameter]
    /// The Gumbel softmax's temperature, read at every training replay (HF anneals it from 2 to 0.5 by a
    /// factor 0.999995 a step; the trainer sets it).
    public var gumbelTemperature: Float = 2

    /// Registers every parameter in `arena` and draws HF's init (`Wav2Vec2PreTrainedModel._init_weights`).
    public init(_ config: Wav2Vec2Config, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        let model = root("wav2vec2")
        let C = config.hiddenSize, F = config.convDim.last!
        let normal = ParameterInit.normal(std: config.initializerRange)
        maskedSpecEmbed = config.hasMaskEmbedding
            ? model.parameter("masked_spec_embed", Shape(C), .uniform(bound: 0.5), decays: false) : nil
        maskedSpecEmbed.map { shiftToUnitInterval($0) }
        convLayers = config.convDim.indices.map { i in
            let layer = model("feature_extractor")("conv_layers")("\(i)")
            let cin = i == 0 ? 1 : config.convDim[i - 1], cout = config.convDim[i], k = config.convKernel[i]
            let conv = layer("conv")
            let weight = conv.parameter("weight", Shape(cout, cin, k), .normal(std: (2 / Float(cin * k)).squareRoot()))
            let bias = config.convBias
                ? conv.parameter("bias", Shape(cout), .uniform(bound: (1 / Float(cin * k)).squareRoot()), decays: false) : nil
            var norm: (Parameter, Parameter)? = nil
            if config.featExtractNorm == "layer" || i == 0 {
                let n = layer("layer_norm")
                norm = (n.parameter("weight", Shape(cout), .ones, decays: false), n.parameter("bias", Shape(cout), .zeros, decays: false))
            }
            return ConvLayer(weight: weight, bias: bias, norm: norm, stride: config.convStride[i])
        }
        let projection = model("feature_projection")
        featureNorm = LayerNorm(projection("layer_norm"), dimensions: F, eps: config.layerNormEps)
        let bound = ParameterInit.uniform(bound: (1 / Float(F)).squareRoot())
        featureProjection = Linear(projection("projection"), inputs: F, outputs: C, initializer: bound, biasInitializer: bound)
        let encoder = model("encoder"), posConv = encoder("pos_conv_embed")("conv")
        let K = config.numConvPosEmbeddings, groups = config.numConvPosEmbeddingGroups
        positionalBias = posConv.parameter("bias", Shape(C), .zeros, decays: false)
        let weightNorm = posConv("parametrizations")("weight")
        positionalG = weightNorm.parameter("original0", Shape(1, 1, K), .ones, decays: false)
        positionalV = weightNorm.parameter("original1", Shape(C, C / groups, K), .normal(std: 2 * (1 / Float(K * C)).squareRoot()))
        // HF draws the convolution's weight and sets g to its norm, so that the first weight is v itself.
        setWeightNormGain(positionalG, to: positionalV)
        encoderNorm = LayerNorm(encoder("layer_norm"), dimensions: C, eps: config.layerNormEps)
        layers = (0..<config.numHiddenLayers).map { i in
            let layer = encoder("layers")("\(i)"), attention = layer("attention")
            // PyTorch lists k_proj, v_proj, q_proj, out_proj (their order in Wav2Vec2Attention.__init__).
            let key = Linear(attention("k_proj"), inputs: C, outputs: C, initializer: normal)
            let value = Linear(attention("v_proj"), inputs: C, outputs: C, initializer: normal)
            let query = Linear(attention("q_proj"), inputs: C, outputs: C, initializer: normal)
            let output = Linear(attention("out_proj"), inputs: C, outputs: C, initializer: normal)
            let attentionNorm = LayerNorm(layer("layer_norm"), dimensions: C, eps: config.layerNormEps)
            let ff = layer("feed_forward")
            let up = Linear(ff("intermediate_dense"), inputs: C, outputs: config.intermediateSize, initializer: normal)
            let down = Linear(ff("output_dense"), inputs: config.intermediateSize, outputs: C, initializer: normal)
            let finalNorm = LayerNorm(layer("final_layer_norm"), dimensions: C, eps: config.layerNormEps)
            return TransformerBlock(
                attention: MultiHeadAttention(query: query, key: key, value: value, output: output, heads: config.numAttentionHeads,
                                              dropout: config.attentionDropout),
                attentionNorm: attentionNorm,
                feedForward: FeedForward(up: up, down: down, activation: .gelu(.erf), activationDropout: config.activationDropout),
                feedForwardNorm: finalNorm, norm: config.doStableLayerNorm ? .pre : .post, dropout: config.hiddenDropout)
        }
        switch config.head {
        case .ctc:
            head = .ctc(lmHead: Linear(root("lm_head"), inputs: C, outputs: config.vocabSize, initializer: normal))
        case .preTraining:
            let quantizer = root("quantizer")
            let GV = config.numCodevectorGroups * config.numCodevectorsPerGroup
            let codevectors = quantizer.parameter("codevectors", Shape(1, GV, config.codevectorDim / config.numCodevectorGroups),
                                                  .uniform(bound: 0.5))
            shiftToUnitInterval(codevectors)
            let weightProjection = Linear(quantizer("weight_proj"), inputs: F, outputs: GV, initializer: .normal(std: 1))
            head = .preTraining(codevectors: codevectors, weightProjection: weightProjection,
                                projectHidden: Linear(torchDefault: root("project_hid"), inputs: C, outputs: config.projCodevectorDim),
                                projectQuantized: Linear(torchDefault: root("project_q"), inputs: config.codevectorDim,
                                                         outputs: config.projCodevectorDim))
        }
        parameters = Array(arena.parameters[firstIndex...])
    }

    // MARK: - Graph

    /// The tensors of one recorded graph for B utterances of up to S samples. The caller fills the inputs
    /// (`setLengths` fills the masks and lengths from the utterances' sample counts) before `tape.forward()`.
    public struct Graph {
        public let batch: Int
        /// Samples per utterance (the padded length), and the frames the feature encoder makes of them.
        public let samples: Int, frames: Int
        /// (B, S) normalised audio, zero after each utterance's end.
        public let inputValues: Tensor
        /// (B, T) 1 for each utterance's frames, 0 for padding (HF's feature-vector attention mask).
        public let frameMask: Tensor
        /// (B) each utterance's frame count (CTC's input lengths).
        public let frameLengths: UnsafeMutablePointer<Int32>
        /// (B, T) 1 for frames replaced by `masked_spec_embed` (pre-training's masked frames, SpecAugment's in
        /// fine-tuning), present when the model has the embedding; zeros when recorded.
        public let maskTimeIndices: Tensor?
        /// (B, C) 1 for the hidden channels kept and 0 for those feature masking zeroes on every frame of
        /// the utterance (HF's `mask_feature_indices`, inverted), read only while `tape.training`; present
        /// when `mask_feature_prob` > 0 and `apply_spec_augment`; ones when recorded.
        public let featureKeep: Tensor?
        /// CTC: (B, U) labels, -100 (or the pad token) after each transcript; -100 when recorded.
        public let labels: UnsafeMutablePointer<Int32>?
        /// CTC: U, the label columns per utterance.
        public let labelColumns: Int
        /// Pre-training: (B, T, K) distractors as frame indices into the B T frames; 0 when recorded.
        public let sampledNegativeIndices: UnsafeMutablePointer<Int32>?
        /// (B, T, C) the encoder's output.
        public let lastHiddenState: Tensor
        /// (B, T, F) the feature projection's LayerNorm output (HF's `extract_features`).
        public let extractFeatures: Tensor
        /// CTC: (B, T, vocab_size).
        public let logits: Tensor?
        /// Pre-training: (B, T, P) `project_hid` and `project_q` outputs, and the codebook perplexity (1).
        public let projectedStates: Tensor?, projectedQuantizedStates: Tensor?, codevectorPerplexity: Tensor?
        /// Pre-training: the contrastive and diversity losses of the last forward (2).
        public let lossTerms: UnsafeMutablePointer<Float>?
        /// CTC: (B) each utterance's CTC loss in the last forward.
        public let utteranceLosses: UnsafeMutablePointer<Float>?
        /// CTC: the CTC loss; pre-training: contrastive + diversity_loss_weight × diversity.
        public let loss: Tensor

        /// Fills `frameMask` and `frameLengths` for utterances of `lengths` samples (each at most S).
        public func setLengths(_ lengths: [Int], config: Wav2Vec2Config) {
            precondition(lengths.count == batch, "setLengths: \(lengths.count) lengths for \(batch) utterances")
            for (b, n) in lengths.enumerated() {
                precondition(n <= samples, "setLengths: utterance of \(n) samples in a batch of \(samples)")
                let f = min(config.frames(samples: n), frames)
                frameLengths[b] = Int32(f)
                for t in 0..<frames { frameMask.data[b * frames + t] = t < f ? 1 : 0 }
            }
        }
    }

    /// Records the forward pass for B utterances of S samples (padded) on `tape`; `labelColumns` is U, the
    /// label columns of a CTC batch.
    public func record(on tape: Tape, batch B: Int, samples S: Int, labelColumns U: Int = 1) -> Graph {
        let T = config.frames(samples: S)
        precondition(T > 0, "wav2vec2: \(S) samples make no frame (the receptive field is \(config.receptiveField))")
        let inputValues = tape.input(Shape(B, S))
        let frameMask = tape.input(Shape(B, T))
        frameMask.data.update(repeating: 1, count: B * T)
        let frameLengths = tape.intInput(count: B)
        frameLengths.update(repeating: Int32(T), count: B)
        // The feature encoder, channels-last: (B, S, 1) -> (B, T, F).
        // Each layer's GELU runs inside the next layer's convolution (`geluConv1d`), which keeps no copy of
        // its output; the last layer's is a GELU of its own.
        var x = inputValues.reshaped(Shape(B, S, 1))
        for (i, layer) in convLayers.enumerated() {
            x = i == 0 ? tape.conv1d(x, weight: layer.weight, bias: layer.bias, stride: layer.stride)
                : tape.geluConv1d(x, weight: layer.weight, bias: layer.bias, stride: layer.stride)
            if let norm = layer.norm {
                x = config.featExtractNorm == "group" && i == 0
                    ? tape.channelNormOverTime(x, weight: norm.weight, bias: norm.bias, eps: 1e-5)
                    : tape.layerNorm(x, weight: norm.weight, bias: norm.bias, eps: 1e-5)
            }
        }
        x = tape.gelu(x)
        precondition(x.shape[1] == T, "wav2vec2: the feature encoder made \(x.shape[1]) frames, expected \(T)")
        let extract = featureNorm(x, on: tape)
        var hidden = tape.dropout(featureProjection(extract, on: tape), p: config.featProjDropout, consumingInput: true)
        var maskTime: Tensor? = nil
        if let maskedSpecEmbed {
            let m = tape.input(Shape(B, T))
            m.data.update(repeating: 0, count: B * T)
            hidden = tape.maskTokens(hidden, mask: m, token: maskedSpecEmbed)
            maskTime = m
        }
        var featureKeep: Tensor? = nil
        if config.maskFeatureProb > 0 && config.applySpecAugment {
            let keep = tape.input(Shape(B, config.hiddenSize))
            keep.data.update(repeating: 1, count: B * config.hiddenSize)
            hidden = tape.keepChannels(hidden, keep: keep)
            featureKeep = keep
        }
        // The encoder.
        hidden = tape.keepRows(hidden, keep: frameMask)
        let K = config.numConvPosEmbeddings
        let positions = tape.gelu(tape.conv1d(hidden, weight: tape.weightNorm(g: positionalG, v: positionalV, dim: 2),
                                              bias: positionalBias, padding: K / 2, groups: config.numConvPosEmbeddingGroups,
                                              outputLength: T))
        hidden = tape.add(hidden, positions)
        if !config.doStableLayerNorm { hidden = encoderNorm(hidden, on: tape) }
        hidden = tape.dropout(hidden, p: config.hiddenDropout)
        for (i, layer) in layers.enumerated() {
            let apply = { (x: Tensor) in layer(x, keyMask: frameMask, causal: false, on: tape) }
            if config.layerdrop > 0 {
                let p = config.layerdrop
                hidden = tape.skippable(hidden, skip: { [unowned tape] in
                    tape.layerDropSkips(layer: i, p: p, stream: Self.layerDropStream)
                }, apply)
            } else {
                hidden = apply(hidden)
            }
        }
        if config.doStableLayerNorm { hidden = encoderNorm(hidden, on: tape) }

        switch head {
        case .ctc(let lmHead):
            let logits = lmHead(tape.dropout(hidden, p: config.finalDropout), on: tape)
            let labels = tape.intInput(count: B * U)
            labels.update(repeating: -100, count: B * U)
            let losses = tape.values.allocate(Float.self, count: B)
            let loss = tape.ctcLoss(logits, labels: labels, labelColumns: U, inputLengths: frameLengths, blank: config.padTokenId,
                                    reduction: config.ctcLossReduction, zeroInfinity: config.ctcZeroInfinity,
                                    utteranceLosses: losses)
            return Graph(batch: B, samples: S, frames: T, inputValues: inputValues, frameMask: frameMask,
                         frameLengths: frameLengths, maskTimeIndices: maskTime, featureKeep: featureKeep, labels: labels, labelColumns: U,
                         sampledNegativeIndices: nil, lastHiddenState: hidden, extractFeatures: extract, logits: logits,
                         projectedStates: nil, projectedQuantizedStates: nil, codevectorPerplexity: nil, lossTerms: nil,
                         utteranceLosses: losses, loss: loss)
        case .preTraining(let codevectors, let weightProjection, let projectHidden, let projectQuantized):
            guard let maskTime else { preconditionFailure("wav2vec2 pre-training needs mask_time_prob > 0") }
            let projected = projectHidden(hidden, on: tape)
            let features = tape.dropout(extract, p: config.featQuantizerDropout)
            let (quantized, perplexity, codes) = tape.gumbelQuantize(weightProjection(features, on: tape), codevectors: codevectors,
                                                              groups: config.numCodevectorGroups, mask: maskTime,
                                                              temperature: { [unowned self] in gumbelTemperature })
            let projectedQuantized = projectQuantized(quantized, on: tape)
            let KN = config.numNegatives
            let negatives = tape.intInput(count: B * T * KN)
            negatives.update(repeating: 0, count: B * T * KN)
            let terms = tape.values.allocate(Float.self, count: 2)
            let loss = tape.wav2vec2PretrainingLoss(
                predicted: projected, quantized: projectedQuantized, perplexity: perplexity, codes: codes,
                groups: config.numCodevectorGroups, negatives: negatives,
                distractors: KN, mask: maskTime, temperature: config.contrastiveLogitsTemperature,
                codevectorCount: config.numCodevectorGroups * config.numCodevectorsPerGroup,
                diversityWeight: config.diversityLossWeight, terms: terms)
            return Graph(batch: B, samples: S, frames: T, inputValues: inputValues, frameMask: frameMask,
                         frameLengths: frameLengths, maskTimeIndices: maskTime, featureKeep: featureKeep, labels: nil, labelColumns: 0,
                         sampledNegativeIndices: negatives, lastHiddenState: hidden, extractFeatures: extract, logits: nil,
                         projectedStates: projected, projectedQuantizedStates: projectedQuantized,
                         codevectorPerplexity: perplexity, lossTerms: terms, utteranceLosses: nil, loss: loss)
        }
    }

    // MARK: - Loading transformers checkpoints

    /// Fills the parameters from a transformers checkpoint (names with or without `wav2vec2.`; the
    /// positional convolution's weight norm under `parametrizations.weight.original0/1` or the older
    /// `weight_g`/`weight_v`). The base model's tensors must all be present; the head keeps its init when
    /// absent (fine-tuning a pre-trained model with CTC), and so does `masked_spec_embed`.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        let base = "wav2vec2.encoder.pos_conv_embed.conv."
        let aliases = [positionalG.name: base + "weight_g", positionalV.name: base + "weight_v"]
        let optional = Set(parameters.filter { !$0.name.hasPrefix("wav2vec2.") }.map(\.name) + [maskedSpecEmbed?.name].compactMap { $0 })
        return try loadCheckpointTensors(parameters, prefix: "wav2vec2.", aliases: aliases, isOptional: { optional.contains($0.name) },
                                         shapes: shapes, origin: origin, error: { Wav2Vec2Error($0) }, copy: copy)
    }
}

/// U(-0.5, 0.5) -> U(0, 1): HF draws `masked_spec_embed` and the codevectors from `uniform_()`.
private func shiftToUnitInterval(_ p: Parameter) {
    for i in 0..<p.count { p.value[i] += 0.5 }
}

/// g[k] = ||v[:, :, k]||, weight norm's gain for a first weight equal to v (dim 2 of (O, I, K)).
private func setWeightNormGain(_ g: Parameter, to v: Parameter) {
    let K = v.shape[2], rows = v.count / K
    for k in 0..<K {
        var s = 0.0
        for r in 0..<rows { let x = Double(v.value[r * K + k]); s += x * x }
        g.value[k] = Float(s.squareRoot())
    }
}
