import TandemAutograd
import TandemKernels
import TandemNN

/// ViTForImageClassification's `classifier` on the [CLS] token, or DeiTForImageClassificationWithTeacher's
/// `cls_classifier` and `distillation_classifier` on the [CLS] and distillation tokens (Touvron et al.
/// 2021). The loss is the cross-entropy of the [CLS] logits with the labels (with label smoothing, or
/// against soft targets under mixup and cutmix); DeiT's hard distillation averages it with the
/// cross-entropy of the distillation logits with a teacher's predicted classes.
public final class ViTClassifierHead {
    public let config: ViTConfig
    /// (num_labels, C) and (num_labels): `classifier`, DeiT's `cls_classifier`.
    public let classifier: Linear
    /// (num_labels, C) and (num_labels), DeiT only.
    public let distillationClassifier: Linear?

    public init(_ config: ViTConfig, scope root: ParameterScope, distillation: Bool) {
        self.config = config
        let C = config.hiddenSize, K = config.numLabels, init_ = ParameterInit.normal(std: config.initializerRange)
        classifier = Linear(root(distillation ? "cls_classifier" : "classifier"), inputs: C, outputs: K, initializer: init_)
        distillationClassifier = distillation
            ? Linear(root("distillation_classifier"), inputs: C, outputs: K, initializer: init_) : nil
    }

    /// The head's parameters in registration order.
    public var parameters: [Parameter] {
        ([classifier] + (distillationClassifier.map { [$0] } ?? [])).flatMap { [$0.weight] + ($0.bias.map { [$0] } ?? []) }
    }

    /// Records the head on `hidden`, (B, R, C) with R `rowsPerImage` rows per image, the leading ones
    /// the [CLS] (and distillation) tokens.
    func record(on tape: Tape, pixels: Tensor, hidden: Tensor, rowsPerImage R: Int, objective: ViT.Objective) -> ViT.Graph {
        let B = pixels.shape[0]
        /// Row `offset` of every image's hidden states, (B, C).
        func token(_ offset: Int) -> Tensor {
            let rows = tape.intInput(count: B)
            for b in 0..<B { rows[b] = Int32(b * R + offset) }
            return tape.gatherRows(hidden, rows: rows, count: B)
        }
        let logits = classifier(token(0), on: tape)
        let (classification, labels, targets) = recordClassificationLoss(on: tape, logits: logits, objective: objective)
        var loss = classification
        var distillationLogits: Tensor? = nil, teacherLabels: UnsafeMutablePointer<Int32>? = nil
        if let distillationClassifier {
            let d = distillationClassifier(token(1), on: tape)
            let teacher = tape.intInput(count: B)
            teacher.update(repeating: -100, count: B)
            loss = tape.weightedSum([(loss, 0.5), (tape.crossEntropy(d, targets: teacher), 0.5)])
            distillationLogits = d
            teacherLabels = teacher
        }
        return ViT.Graph(batch: B, pixelValues: pixels, labels: labels, softTargets: targets, teacherLabels: teacherLabels,
                         boolMaskedPos: nil, lastHiddenState: hidden, logits: logits,
                         distillationLogits: distillationLogits, reconstruction: nil, loss: loss)
    }
}

/// The image classifiers' loss on `logits` (B, K): the cross-entropy with (B) labels (-100 when recorded; label
/// smoothing as `objective` says), or against (B, K) soft targets (zeros when recorded) when the objective asks
/// for them (mixup, cutmix). Returns the loss and the inputs the caller fills.
func recordClassificationLoss(on tape: Tape, logits: Tensor, objective: ViT.Objective)
    -> (loss: Tensor, labels: UnsafeMutablePointer<Int32>, softTargets: Tensor?) {
    let B = logits.shape[0], K = logits.shape[1]
    let labels = tape.intInput(count: B)
    labels.update(repeating: -100, count: B)
    guard objective.softTargets else {
        return (tape.crossEntropy(logits, targets: labels, labelSmoothing: objective.labelSmoothing), labels, nil)
    }
    let t = tape.input(Shape(B, K))
    t.data.update(repeating: 0, count: t.count)
    return (tape.softTargetCrossEntropy(logits, targets: t), labels, t)
}

/// SimMIM's decoder (Xie et al. 2022; ViTForMaskedImageModeling's `decoder`): a 1x1 convolution from C to
/// encoder_stride² x num_channels channels on the patch tokens and a pixel shuffle back to an image; the
/// loss is the L1 distance to the input on the masked pixels, averaged over them and the channels.
public final class SimMIMDecoder {
    public let config: ViTConfig
    /// (encoder_stride² channels, C, 1, 1): `decoder.0.weight`
    public let weight: Parameter
    /// (encoder_stride² channels)
    public let bias: Parameter

    public init(_ config: ViTConfig, scope decoder: ParameterScope) {
        self.config = config
        let r = config.encoderStride, C = config.hiddenSize
        weight = decoder.parameter("weight", Shape(r * r * config.numChannels, C, 1, 1),
                                   .normal(std: config.initializerRange))
        bias = decoder.parameter("bias", Shape(r * r * config.numChannels), .zeros, decays: false)
    }

    /// Records the decoder on every patch token of `hidden`, (B, T, C); the loss needs encoder_stride equal
    /// to patch_size (the reconstruction then has the input's size, which HF also requires).
    func record(on tape: Tape, pixels: Tensor, mask: Tensor, hidden: Tensor) -> ViT.Graph {
        let B = pixels.shape[0], NP = config.numPatches, T = config.sequenceLength, C = config.hiddenSize
        let rows = tape.intInput(count: B * NP)
        for b in 0..<B { for i in 0..<NP { rows[b * NP + i] = Int32(b * T + 1 + i) } }
        let tokens = tape.gatherRows(hidden, rows: rows, count: B * NP).reshaped(Shape(B, NP, C))
        let r = config.encoderStride, side = config.gridSize * r
        let channelsLast = tape.linear(tokens, weight: weight, bias: bias)
        let reconstruction = tape.unpatch(channelsLast, channels: config.numChannels, height: side, width: side, patch: r)
        let loss = r == config.patchSize
            ? tape.maskedL1Loss(reconstruction, target: pixels, mask: mask, patch: config.patchSize) : nil
        return ViT.Graph(batch: B, pixelValues: pixels, labels: nil, softTargets: nil, teacherLabels: nil,
                         boolMaskedPos: mask, lastHiddenState: hidden, logits: nil, distillationLogits: nil,
                         reconstruction: reconstruction, loss: loss)
    }
}
