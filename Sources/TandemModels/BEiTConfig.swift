import TandemAutograd

/// An error in a BEiT config or checkpoint, naming the field or tensor concerned.
public struct BEiTError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Which head sits on the BEiT encoder, as transformers' `architectures` entry names it.
public enum BEiTHead: String, Codable, Sendable {
    /// `BeitForMaskedImageModeling`: BEiT pre-training (Bao et al. 2022, §2.3), a final LayerNorm and a
    /// Linear to the visual-token vocabulary on the patch tokens; cross-entropy on the masked patches.
    case maskedImageModeling = "BeitForMaskedImageModeling"
    /// `BeitForImageClassification`: a Linear on the mean of the patch tokens under the pooler's LayerNorm
    /// (`use_mean_pooling`) or on the final-LayerNorm'd [CLS] token; cross-entropy loss.
    case imageClassification = "BeitForImageClassification"
}

/// BEiT's hyper-parameters (Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022) as
/// transformers' `BeitConfig` names them in config.json, with its defaults, plus the head
/// (`architectures`) and the classifier's labels (`id2label`). The fields of the segmentation heads and
/// the backbone (pool_scales, auxiliary_*, out_features, ...) are not read; transformers fills them with
/// its defaults when it loads what `encode` writes.
public struct BEiTConfig: Codable, Equatable, Sendable {
    /// The visual-token vocabulary that masked image modeling predicts (the dVAE's codebook, 8192).
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    /// Only "gelu" (the exact, erf form) is supported.
    public var hiddenAct: String
    public var hiddenDropoutProb: Float
    /// Dropout on the attention probabilities while training (as in ViT).
    public var attentionProbsDropoutProb: Float
    public var initializerRange: Float
    public var layerNormEps: Float
    /// Square images of image_size x image_size pixels.
    public var imageSize: Int
    public var patchSize: Int
    public var numChannels: Int
    /// Whether the embeddings have a learned mask token (needed by masked image modeling).
    public var useMaskToken: Bool
    /// Learned absolute positions (1, T, C) added to the embeddings.
    public var useAbsolutePositionEmbeddings: Bool
    /// A relative position bias table in every layer's attention.
    public var useRelativePositionBias: Bool
    /// One relative position bias table shared by every layer (`beit.encoder.relative_position_bias`).
    public var useSharedRelativePositionBias: Bool
    /// LayerScale's initial value; > 0 gives every layer its `lambda_1` and `lambda_2`, 0 none (a
    /// negative value in config.json, which transformers also reads as none, is read as 0).
    public var layerScaleInitValue: Float
    /// Stochastic depth: layer i of L drops its branches with probability drop_path_rate i / max(L - 1, 1).
    public var dropPathRate: Float
    /// Classification on the LayerNorm'd mean of the patch tokens (then the encoder has no final
    /// LayerNorm) rather than on the final-LayerNorm'd [CLS] token.
    public var useMeanPooling: Bool
    /// Class names by label index; num_labels is its count.
    public var id2label: [Int: String]
    public var head: BEiTHead

    /// The defaults are BeitConfig's (BEiT-B/16 at 224 px: no mask token, no absolute positions, no
    /// relative position bias, layer scale 0.1, drop path 0.1, mean pooling, two labels), with the
    /// classification head.
    public init(vocabSize: Int = 8192, hiddenSize: Int = 768, numHiddenLayers: Int = 12, numAttentionHeads: Int = 12,
                intermediateSize: Int = 3072, hiddenAct: String = "gelu", hiddenDropoutProb: Float = 0,
                attentionProbsDropoutProb: Float = 0, initializerRange: Float = 0.02, layerNormEps: Float = 1e-12,
                imageSize: Int = 224, patchSize: Int = 16, numChannels: Int = 3, useMaskToken: Bool = false,
                useAbsolutePositionEmbeddings: Bool = false, useRelativePositionBias: Bool = false,
                useSharedRelativePositionBias: Bool = false, layerScaleInitValue: Float = 0.1, dropPathRate: Float = 0.1,
                useMeanPooling: Bool = true, id2label: [Int: String] = [0: "LABEL_0", 1: "LABEL_1"],
                head: BEiTHead = .imageClassification) {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.intermediateSize = intermediateSize
        self.hiddenAct = hiddenAct; self.hiddenDropoutProb = hiddenDropoutProb
        self.attentionProbsDropoutProb = attentionProbsDropoutProb; self.initializerRange = initializerRange
        self.layerNormEps = layerNormEps; self.imageSize = imageSize; self.patchSize = patchSize
        self.numChannels = numChannels; self.useMaskToken = useMaskToken
        self.useAbsolutePositionEmbeddings = useAbsolutePositionEmbeddings
        self.useRelativePositionBias = useRelativePositionBias
        self.useSharedRelativePositionBias = useSharedRelativePositionBias
        self.layerScaleInitValue = layerScaleInitValue; self.dropPathRate = dropPathRate
        self.useMeanPooling = useMeanPooling; self.id2label = id2label; self.head = head
    }

    /// The number of classes.
    public var numLabels: Int { id2label.count }
    /// Patches per side (the relative position bias's window).
    public var gridSize: Int { imageSize / patchSize }
    /// Patches per image, NP.
    public var numPatches: Int { gridSize * gridSize }
    /// Tokens per image: [CLS] and the patches.
    public var sequenceLength: Int { numPatches + 1 }
    /// Rows of a relative position bias table: every offset between two patches, plus [CLS] to a patch,
    /// a patch to [CLS] and [CLS] to itself.
    public var relativeDistances: Int { (2 * gridSize - 1) * (2 * gridSize - 1) + 3 }
    /// Layer i's stochastic depth rate, transformers' `drop_path_rate * i / max(L - 1, 1)`.
    public func dropPathRate(layer i: Int) -> Float {
        dropPathRate * Float(i) / Float(max(numHiddenLayers - 1, 1))
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case hiddenAct = "hidden_act", hiddenDropoutProb = "hidden_dropout_prob"
        case attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case initializerRange = "initializer_range", layerNormEps = "layer_norm_eps"
        case imageSize = "image_size", patchSize = "patch_size", numChannels = "num_channels"
        case useMaskToken = "use_mask_token", useAbsolutePositionEmbeddings = "use_absolute_position_embeddings"
        case useRelativePositionBias = "use_relative_position_bias"
        case useSharedRelativePositionBias = "use_shared_relative_position_bias"
        case layerScaleInitValue = "layer_scale_init_value", dropPathRate = "drop_path_rate"
        case useMeanPooling = "use_mean_pooling"
        case id2label, label2id, numLabels = "num_labels", problemType = "problem_type"
        case modelType = "model_type", architectures
    }

    /// Missing fields take BeitConfig's defaults, as `from_pretrained` does (labels from `id2label`, else
    /// `num_labels` names LABEL_i, else two); the head is masked image modeling when `architectures` names
    /// BeitForMaskedImageModeling and classification otherwise. A model_type other than "beit", an
    /// activation other than gelu, non-square images or patches and a problem_type other than
    /// single-label classification are errors.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = BEiTConfig()
        if let modelType = try c.decodeIfPresent(String.self, forKey: .modelType), modelType != "beit" {
            throw BEiTError("model_type \"\(modelType)\" is not beit")
        }
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        vocabSize = try value(.vocabSize, d.vocabSize)
        hiddenSize = try value(.hiddenSize, d.hiddenSize)
        numHiddenLayers = try value(.numHiddenLayers, d.numHiddenLayers)
        numAttentionHeads = try value(.numAttentionHeads, d.numAttentionHeads)
        intermediateSize = try value(.intermediateSize, d.intermediateSize)
        hiddenAct = try value(.hiddenAct, d.hiddenAct)
        hiddenDropoutProb = try value(.hiddenDropoutProb, d.hiddenDropoutProb)
        attentionProbsDropoutProb = try value(.attentionProbsDropoutProb, d.attentionProbsDropoutProb)
        initializerRange = try value(.initializerRange, d.initializerRange)
        layerNormEps = try value(.layerNormEps, d.layerNormEps)
        imageSize = try ImageConfigFields.square(c, .imageSize, error: { BEiTError($0) }) ?? d.imageSize
        patchSize = try ImageConfigFields.square(c, .patchSize, error: { BEiTError($0) }) ?? d.patchSize
        numChannels = try value(.numChannels, d.numChannels)
        useMaskToken = try value(.useMaskToken, d.useMaskToken)
        useAbsolutePositionEmbeddings = try value(.useAbsolutePositionEmbeddings, d.useAbsolutePositionEmbeddings)
        useRelativePositionBias = try value(.useRelativePositionBias, d.useRelativePositionBias)
        useSharedRelativePositionBias = try value(.useSharedRelativePositionBias, d.useSharedRelativePositionBias)
        layerScaleInitValue = max(0, try value(.layerScaleInitValue, d.layerScaleInitValue))
        dropPathRate = try value(.dropPathRate, d.dropPathRate)
        useMeanPooling = try value(.useMeanPooling, d.useMeanPooling)
        id2label = try ImageConfigFields.labels(c, id2label: .id2label, numLabels: .numLabels, fallback: d.id2label,
                                                error: { BEiTError($0) })
        let architectures = try value(.architectures, [String]())
        head = architectures.contains(BEiTHead.maskedImageModeling.rawValue) ? .maskedImageModeling : .imageClassification
        try ImageConfigFields.checkProblemType(c, .problemType, error: { BEiTError($0) })
        try validate()
    }

    /// Writes a config.json that transformers loads as this head's model, with `id2label` and `label2id`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode([head.rawValue], forKey: .architectures)
        try c.encode("beit", forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(hiddenDropoutProb, forKey: .hiddenDropoutProb)
        try c.encode(attentionProbsDropoutProb, forKey: .attentionProbsDropoutProb)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(numChannels, forKey: .numChannels)
        try c.encode(useMaskToken, forKey: .useMaskToken)
        try c.encode(useAbsolutePositionEmbeddings, forKey: .useAbsolutePositionEmbeddings)
        try c.encode(useRelativePositionBias, forKey: .useRelativePositionBias)
        try c.encode(useSharedRelativePositionBias, forKey: .useSharedRelativePositionBias)
        // transformers 5's strict BeitConfig rejects an integer layer_scale_init_value, and JSONEncoder
        // writes 0 as one: "no layer scale" is written as -1e-30, which transformers (`init_values > 0`)
        // and `init(from:)` both read as none.
        try c.encode(layerScaleInitValue == 0 ? -1e-30 : layerScaleInitValue, forKey: .layerScaleInitValue)
        try c.encode(dropPathRate, forKey: .dropPathRate)
        try c.encode(useMeanPooling, forKey: .useMeanPooling)
        try c.encode(Dictionary(uniqueKeysWithValues: id2label.map { (String($0.key), $0.value) }), forKey: .id2label)
        try c.encode(Dictionary(id2label.map { ($0.value, $0.key) }, uniquingKeysWith: min), forKey: .label2id)
    }

    /// Checks what the model relies on: the GELU flavour, heads dividing the width, patches tiling the
    /// image, positive sizes, probabilities in range, a mask token for masked image modeling, the float
    /// fields transformers requires to be floats not integral, and labels
    /// numbered 0..<num_labels (at least two: one would be transformers' regression) for classification.
    public func validate() throws {
        guard hiddenAct == "gelu" else {
            throw BEiTError("hidden_act \"\(hiddenAct)\" is not supported (only gelu, the erf form)")
        }
        for (key, value) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                             ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
                             ("image_size", imageSize), ("patch_size", patchSize), ("num_channels", numChannels)]
        where value <= 0 {
            throw BEiTError("\(key) must be positive, not \(value)")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw BEiTError("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        guard imageSize % patchSize == 0 else {
            throw BEiTError("image_size \(imageSize) is not a multiple of patch_size \(patchSize)")
        }
        for (key, p) in [("hidden_dropout_prob", hiddenDropoutProb), ("attention_probs_dropout_prob", attentionProbsDropoutProb),
                         ("drop_path_rate", dropPathRate)] where !(p >= 0 && p < 1) {
            throw BEiTError("\(key) = \(p) must lie in [0, 1)")
        }
        guard layerScaleInitValue >= 0 else {
            throw BEiTError("layer_scale_init_value = \(layerScaleInitValue) must not be negative (0 turns layer scale off)")
        }
        guard initializerRange.rounded() != initializerRange, layerNormEps.rounded() != layerNormEps else {
            throw BEiTError("initializer_range (\(initializerRange)) and layer_norm_eps (\(layerNormEps)) must not be "
                            + "integers: transformers' BeitConfig rejects the integers config.json would hold")
        }
        if head == .maskedImageModeling {
            guard useMaskToken else {
                throw BEiTError("BeitForMaskedImageModeling needs use_mask_token: true (the masked patches' embeddings are the mask token)")
            }
        } else {
            guard numLabels >= 2, Set(id2label.keys) == Set(0..<numLabels) else {
                throw BEiTError("id2label must number at least two labels 0..<num_labels, not \(id2label.keys.sorted())")
            }
        }
    }
}
