import TandemAutograd
import TandemModels

/// What a vision model's head trains for, as `VisionTask` handles it: each has its data (masks, a
/// teacher's labels) and its evaluation.
public enum VisionObjective: Sendable {
    /// Supervised classification of the [CLS] token or of the pooled patches; top-1 evaluation.
    case classification
    /// SimMIM's masked-pixel reconstruction; evaluated by its loss on fixed masks.
    case maskedImageModeling
    /// DeiT's hard distillation from a teacher's predicted classes; both heads evaluated.
    case distillation
    /// BEiT's masked image modeling: the masked patches' visual tokens (from a tokenizer's file) predicted
    /// under blockwise masks; evaluated by the cross-entropy and top-1 of the masked patches on fixed masks.
    case visualTokens
}

/// The parts of a vision model's HF config that `VisionTask` reads: the image geometry, the labels and
/// the head (ViTConfig, BEiTConfig).
public protocol VisionModelConfig: Encodable {
    var hiddenSize: Int { get }
    var numHiddenLayers: Int { get }
    var numAttentionHeads: Int { get }
    /// Square images of image_size x image_size pixels.
    var imageSize: Int { get }
    var patchSize: Int { get }
    var numChannels: Int { get }
    var numLabels: Int { get }
    /// Patches per image, NP.
    var numPatches: Int { get }
    /// Tokens per image, T.
    var sequenceLength: Int { get }
    /// The head's transformers class, config.json's `architectures` entry.
    var architecture: String { get }
    var objective: VisionObjective { get }
    /// Throws when the config is one the model cannot build.
    func validate() throws
}

/// A model that `VisionTask` trains on image shards: its graph on (B, channels, H, W) pixels with a loss
/// (`VisionGraph`), its FLOP count and its transformers checkpoint loading. ViT (with DeiT and SimMIM)
/// and BEiT's classifier.
public protocol VisionModel: AnyObject {
    associatedtype Config: VisionModelConfig
    var config: Config { get }
    /// The model's parameters in registration order.
    var parameters: [Parameter] { get }
    /// Registers every parameter in `arena` with transformers' init.
    init(_ config: Config, arena: ParameterArena, rng: Philox) throws
    /// Records the training graph for B images (the objective's loss; a head-specific graph may skip
    /// work no loss reads).
    func recordVision(on tape: Tape, batch: Int, objective: ViT.Objective) -> VisionGraph
    /// Model FLOPs of one training step per image, counted where the graph does the work.
    var trainingFLOPsPerImage: Double { get }
    /// Fills the parameters from a transformers checkpoint's tensors (`--init-from`).
    func load(shapes: [String: [Int]], origin: String,
              copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport
}

/// The tensors of a recorded vision graph that `VisionTask` fills and reads; absent ones are nil.
public struct VisionGraph {
    public let batch: Int
    /// (B, channels, H, W) input pixels.
    public let pixelValues: Tensor
    /// (B) class labels, -100 for none (classification and DeiT).
    public let labels: UnsafeMutablePointer<Int32>?
    /// (B, num_labels) soft targets, when the objective asks for them (mixup, cutmix).
    public let softTargets: Tensor?
    /// (B) the teacher's predicted classes (DeiT).
    public let teacherLabels: UnsafeMutablePointer<Int32>?
    /// (B, NP) patch mask, 1 for masked patches (SimMIM, BEiT's masked image modeling).
    public let boolMaskedPos: Tensor?
    /// (B, NP) every patch's visual token, -100 for none (BEiT's masked image modeling; the loss reads the
    /// masked patches').
    public let patchLabels: UnsafeMutablePointer<Int32>?
    /// (B, NP, vocab_size) every patch's visual-token logits (BEiT's masked image modeling).
    public let patchLogits: Tensor?
    /// (B, num_labels) the classifier's logits (DeiT: the [CLS] head's).
    public let logits: Tensor?
    /// (B, num_labels) DeiT's distillation head's logits.
    public let distillationLogits: Tensor?
    /// The scalar training loss, when the graph has one.
    public let loss: Tensor?

    public init(batch: Int, pixelValues: Tensor, labels: UnsafeMutablePointer<Int32>?, softTargets: Tensor?,
                teacherLabels: UnsafeMutablePointer<Int32>? = nil, boolMaskedPos: Tensor? = nil,
                patchLabels: UnsafeMutablePointer<Int32>? = nil, patchLogits: Tensor? = nil, logits: Tensor?,
                distillationLogits: Tensor? = nil, loss: Tensor?) {
        self.batch = batch; self.pixelValues = pixelValues; self.labels = labels; self.softTargets = softTargets
        self.teacherLabels = teacherLabels; self.boolMaskedPos = boolMaskedPos; self.patchLabels = patchLabels
        self.patchLogits = patchLogits; self.logits = logits
        self.distillationLogits = distillationLogits; self.loss = loss
    }
}

extension ViTConfig: VisionModelConfig {
    public var architecture: String { head.rawValue }
    public var objective: VisionObjective {
        switch head {
        case .imageClassification: return .classification
        case .maskedImageModeling: return .maskedImageModeling
        case .distillation: return .distillation
        }
    }
}

extension ViT: VisionModel {
    /// `record(on:batch:objective:)`'s training graph (the classification heads' last block at the
    /// leading tokens only).
    public func recordVision(on tape: Tape, batch B: Int, objective: ViT.Objective) -> VisionGraph {
        let g = record(on: tape, batch: B, objective: objective)
        return VisionGraph(batch: g.batch, pixelValues: g.pixelValues, labels: g.labels, softTargets: g.softTargets,
                           teacherLabels: g.teacherLabels, boolMaskedPos: g.boolMaskedPos, logits: g.logits,
                           distillationLogits: g.distillationLogits, loss: g.loss)
    }
}
