import TandemKernels

/// An error in a wav2vec 2.0 config or checkpoint, naming the field or tensor concerned.
public struct Wav2Vec2Error: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Which head sits on the wav2vec 2.0 model, as HF's `architectures` entry names it.
public enum Wav2Vec2Head: String, Codable, Sendable {
    /// `Wav2Vec2ForPreTraining`: the Gumbel-softmax quantiser, `project_hid` and `project_q`, and the
    /// contrastive plus diversity loss on masked frames.
    case preTraining = "Wav2Vec2ForPreTraining"
    /// `Wav2Vec2ForCTC`: `lm_head` on every frame and the CTC loss over a character vocabulary.
    case ctc = "Wav2Vec2ForCTC"
}

/// transformers' `Wav2Vec2Config` under its own key names and defaults (wav2vec2-base), for the fields
/// Tandem's wav2vec 2.0 reads; a config.json written by transformers loads, and the one Tandem writes
/// loads in transformers as the same model.
public struct Wav2Vec2Config: Codable, Equatable, Sendable {
    public var head: Wav2Vec2Head = .ctc
    public var vocabSize = 32
    public var hiddenSize = 768
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var intermediateSize = 3072
    public var hiddenAct = "gelu"
    /// Dropout after the attention and the feed-forward network of every layer, and after the positional
    /// embedding.
    public var hiddenDropout: Float = 0.1
    /// Dropout after the feed-forward activation.
    public var activationDropout: Float = 0.1
    /// Dropout on the attention probabilities. Not applied by Tandem (as in its BERT and ViT); kept so
    /// that the config round-trips.
    public var attentionDropout: Float = 0.1
    public var featProjDropout: Float = 0
    public var featQuantizerDropout: Float = 0
    public var finalDropout: Float = 0.1
    /// Probability of skipping a whole encoder layer in training (LayerDrop, Fan et al. 2020): one decision
    /// per layer and micro-batch, as transformers makes it per forward (`Wav2Vec2.record`).
    public var layerdrop: Float = 0.1
    public var initializerRange: Float = 0.02
    public var layerNormEps: Float = 1e-5
    /// "group": one GroupNorm (a group per channel) after the first convolution (wav2vec2-base);
    /// "layer": a LayerNorm over the channels after every convolution (wav2vec2-large-lv60).
    public var featExtractNorm = "group"
    public var featExtractActivation = "gelu"
    public var convDim = [512, 512, 512, 512, 512, 512, 512]
    public var convStride = [5, 2, 2, 2, 2, 2, 2]
    public var convKernel = [10, 3, 3, 3, 3, 2, 2]
    public var convBias = false
    public var numConvPosEmbeddings = 128
    public var numConvPosEmbeddingGroups = 16
    /// Pre-LN layers and a LayerNorm after the last one (wav2vec2-large-lv60) instead of post-LN layers
    /// with a LayerNorm before the first (wav2vec2-base).
    public var doStableLayerNorm = false
    public var applySpecAugment = true
    public var maskTimeProb: Float = 0.05
    public var maskTimeLength = 10
    public var maskTimeMinMasks = 2
    /// Feature masking in training (SpecAugment's frequency masking on the hidden channels): spans of
    /// `mask_feature_length` channels zeroed on every frame of an utterance, drawn as time spans are.
    public var maskFeatureProb: Float = 0
    public var maskFeatureLength = 10
    public var maskFeatureMinMasks = 0
    public var numCodevectorsPerGroup = 320
    public var numCodevectorGroups = 2
    public var contrastiveLogitsTemperature: Float = 0.1
    public var numNegatives = 100
    public var codevectorDim = 256
    public var projCodevectorDim = 256
    public var diversityLossWeight: Float = 0.1
    public var ctcLossReduction = CTCReduction.sum
    public var ctcZeroInfinity = false
    public var padTokenId = 0
    public var bosTokenId = 1
    public var eosTokenId = 2

    public init() {}

    /// Frames the feature encoder makes of `samples` audio samples (HF `_get_feat_extract_output_lengths`):
    /// (n - kernel) / stride + 1 per layer, floored; 0 when the audio is shorter than the receptive field.
    public func frames(samples: Int) -> Int {
        var n = samples
        for (k, s) in zip(convKernel, convStride) {
            guard n >= k else { return 0 }
            n = (n - k) / s + 1
        }
        return n
    }

    /// The shortest audio that makes one frame (400 samples, 25 ms at 16 kHz, for wav2vec2-base).
    public var receptiveField: Int {
        zip(convKernel, convStride).reversed().reduce(1) { ($0 - 1) * $1.1 + $1.0 }
    }

    /// Samples per frame (320, 20 ms at 16 kHz, for wav2vec2-base).
    public var framesStride: Int { convStride.reduce(1, *) }

    /// Whether the model has `masked_spec_embed` (HF registers it when either masking probability is set).
    public var hasMaskEmbedding: Bool { maskTimeProb > 0 || maskFeatureProb > 0 }

    enum CodingKeys: String, CodingKey {
        case architectures, modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size", hiddenAct = "hidden_act", hiddenDropout = "hidden_dropout"
        case activationDropout = "activation_dropout", attentionDropout = "attention_dropout"
        case featProjDropout = "feat_proj_dropout", featQuantizerDropout = "feat_quantizer_dropout"
        case finalDropout = "final_dropout", layerdrop, initializerRange = "initializer_range"
        case layerNormEps = "layer_norm_eps", featExtractNorm = "feat_extract_norm"
        case featExtractActivation = "feat_extract_activation", convDim = "conv_dim", convStride = "conv_stride"
        case convKernel = "conv_kernel", convBias = "conv_bias", numConvPosEmbeddings = "num_conv_pos_embeddings"
        case numConvPosEmbeddingGroups = "num_conv_pos_embedding_groups", doStableLayerNorm = "do_stable_layer_norm"
        case applySpecAugment = "apply_spec_augment", maskTimeProb = "mask_time_prob", maskTimeLength = "mask_time_length"
        case maskTimeMinMasks = "mask_time_min_masks", maskFeatureProb = "mask_feature_prob"
        case maskFeatureLength = "mask_feature_length", maskFeatureMinMasks = "mask_feature_min_masks"
        case numCodevectorsPerGroup = "num_codevectors_per_group", numCodevectorGroups = "num_codevector_groups"
        case contrastiveLogitsTemperature = "contrastive_logits_temperature", numNegatives = "num_negatives"
        case codevectorDim = "codevector_dim", projCodevectorDim = "proj_codevector_dim"
        case diversityLossWeight = "diversity_loss_weight", ctcLossReduction = "ctc_loss_reduction"
        case ctcZeroInfinity = "ctc_zero_infinity", padTokenId = "pad_token_id", bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id", addAdapter = "add_adapter", useWeightedLayerSum = "use_weighted_layer_sum"
        case numFeatExtractLayers = "num_feat_extract_layers"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            do { return try c.decodeIfPresent(T.self, forKey: key) ?? fallback } catch {
                throw Wav2Vec2Error("\(key.stringValue): \(error)")
            }
        }
        let d = Wav2Vec2Config()
        vocabSize = try value(.vocabSize, d.vocabSize)
        hiddenSize = try value(.hiddenSize, d.hiddenSize)
        numHiddenLayers = try value(.numHiddenLayers, d.numHiddenLayers)
        numAttentionHeads = try value(.numAttentionHeads, d.numAttentionHeads)
        intermediateSize = try value(.intermediateSize, d.intermediateSize)
        hiddenAct = try value(.hiddenAct, d.hiddenAct)
        hiddenDropout = try value(.hiddenDropout, d.hiddenDropout)
        activationDropout = try value(.activationDropout, d.activationDropout)
        attentionDropout = try value(.attentionDropout, d.attentionDropout)
        featProjDropout = try value(.featProjDropout, d.featProjDropout)
        featQuantizerDropout = try value(.featQuantizerDropout, d.featQuantizerDropout)
        finalDropout = try value(.finalDropout, d.finalDropout)
        layerdrop = try value(.layerdrop, d.layerdrop)
        initializerRange = try value(.initializerRange, d.initializerRange)
        layerNormEps = try value(.layerNormEps, d.layerNormEps)
        featExtractNorm = try value(.featExtractNorm, d.featExtractNorm)
        featExtractActivation = try value(.featExtractActivation, d.featExtractActivation)
        convDim = try value(.convDim, d.convDim)
        convStride = try value(.convStride, d.convStride)
        convKernel = try value(.convKernel, d.convKernel)
        convBias = try value(.convBias, d.convBias)
        numConvPosEmbeddings = try value(.numConvPosEmbeddings, d.numConvPosEmbeddings)
        numConvPosEmbeddingGroups = try value(.numConvPosEmbeddingGroups, d.numConvPosEmbeddingGroups)
        doStableLayerNorm = try value(.doStableLayerNorm, d.doStableLayerNorm)
        applySpecAugment = try value(.applySpecAugment, d.applySpecAugment)
        maskTimeProb = try value(.maskTimeProb, d.maskTimeProb)
        maskTimeLength = try value(.maskTimeLength, d.maskTimeLength)
        maskTimeMinMasks = try value(.maskTimeMinMasks, d.maskTimeMinMasks)
        maskFeatureProb = try value(.maskFeatureProb, d.maskFeatureProb)
        maskFeatureLength = try value(.maskFeatureLength, d.maskFeatureLength)
        maskFeatureMinMasks = try value(.maskFeatureMinMasks, d.maskFeatureMinMasks)
        numCodevectorsPerGroup = try value(.numCodevectorsPerGroup, d.numCodevectorsPerGroup)
        numCodevectorGroups = try value(.numCodevectorGroups, d.numCodevectorGroups)
        contrastiveLogitsTemperature = try value(.contrastiveLogitsTemperature, d.contrastiveLogitsTemperature)
        numNegatives = try value(.numNegatives, d.numNegatives)
        codevectorDim = try value(.codevectorDim, d.codevectorDim)
        projCodevectorDim = try value(.projCodevectorDim, d.projCodevectorDim)
        diversityLossWeight = try value(.diversityLossWeight, d.diversityLossWeight)
        let reduction = try value(.ctcLossReduction, d.ctcLossReduction.rawValue)
        guard let r = CTCReduction(rawValue: reduction) else {
            throw Wav2Vec2Error("ctc_loss_reduction \"\(reduction)\" is not supported (sum or mean)")
        }
        ctcLossReduction = r
        ctcZeroInfinity = try value(.ctcZeroInfinity, d.ctcZeroInfinity)
        padTokenId = try value(.padTokenId, d.padTokenId)
        bosTokenId = try value(.bosTokenId, d.bosTokenId)
        eosTokenId = try value(.eosTokenId, d.eosTokenId)
        if try value(.addAdapter, false) { throw Wav2Vec2Error("add_adapter is not supported") }
        if try value(.useWeightedLayerSum, false) { throw Wav2Vec2Error("use_weighted_layer_sum is not supported") }
        let architectures = try value(.architectures, [String]())
        head = architectures.contains(Wav2Vec2Head.preTraining.rawValue) ? .preTraining : .ctc
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != "wav2vec2" {
            throw Wav2Vec2Error("model_type \"\(type)\" is not wav2vec2")
        }
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode([head.rawValue], forKey: .architectures)
        try c.encode("wav2vec2", forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(hiddenDropout, forKey: .hiddenDropout)
        try c.encode(activationDropout, forKey: .activationDropout)
        try c.encode(attentionDropout, forKey: .attentionDropout)
        try c.encode(featProjDropout, forKey: .featProjDropout)
        try c.encode(featQuantizerDropout, forKey: .featQuantizerDropout)
        try c.encode(finalDropout, forKey: .finalDropout)
        try c.encode(layerdrop, forKey: .layerdrop)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(featExtractNorm, forKey: .featExtractNorm)
        try c.encode(featExtractActivation, forKey: .featExtractActivation)
        try c.encode(convDim, forKey: .convDim)
        try c.encode(convStride, forKey: .convStride)
        try c.encode(convKernel, forKey: .convKernel)
        try c.encode(convDim.count, forKey: .numFeatExtractLayers)
        try c.encode(convBias, forKey: .convBias)
        try c.encode(numConvPosEmbeddings, forKey: .numConvPosEmbeddings)
        try c.encode(numConvPosEmbeddingGroups, forKey: .numConvPosEmbeddingGroups)
        try c.encode(doStableLayerNorm, forKey: .doStableLayerNorm)
        try c.encode(applySpecAugment, forKey: .applySpecAugment)
        try c.encode(maskTimeProb, forKey: .maskTimeProb)
        try c.encode(maskTimeLength, forKey: .maskTimeLength)
        try c.encode(maskTimeMinMasks, forKey: .maskTimeMinMasks)
        try c.encode(maskFeatureProb, forKey: .maskFeatureProb)
        try c.encode(maskFeatureLength, forKey: .maskFeatureLength)
        try c.encode(maskFeatureMinMasks, forKey: .maskFeatureMinMasks)
        try c.encode(numCodevectorsPerGroup, forKey: .numCodevectorsPerGroup)
        try c.encode(numCodevectorGroups, forKey: .numCodevectorGroups)
        try c.encode(contrastiveLogitsTemperature, forKey: .contrastiveLogitsTemperature)
        try c.encode(numNegatives, forKey: .numNegatives)
        try c.encode(codevectorDim, forKey: .codevectorDim)
        try c.encode(projCodevectorDim, forKey: .projCodevectorDim)
        try c.encode(diversityLossWeight, forKey: .diversityLossWeight)
        try c.encode(ctcLossReduction.rawValue, forKey: .ctcLossReduction)
        try c.encode(ctcZeroInfinity, forKey: .ctcZeroInfinity)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode(bosTokenId, forKey: .bosTokenId)
        try c.encode(eosTokenId, forKey: .eosTokenId)
        try c.encode(false, forKey: .addAdapter)
        try c.encode(false, forKey: .useWeightedLayerSum)
    }

    /// Checks what the model relies on, naming the field: GELU, the norms it knows, one kernel and
    /// stride per convolution, heads and groups dividing the widths, probabilities in [0, 1), feature-mask
    /// spans no longer than the hidden size.
    public func validate() throws {
        guard hiddenAct == "gelu" else { throw Wav2Vec2Error("hidden_act \"\(hiddenAct)\" is not supported (only gelu)") }
        guard featExtractActivation == "gelu" else {
            throw Wav2Vec2Error("feat_extract_activation \"\(featExtractActivation)\" is not supported (only gelu)")
        }
        guard featExtractNorm == "group" || featExtractNorm == "layer" else {
            throw Wav2Vec2Error("feat_extract_norm \"\(featExtractNorm)\" must be \"group\" or \"layer\"")
        }
        guard !convDim.isEmpty, convStride.count == convDim.count, convKernel.count == convDim.count else {
            throw Wav2Vec2Error("conv_dim (\(convDim.count)), conv_stride (\(convStride.count)) and conv_kernel (\(convKernel.count)) must have one entry per layer")
        }
        for (key, values) in [("conv_dim", convDim), ("conv_stride", convStride), ("conv_kernel", convKernel)]
        where values.contains(where: { $0 <= 0 }) {
            throw Wav2Vec2Error("\(key) \(values) must be positive")
        }
        for (key, value) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                             ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
                             ("num_conv_pos_embeddings", numConvPosEmbeddings),
                             ("num_conv_pos_embedding_groups", numConvPosEmbeddingGroups),
                             ("num_codevectors_per_group", numCodevectorsPerGroup),
                             ("num_codevector_groups", numCodevectorGroups), ("num_negatives", numNegatives),
                             ("codevector_dim", codevectorDim), ("proj_codevector_dim", projCodevectorDim),
                             ("mask_time_length", maskTimeLength), ("mask_feature_length", maskFeatureLength)]
        where value <= 0 {
            throw Wav2Vec2Error("\(key) must be positive, not \(value)")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw Wav2Vec2Error("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        guard hiddenSize % numConvPosEmbeddingGroups == 0 else {
            throw Wav2Vec2Error("hidden_size \(hiddenSize) is not a multiple of num_conv_pos_embedding_groups \(numConvPosEmbeddingGroups)")
        }
        guard codevectorDim % numCodevectorGroups == 0 else {
            throw Wav2Vec2Error("codevector_dim \(codevectorDim) is not a multiple of num_codevector_groups \(numCodevectorGroups)")
        }
        for (key, p) in [("hidden_dropout", hiddenDropout), ("activation_dropout", activationDropout),
                         ("attention_dropout", attentionDropout), ("feat_proj_dropout", featProjDropout),
                         ("feat_quantizer_dropout", featQuantizerDropout), ("final_dropout", finalDropout),
                         ("layerdrop", layerdrop), ("mask_time_prob", maskTimeProb), ("mask_feature_prob", maskFeatureProb)]
        where !(p >= 0 && p < 1) {
            throw Wav2Vec2Error("\(key) \(p) must be in [0, 1)")
        }
        for (key, value) in [("mask_time_min_masks", maskTimeMinMasks), ("mask_feature_min_masks", maskFeatureMinMasks)]
        where value < 0 {
            throw Wav2Vec2Error("\(key) must not be negative, not \(value)")
        }
        // transformers' _compute_mask_indices refuses a span longer than the axis it masks.
        if maskFeatureProb > 0 && maskFeatureLength > hiddenSize {
            throw Wav2Vec2Error("mask_feature_length \(maskFeatureLength) is longer than hidden_size \(hiddenSize), the channels feature masking masks")
        }
        guard padTokenId >= 0 && padTokenId < vocabSize else {
            throw Wav2Vec2Error("pad_token_id \(padTokenId) (the CTC blank) is outside the vocabulary 0..<\(vocabSize)")
        }
        guard contrastiveLogitsTemperature > 0 else {
            throw Wav2Vec2Error("contrastive_logits_temperature must be positive, not \(contrastiveLogitsTemperature)")
        }
    }
}
