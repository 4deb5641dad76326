import TandemAutograd
import TandemKernels
import TandemNN

/// An error in a ViT config or checkpoint, naming the file and the field or tensor concerned.
public struct ViTError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Which head sits on the ViT encoder, as HF's `architectures` entry names it.
public enum ViTHead: String, Codable, Sendable {
    /// `ViTForImageClassification`: a Linear on the final-LayerNorm'd [CLS] token, cross-entropy loss.
    case imageClassification = "ViTForImageClassification"
    /// `ViTForMaskedImageModeling` (SimMIM, Xie et al. 2022): a learned mask token, a 1x1 convolution to
    /// encoder_stride² x num_channels channels and a pixel shuffle, L1 loss on the masked pixels.
    case maskedImageModeling = "ViTForMaskedImageModeling"
    /// `DeiTForImageClassificationWithTeacher` (Touvron et al. 2021): a distillation token after [CLS],
    /// a classifier on each (`cls_classifier`, `distillation_classifier`); the loss is DeiT's hard
    /// distillation, half cross-entropy of the [CLS] logits with the labels and half of the distillation
    /// logits with a teacher's predicted classes; inference averages the two heads' logits.
    case distillation = "DeiTForImageClassificationWithTeacher"

    /// HF's `model_type` and the encoder's name prefix.
    public var modelType: String { self == .distillation ? "deit" : "vit" }
    /// Tokens in front of the patches: [CLS], and the distillation token for DeiT.
    public var leadingTokens: Int { self == .distillation ? 2 : 1 }
}

/// The Vision Transformer's hyper-parameters (Dosovitskiy et al. 2021) as HF `ViTConfig`'s config.json
/// fields, plus the head (`architectures`) and the classifier's labels (`id2label`).
public struct ViTConfig: Codable, Equatable, Sendable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    /// Only "gelu" (the exact, erf form) is supported.
    public var hiddenAct: String
    public var hiddenDropoutProb: Float
    /// Dropout on the attention probabilities while training.
    public var attentionProbsDropoutProb: Float
    public var initializerRange: Float
    public var layerNormEps: Float
    /// Square images of image_size x image_size pixels.
    public var imageSize: Int
    public var patchSize: Int
    public var numChannels: Int
    public var qkvBias: Bool
    /// The SimMIM decoder's upsampling factor; must equal patch_size for the masked-pixel loss.
    public var encoderStride: Int
    /// Class names by label index; num_labels is its count.
    public var id2label: [Int: String]
    public var head: ViTHead

    /// The defaults are ViTConfig's (ViT-B/16 at 224 px, two labels, no dropout).
    public init(hiddenSize: Int = 768, numHiddenLayers: Int = 12, numAttentionHeads: Int = 12,
                intermediateSize: Int = 3072, hiddenAct: String = "gelu", hiddenDropoutProb: Float = 0,
                attentionProbsDropoutProb: Float = 0, initializerRange: Float = 0.02, layerNormEps: Float = 1e-12,
                imageSize: Int = 224, patchSize: Int = 16, numChannels: Int = 3, qkvBias: Bool = true,
                encoderStride: Int = 16, id2label: [Int: String] = [0: "LABEL_0", 1: "LABEL_1"],
                head: ViTHead = .imageClassification) {
        self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.intermediateSize = intermediateSize
        self.hiddenAct = hiddenAct; self.hiddenDropoutProb = hiddenDropoutProb
        self.attentionProbsDropoutProb = attentionProbsDropoutProb; self.initializerRange = initializerRange
        self.layerNormEps = layerNormEps; self.imageSize = imageSize; self.patchSize = patchSize
        self.numChannels = numChannels; self.qkvBias = qkvBias; self.encoderStride = encoderStride
        self.id2label = id2label; self.head = head
    }

    /// The number of classes.
    public var numLabels: Int { id2label.count }
    /// Patches per side.
    public var gridSize: Int { imageSize / patchSize }
    /// Patches per image, NP.
    public var numPatches: Int { gridSize * gridSize }
    /// Tokens per image: the patches, [CLS] and, for DeiT, the distillation token.
    public var sequenceLength: Int { numPatches + head.leadingTokens }
    /// Rows per image at which `ViT.record` runs the last block's queries, attention output and
    /// feed-forward network, and the final LayerNorm: the leading tokens for the classification heads,
    /// which read nothing else, all T for SimMIM, whose decoder reads every patch.
    public var lastLayerQueryRows: Int { head == .maskedImageModeling ? sequenceLength : head.leadingTokens }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case hiddenAct = "hidden_act", hiddenDropoutProb = "hidden_dropout_prob"
        case attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case initializerRange = "initializer_range", layerNormEps = "layer_norm_eps"
        case imageSize = "image_size", patchSize = "patch_size", numChannels = "num_channels"
        case qkvBias = "qkv_bias", encoderStride = "encoder_stride"
        case id2label, label2id, numLabels = "num_labels", problemType = "problem_type"
        case modelType = "model_type", architectures
    }

    /// Missing fields take ViTConfig's defaults, as `from_pretrained` does (labels from `id2label`, else
    /// `num_labels` names LABEL_i, else two); the head is ViTForMaskedImageModeling when `architectures`
    /// names it and image classification otherwise. Unsupported settings (an activation other than gelu,
    /// non-square images or patches, a problem_type other than single-label classification) are errors.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ViTConfig()
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        hiddenDropoutProb = try c.decodeIfPresent(Float.self, forKey: .hiddenDropoutProb) ?? d.hiddenDropoutProb
        attentionProbsDropoutProb = try c.decodeIfPresent(Float.self, forKey: .attentionProbsDropoutProb)
            ?? d.attentionProbsDropoutProb
        initializerRange = try c.decodeIfPresent(Float.self, forKey: .initializerRange) ?? d.initializerRange
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? d.layerNormEps
        imageSize = try ImageConfigFields.square(c, .imageSize, error: { ViTError($0) }) ?? d.imageSize
        patchSize = try ImageConfigFields.square(c, .patchSize, error: { ViTError($0) }) ?? d.patchSize
        numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? d.numChannels
        qkvBias = try c.decodeIfPresent(Bool.self, forKey: .qkvBias) ?? d.qkvBias
        encoderStride = try c.decodeIfPresent(Int.self, forKey: .encoderStride) ?? d.encoderStride
        id2label = try ImageConfigFields.labels(c, id2label: .id2label, numLabels: .numLabels, fallback: d.id2label,
                                                error: { ViTError($0) })
        let architectures = try c.decodeIfPresent([String].self, forKey: .architectures) ?? []
        let modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        head = architectures.contains(ViTHead.maskedImageModeling.rawValue) ? .maskedImageModeling
            : architectures.contains(ViTHead.distillation.rawValue) || modelType == "deit" ? .distillation
            : .imageClassification
        try ImageConfigFields.checkProblemType(c, .problemType, error: { ViTError($0) })
        try validate()
    }

    /// Writes a config.json that transformers loads as the config's head (ViTForImageClassification or
    /// ViTForMaskedImageModeling), with `id2label` and `label2id`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode([head.rawValue], forKey: .architectures)
        try c.encode(head.modelType, forKey: .modelType)
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
        try c.encode(qkvBias, forKey: .qkvBias)
        try c.encode(encoderStride, forKey: .encoderStride)
        try c.encode(Dictionary(uniqueKeysWithValues: id2label.map { (String($0.key), $0.value) }), forKey: .id2label)
        try c.encode(Dictionary(id2label.map { ($0.value, $0.key) }, uniquingKeysWith: min), forKey: .label2id)
    }

    /// Checks what the model relies on: the GELU flavour, heads dividing the width, patches tiling the
    /// image, labels numbered 0..<num_labels (at least two: one would be HF's regression), positive sizes.
    public func validate() throws {
        guard hiddenAct == "gelu" else {
            throw ViTError("hidden_act \"\(hiddenAct)\" is not supported (only gelu, the erf form)")
        }
        for (key, value) in [("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                             ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
                             ("image_size", imageSize), ("patch_size", patchSize), ("num_channels", numChannels),
                             ("encoder_stride", encoderStride)]
        where value <= 0 {
            throw ViTError("\(key) must be positive, not \(value)")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw ViTError("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        for (key, p) in [("hidden_dropout_prob", hiddenDropoutProb), ("attention_probs_dropout_prob", attentionProbsDropoutProb)]
        where !(p >= 0 && p < 1) {
            throw ViTError("\(key) = \(p) must be in [0, 1)")
        }
        guard imageSize % patchSize == 0 else {
            throw ViTError("image_size \(imageSize) is not a multiple of patch_size \(patchSize)")
        }
        guard numLabels >= 2, Set(id2label.keys) == Set(0..<numLabels) else {
            throw ViTError("id2label must number at least two labels 0..<num_labels, not \(id2label.keys.sorted())")
        }
    }
}

/// The Vision Transformer (Dosovitskiy et al. 2021) with one of HF's heads on the shared encoder
/// (`ViTEncoder`): a classifier on the [CLS] token (ViTForImageClassification), DeiT's two classifiers
/// (DeiTForImageClassificationWithTeacher; `ViTClassifierHead`) or SimMIM's decoder
/// (ViTForMaskedImageModeling; `SimMIMDecoder`).
///
/// Parameters are registered under the names and PyTorch layouts of HF's checkpoints (conv weights
/// (OC, C, kH, kW)), in the `named_parameters()` order of transformers 4 (transformers 5 renames the
/// modules in memory but still reads and writes these names): the encoder's under `vit.` (`deit.`),
/// then `classifier` (`cls_classifier`, `distillation_classifier`) or `decoder.0`. There is no pooler
/// (every head builds ViTModel with `add_pooling_layer=False`).
public final class ViT {
    public let config: ViTConfig
    public let encoder: ViTEncoder
    /// What sits on the encoder, as `config.head` names it.
    public enum Head {
        case classifier(ViTClassifierHead)
        case maskedImageModeling(SimMIMDecoder)
    }
    public let head: Head
    /// This model's parameters in registration order.
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` (the encoder's, then the head's) and draws HF's init.
    public init(_ config: ViTConfig, arena: ParameterArena, rng: Philox) {
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let firstIndex = arena.parameters.count
        encoder = ViTEncoder(config, scope: root(config.head.modelType), distillationToken: config.head == .distillation,
                             maskToken: config.head == .maskedImageModeling)
        switch config.head {
        case .imageClassification, .distillation:
            head = .classifier(ViTClassifierHead(config, scope: root, distillation: config.head == .distillation))
        case .maskedImageModeling:
            head = .maskedImageModeling(SimMIMDecoder(config, scope: root("decoder")("0")))
        }
        parameters = Array(arena.parameters[firstIndex...])
    }

    /// (1, T, C) learned position embeddings (the encoder's).
    public var positionEmbeddings: Parameter { encoder.positionEmbeddings }

    // MARK: - Graph

    /// How the classification loss is taken.
    public struct Objective: Equatable, Sendable {
        /// Label smoothing of the hard-label cross-entropy (PyTorch's `label_smoothing`).
        public var labelSmoothing: Float
        /// Soft targets (B, num_labels) instead of hard labels: mixup and cutmix write them (with any
        /// smoothing already applied), and `labels` then only serve evaluation.
        public var softTargets: Bool
        public init(labelSmoothing: Float = 0, softTargets: Bool = false) {
            self.labelSmoothing = labelSmoothing
            self.softTargets = softTargets
        }
    }

    /// The tensors of one recorded graph for B images. The caller fills the inputs before
    /// `tape.forward()`.
    public struct Graph {
        public let batch: Int
        /// (B, channels, H, W) input pixels, H = W = image_size.
        public let pixelValues: Tensor
        /// (B) class labels, -100 for none (classification and DeiT; -100 when recorded).
        public let labels: UnsafeMutablePointer<Int32>?
        /// (B, num_labels) soft targets, when the objective asks for them (zeros when recorded).
        public let softTargets: Tensor?
        /// (B) the teacher's predicted classes, DeiT's hard-distillation targets (-100 when recorded).
        public let teacherLabels: UnsafeMutablePointer<Int32>?
        /// (B, NP) patch mask, 1 for masked patches and 0 elsewhere (MIM only; zeros when recorded).
        public let boolMaskedPos: Tensor?
        /// (B, T', C), the final-LayerNorm'd encoder output, [CLS] first (then DeiT's distillation token):
        /// all T' = T tokens for SimMIM or when recorded with `allTokens`, else the T' =
        /// `config.lastLayerQueryRows` leading tokens that the classification heads read.
        public let lastHiddenState: Tensor
        /// (B, num_labels): the classifier's logits (DeiT: `cls_logits`, the [CLS] head's).
        public let logits: Tensor?
        /// (B, num_labels), DeiT's distillation head's logits; HF's `logits` are the mean of the two heads.
        public let distillationLogits: Tensor?
        /// (B, channels, G r, G r) with G = image_size / patch_size and r = encoder_stride, MIM only.
        public let reconstruction: Tensor?
        /// Classification: mean cross-entropy over the labels that are not -100 (or against the soft
        /// targets). DeiT: half that plus half the cross-entropy of the distillation logits with the
        /// teacher's classes. MIM: the masked-pixel L1 loss, present when encoder_stride equals patch_size
        /// (the reconstruction then has the input's size, which HF also requires for the loss).
        public let loss: Tensor?
    }

    /// Records the forward pass for B images on `tape`. The classification heads read only the leading
    /// tokens of the last hidden state, so the last block computes its queries, attention output and
    /// feed-forward network, and the final LayerNorm, only at those rows (its keys and values still at
    /// all T; `TransformerBlock.leadingRows`): the same logits, loss and gradients for about 1 - 1/T of
    /// the last block's work less. `allTokens` computes every row, for a caller that needs the whole
    /// last hidden state (`tandem debug forward`).
    public func record(on tape: Tape, batch B: Int, objective: Objective = Objective(), allTokens: Bool = false) -> Graph {
        let S = config.imageSize, T = config.sequenceLength
        let pixels = tape.input(Shape(B, config.numChannels, S, S))
        switch head {
        case .classifier(let classifier):
            let rows = allTokens ? T : config.lastLayerQueryRows
            let hidden = encoder.record(on: tape, pixels: pixels, mask: nil, lastLayerRows: rows)
            return classifier.record(on: tape, pixels: pixels, hidden: hidden, rowsPerImage: rows, objective: objective)
        case .maskedImageModeling(let decoder):
            let mask = tape.input(Shape(B, config.numPatches))
            mask.data.update(repeating: 0, count: mask.count)
            let hidden = encoder.record(on: tape, pixels: pixels, mask: mask, lastLayerRows: T)
            return decoder.record(on: tape, pixels: pixels, mask: mask, hidden: hidden)
        }
    }

    /// Training FLOPs per image of the graph `record` builds (without `allTokens`): DESIGN.md's 6 per
    /// parameter per row it multiplies or normalises (2 forward, 4 backward) plus 12 C Tq T per layer for
    /// attention's two products, Tq query rows over T keys, each counted at the rows where it runs (see
    /// `ViTEncoder.trainingFLOPsPerImage`); each classifier on one row, SimMIM's decoder on the NP patches.
    public var trainingFLOPsPerImage: Double {
        let flops = encoder.trainingFLOPsPerImage(lastLayerRows: config.lastLayerQueryRows)
        switch head {
        case .classifier(let c): return flops + 6 * Double(c.parameters.reduce(0) { $0 + $1.count })
        case .maskedImageModeling(let d): return flops + 6 * Double(d.weight.count + d.bias.count) * Double(config.numPatches)
        }
    }

    // MARK: - Loading transformers checkpoints

    /// What `load(shapes:origin:copy:)` did besides copying.
    public typealias LoadReport = CheckpointLoadReport

    /// Fills the parameters from a transformers checkpoint, given its tensor shapes and a way to copy a
    /// tensor as Float32. Names may carry the `vit.` prefix (a model with a head) or not (ViTModel).
    /// Embedding and encoder tensors must all be present; the mask token and the head keep their init
    /// when absent. A shape that differs is an error naming the tensor and `origin`.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> LoadReport {
        let headParameters: [Parameter]
        switch head {
        case .classifier(let c): headParameters = c.parameters
        case .maskedImageModeling(let d): headParameters = [d.weight, d.bias]
        }
        let optional = Set(([encoder.maskToken].compactMap { $0 } + headParameters).map(\.name))
        return try loadCheckpointTensors(parameters, prefix: config.head.modelType + ".", isOptional: { optional.contains($0.name) },
                                         shapes: shapes, origin: origin, error: { ViTError($0) }, copy: copy)
    }
}
