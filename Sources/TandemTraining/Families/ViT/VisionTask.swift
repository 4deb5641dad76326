import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// What a vision run (ViT, BEiT) does with its images besides the model: augmentation, batch mixing,
/// label smoothing, SimMIM's and BEiT's masking (config keys `data.augment`, `data.crop_scale`,
/// `data.hflip`, `data.mixup`, `data.cutmix`, `data.mix_switch_prob`, `train.label_smoothing`,
/// `data.mask_ratio`, `data.mask_patch_size`, `data.min_mask_patches`).
public struct VisionOptions {
    public var augment = true
    public var cropScale: Float = 0.08
    public var horizontalFlip = true
    public var mixing = MixingOptions()
    /// The masked fraction; nil: the objective's default, 0.6 for SimMIM, 0.4 for BEiT.
    public var maskRatio: Float?
    /// BEiT's blockwise masking: the fewest patches of a block; nil: 16 (BEiT's) on grids of 196 patches
    /// or more, 4 on smaller ones (16 of a 7x7 grid's 49 would leave one or two blocks per image).
    public var minMaskPatches: Int?
    /// nil: 32 pixels when that tiles the image and is a multiple of the patch, else the patch.
    public var maskPatchSize: Int?
    public init() {}

    /// The options a training config sets.
    public init(_ config: TrainingConfig) {
        augment = config.data.augment ?? true
        cropScale = Float(config.data.cropScale)
        horizontalFlip = config.data.hflip
        mixing = MixingOptions(mixupAlpha: Float(config.data.mixup), cutmixAlpha: Float(config.data.cutmix),
                               switchProbability: Float(config.data.mixSwitchProb),
                               labelSmoothing: Float(config.train.labelSmoothing))
        maskRatio = config.data.maskRatio.map { Float($0) }
        maskPatchSize = config.data.maskPatchSize
        minMaskPatches = config.data.minMaskPatches
    }

    /// The image shards of `data.train` and, when set, `data.eval`; an unreadable one is an error naming
    /// the key.
    public static func datasets(_ config: TrainingConfig) throws -> (train: ImageDataset, eval: ImageDataset?) {
        func dataset(_ key: String, _ path: String?) throws -> ImageDataset? {
            guard let path else { return nil }
            do { return try ImageDataset(directory: path) } catch { throw ConfigError("\(key): \(error)") }
        }
        return (try dataset("data.train", config.data.train)!, try dataset("data.eval", config.data.eval))
    }
}

/// Training a `VisionModel` on image shards (`prepare-images`) with one of four objectives, chosen by
/// the model's head: supervised classification (ViTForImageClassification, BeitForImageClassification;
/// top-1 evaluation), SimMIM masked image modelling (ViTForMaskedImageModeling; masked-pixel L1,
/// evaluated on held-out images with fixed masks), DeiT hard distillation
/// (DeiTForImageClassificationWithTeacher; the teacher, a ViT classifier from a checkpoint, labels every
/// augmented image with its predicted class) and BEiT's masked image modeling
/// (BeitForMaskedImageModeling: the unaugmented image, BEiT's blockwise mask, and the visual tokens of a
/// `VisualTokens` file as the masked patches' targets; evaluated by their cross-entropy and top-1 on
/// held-out images with fixed masks).
///
/// Every random choice (crop, flip, mix, mask) is a function of (seed, epoch, sample) or (seed, epoch,
/// global micro-batch), so a resumed run sees the same views.
public final class VisionTask<Model: VisionModel>: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: Model
    public let train: ImageDataset
    public let eval: ImageDataset?
    public let options: VisionOptions
    private let augmenter: ImageAugmenter
    private let evalAugmenter: ImageAugmenter?
    private let mixer: BatchMixer?
    private let masking: PatchMasking?
    private let blockMasking: BlockMasking?
    /// BEiT's masked image modeling: the visual tokens of data.train's and data.eval's images.
    public let visualTokens: (train: VisualTokens, eval: VisualTokens?)?
    private let maskScratch: UnsafeMutablePointer<Int>
    private let teacher: PretrainedViT?
    private var teacherGraph: (tape: Tape, graph: ViT.Graph, batch: Int)?
    private var graph: VisionGraph?
    private var microBatch = 0
    /// Whether the graph's slot b holds a real eval sample (the last eval batch may be padded).
    private var slotValid: [Bool] = []

    /// `visualTokens` are BEiT's masked image modeling targets (required for that objective, ignored by the
    /// others), checked against the image directories and the model's patch grid.
    public init(config: Model.Config, train: ImageDataset, eval: ImageDataset?, options: VisionOptions,
                teacher: PretrainedViT?, seed: UInt64, visualTokens: (train: VisualTokens, eval: VisualTokens?)? = nil) throws {
        try config.validate()
        for (name, data) in [("data.train", train)] + (eval.map { [("data.eval", $0)] } ?? []) {
            guard data.channels == config.numChannels else {
                throw ConfigError("\(name): \(data.directory) holds \(data.channels)-channel images but model.num_channels is \(config.numChannels)")
            }
            if config.objective == .classification || config.objective == .distillation, data.classNames.count != config.numLabels {
                throw ConfigError("\(name): \(data.directory) has \(data.classNames.count) classes but the model has \(config.numLabels) labels")
            }
        }
        if let eval, eval.classNames != train.classNames {
            throw ConfigError("data.eval: \(eval.directory) names its classes differently from data.train (\(train.directory))")
        }
        if let teacher {
            let t = teacher.config
            guard t.head == .imageClassification, t.imageSize == config.imageSize, t.numChannels == config.numChannels,
                  t.numLabels == config.numLabels else {
                throw ConfigError("train.teacher: the teacher must be a ViTForImageClassification for \(config.imageSize) px, \(config.numChannels)-channel images and \(config.numLabels) classes (it is \(t.head.rawValue), \(t.imageSize) px, \(t.numChannels) channels, \(t.numLabels) classes)")
            }
        }
        if config.objective == .visualTokens {
            guard let tokens = visualTokens else { throw ConfigError("masked image modeling with visual tokens needs data.visual_tokens") }
            guard config.imageSize % config.patchSize == 0 else { throw ConfigError("image_size \(config.imageSize) is not a multiple of patch_size \(config.patchSize)") }
            let grid = config.imageSize / config.patchSize
            try tokens.train.check(images: train, imagesKey: "data.train", grid: grid)
            if let eval {
                guard let e = tokens.eval else { throw ConfigError("data.eval_visual_tokens: required with data.eval for masked image modeling (the visual tokens of \(eval.directory))") }
                try e.check(images: eval, imagesKey: "data.eval", grid: grid)
            }
            self.visualTokens = tokens
        } else {
            self.visualTokens = nil
        }
        var objective = ViT.Objective(labelSmoothing: options.mixing.labelSmoothing)
        objective.softTargets = options.mixing.isActive
        self.objective = objective
        model = try Model(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        self.train = train
        self.eval = eval
        self.options = options
        self.teacher = teacher
        let S = config.imageSize
        let augmentation = AugmentationOptions(outputSize: S, randomResizedCrop: options.augment,
                                               scaleMin: options.cropScale, horizontalFlip: options.augment && options.horizontalFlip,
                                               mean: train.mean, std: train.std)
        augmenter = ImageAugmenter(options: augmentation, inputHeight: train.height, inputWidth: train.width,
                                   channels: train.channels, seed: seed)
        evalAugmenter = eval.map {
            ImageAugmenter(options: augmentation, inputHeight: $0.height, inputWidth: $0.width, channels: $0.channels, seed: seed)
        }
        mixer = options.mixing.isActive && config.objective != .maskedImageModeling && config.objective != .visualTokens
            ? BatchMixer(options: options.mixing, classes: config.numLabels, channels: config.numChannels, size: S, seed: seed)
            : nil
        if config.objective == .maskedImageModeling {
            let P = config.patchSize
            let size = options.maskPatchSize ?? (S % 32 == 0 && 32 % P == 0 ? 32 : P)
            masking = try PatchMasking(imageSize: S, patchSize: P, maskPatchSize: size, ratio: options.maskRatio ?? 0.6, seed: seed)
        } else {
            masking = nil
        }
        if config.objective == .visualTokens {
            let grid = S / config.patchSize, patches = grid * grid
            let ratio = options.maskRatio ?? 0.4
            let count = max(1, Int((Double(ratio) * Double(patches)).rounded()))
            let minimum = options.minMaskPatches ?? (patches >= 196 ? 16 : 4)
            do {
                blockMasking = try BlockMasking(height: grid, width: grid, numMaskingPatches: count, minNumPatches: minimum, seed: seed)
            } catch {
                throw ConfigError("data.mask_ratio (\(ratio): \(count) of \(patches) patches) and data.min_mask_patches (\(minimum)): \(error)")
            }
        } else {
            blockMasking = nil
        }
        maskScratch = .allocate(capacity: max(config.numPatches, 1))
    }

    deinit { maskScratch.deallocate() }

    private let objective: ViT.Objective

    public var sampleCount: Int { train.count }
    public var tokensPerSample: Int { model.config.sequenceLength }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.recordVision(on: tape, batch: B, objective: objective)
        graph = g
        microBatch = B
        slotValid = Array(repeating: true, count: B)
        // The teacher's forward-only graph is kept when the trainer records the student again with the same
        // micro-batch (`Tape.recordGraph` records twice), rather than held twice while the new one is made.
        if let teacher, teacherGraph.map({ $0.batch != B || $0.tape.precision != tape.precision }) ?? true {
            teacherGraph = nil
            let t = Tape()
            t.training = false
            t.recordsGradients = false
            t.precision = tape.precision
            teacherGraph = (t, teacher.model.record(on: t, batch: B), B)
            t.seal()
        }
        guard let loss = g.loss else { preconditionFailure("vision graphs for training have a loss (ViT: encoder_stride = patch_size)") }
        return loss
    }

    private var imageFloats: Int { model.config.numChannels * model.config.imageSize * model.config.imageSize }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        let n = imageFloats
        let NP = model.config.numPatches
        for (b, i) in indices.enumerated() {
            if let blockMasking, let tokens = visualTokens?.train, let m = g.boolMaskedPos, let labels = g.patchLabels {
                // BEiT: the tokens were computed on the unaugmented image, so the pixels are its eval view.
                augmenter.eval(train.pixels(i), into: g.pixelValues.data + b * n)
                blockMasking.fill(epoch: epoch, sample: i, into: m.data + b * NP)
                tokens.copyRow(i, into: labels + b * NP)
                continue
            }
            augmenter.train(train.pixels(i), epoch: epoch, sample: i, into: g.pixelValues.data + b * n)
            g.labels?[b] = train.label(i)
            if let masking, let m = g.boolMaskedPos {
                masking.fill(epoch: epoch, sample: i, into: m.data + b * NP, scratch: maskScratch)
            }
        }
        if let mixer, let labels = g.labels, let targets = g.softTargets {
            mixer.mix(pixels: g.pixelValues.data, labels: labels, batch: microBatch, epoch: epoch,
                      batchIndex: microBatchIndex, targets: targets.data)
        }
        labelByTeacher(g)
    }

    /// DeiT's hard distillation: the teacher's predicted class of each (augmented, mixed) image.
    private func labelByTeacher(_ g: VisionGraph) {
        guard let (tape, t, _) = teacherGraph, let targets = g.teacherLabels, let logits = t.logits else { return }
        t.pixelValues.data.update(from: g.pixelValues.data, count: g.pixelValues.count)
        tape.forward()
        let K = model.config.numLabels
        for b in 0..<microBatch { targets[b] = Int32(argmax(logits.data + b * K, K)) }
    }

    /// `VisionModel.trainingFLOPsPerImage`: the work counted where the training graph does it (ViT: the
    /// last block's queries and MLP at the leading tokens only, for the classification heads), as BERT
    /// counts its MLM logits only at the gathered positions; counting work that is not done would
    /// overstate MFU.
    public var trainingFLOPsPerSample: Double { model.trainingFLOPsPerImage }

    public var modelDescription: String {
        let c = model.config
        return "\(c.architecture) layers=\(c.numHiddenLayers) hidden=\(c.hiddenSize) heads=\(c.numAttentionHeads) image=\(c.imageSize)px patch=\(c.patchSize) channels=\(c.numChannels) labels=\(c.numLabels) params=\(arena.parameterCount)"
    }

    public var hfConfigJSON: String {
        ModelFields.configJSON(model.config)
    }

    /// The micro-batch in the graph as an HF batch file: `pixel_values` (after augmentation and mixing),
    /// `labels` (the hard labels; for DeiT the ground truth; for BEiT's masked image modeling every
    /// patch's visual token, (B, NP)) and, for MIM, `bool_masked_pos`.
    public func writeBatch(to path: String) throws {
        guard let g = graph else { return }
        var w = SafeTensorsWriter()
        w.add("pixel_values", shape: g.pixelValues.shape.dims, borrowing: UnsafeBufferPointer(g.pixelValues.values))
        if let labels = g.labels { w.add("labels", shape: [microBatch], int64s: (0..<microBatch).map { Int64(labels[$0]) }) }
        if let labels = g.patchLabels {
            let NP = model.config.numPatches
            w.add("labels", shape: [microBatch, NP], int64s: (0..<microBatch * NP).map { Int64(labels[$0]) })
        }
        if let m = g.boolMaskedPos {
            w.add("bool_masked_pos", shape: m.shape.dims, int64s: (0..<m.count).map { Int64(m.data[$0]) })
        }
        try w.write(toPath: path)
    }

    /// Fills the model from a transformers ViT or BEiT directory (`--init-from`): the encoder must match;
    /// a head or mask token the checkpoint lacks keeps its init, and tensors this head has no use for (a
    /// SimMIM decoder or BEiT's visual-token head when fine-tuning) are ignored; `log` hears both.
    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        let path = (directory as NSString).appendingPathComponent("model.safetensors")
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw ConfigError("--init-from: \(error)") }
        let report = try model.load(shapes: file.tensors.mapValues(\.shape), origin: path) { name, into in
            try file.copyFloats(name, into: into)
        }
        if !report.keptInit.isEmpty { log("\(path): \(report.keptInit.count) parameters keep their init: \(report.keptInit.joined(separator: ", "))") }
        if !report.ignored.isEmpty { log("\(path): ignored \(report.ignored.joined(separator: ", "))") }
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { eval?.count ?? 0 }
    public var padsEvaluation: Bool { true }

    /// Eval views are deterministic: a plain resize and normalisation, and for MIM masks drawn with
    /// epoch -1 (never a training epoch). An index of -1 pads the last batch and is not counted.
    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let g = graph, let eval, let evalAugmenter else { return }
        let n = imageFloats, K = model.config.numLabels, NP = model.config.numPatches
        for (b, i) in indices.enumerated() {
            slotValid[b] = i >= 0
            let index = max(i, 0)
            evalAugmenter.eval(eval.pixels(index), into: g.pixelValues.data + b * n)
            if let blockMasking, let tokens = visualTokens?.eval, let m = g.boolMaskedPos, let labels = g.patchLabels {
                let row = m.data + b * NP
                blockMasking.fill(epoch: -1, sample: index, into: row)
                tokens.copyRow(index, into: labels + b * NP)
                if i < 0 {
                    row.update(repeating: 0, count: NP)
                    (labels + b * NP).update(repeating: -100, count: NP)
                }
                continue
            }
            g.labels?[b] = i >= 0 ? eval.label(index) : -100
            if let t = g.softTargets {
                let row = t.data + b * K
                row.update(repeating: 0, count: K)
                if i >= 0 { row[Int(eval.label(index))] = 1 }
            }
            if let masking, let m = g.boolMaskedPos {
                let row = m.data + b * model.config.numPatches
                masking.fill(epoch: -1, sample: index, into: row, scratch: maskScratch)
                if i < 0 { row.update(repeating: 0, count: model.config.numPatches) }
            }
        }
        labelByTeacher(g)
    }

    /// Classification: loss sum, correct, count (and for DeiT the [CLS]-head and distillation-head
    /// correct counts, the reported top-1 being HF's averaged logits). SimMIM: loss x batches, batches.
    /// BEiT's masked image modeling: the masked patches' cross-entropy sum, their correct top-1 count,
    /// their count.
    public var evalStatisticsCount: Int { 5 }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        if let logits = g.patchLogits, let labels = g.patchLabels, let m = g.boolMaskedPos {
            let NP = model.config.numPatches, V = logits.shape.dims.last!
            for b in 0..<microBatch where slotValid[b] {
                for p in 0..<NP where m.data[b * NP + p] != 0 && labels[b * NP + p] >= 0 {
                    let row = logits.data + (b * NP + p) * V, y = Int(labels[b * NP + p])
                    s[0] += logSumExp(row, count: V) - Double(row[y])
                    if argmax(row, V) == y { s[1] += 1 }
                    s[2] += 1
                }
            }
            return
        }
        guard let logits = g.logits, let labels = g.labels else {
            // Padded slots have empty masks, so the batch's loss is the mean over its real masked pixels.
            if let loss = g.loss { s[0] += Double(loss.data[0]); s[2] += 1 }
            return
        }
        let K = model.config.numLabels
        for b in 0..<microBatch where slotValid[b] && labels[b] >= 0 {
            let row = logits.data + b * K, y = Int(labels[b])
            var predicted = argmax(row, K)
            if let d = g.distillationLogits {
                let dRow = d.data + b * K
                var best = 0
                for k in 1..<K where row[k] + dRow[k] > row[best] + dRow[best] { best = k }
                predicted = best
                if argmax(row, K) == y { s[3] += 1 }
                if argmax(dRow, K) == y { s[4] += 1 }
            }
            // Cross-entropy of the [CLS] head with the true label, in Double.
            s[0] += logSumExp(row, count: K) - Double(row[y])
            if predicted == y { s[1] += 1 }
            s[2] += 1
        }
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        let n = max(s[2], 1)
        switch model.config.objective {
        case .maskedImageModeling:
            return [("eval_reconstruction_loss", s[0] / n)]
        case .visualTokens:
            return [("eval_mim_loss", s[0] / n), ("eval_mim_accuracy", s[1] / n)]
        case .classification:
            return [("eval_loss", s[0] / n), ("eval_top1", s[1] / n)]
        case .distillation:
            return [("eval_loss", s[0] / n), ("eval_top1", s[1] / n), ("eval_top1_cls", s[3] / n),
                    ("eval_top1_distillation", s[4] / n)]
        }
    }
}
