import Foundation
import TandemAutograd
import TandemData
import TandemModels

/// The Vision Transformer (Dosovitskiy et al. 2021) on image shards, with three objectives: supervised
/// classification (ViTForImageClassification), SimMIM masked image modelling (Xie et al. 2022;
/// ViTForMaskedImageModeling) and DeiT hard distillation (Touvron et al. 2021;
/// DeiTForImageClassificationWithTeacher). See `VisionTask`.
public enum ViTFamily: ModelFamily {
    public static let name = "vit"
    public static let modelTypes = ["vit", "deit"]
    public static let objectives = ["classification", "masked_image_modeling", "distillation"]
    public static let batchInputs = ["pixel_values", "labels", "bool_masked_pos", "teacher_labels"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // DeiT's table (Touvron et al. 2021, Table 1): ViT-Ti/S/B at 224 px with 16-pixel patches, 64-wide
        // heads, 4x MLPs. Channels and labels come from the image shards.
        ("vit-tiny", fields(hidden: 192, layers: 12, image: 224, patch: 16)),
        ("vit-small", fields(hidden: 384, layers: 12, image: 224, patch: 16)),
        ("vit-base", fields(hidden: 768, layers: 12, image: 224, patch: 16)),
        // Small-image ViTs with 4-pixel patches: 7x7 patches of 28 px images (MNIST, Fashion-MNIST), 8x8 of
        // 32 px ones (CIFAR); vit-tiny-32 is issue 8's throughput model. vit-mini is narrower and shallower,
        // sized to train Fashion-MNIST on 2 cores in minutes.
        ("vit-tiny-28", fields(hidden: 192, layers: 12, image: 28, patch: 4)),
        ("vit-tiny-32", fields(hidden: 192, layers: 12, image: 32, patch: 4)),
        ("vit-mini-28", fields(hidden: 128, layers: 6, image: 28, patch: 4, heads: 4)),
        ("vit-mini-32", fields(hidden: 128, layers: 6, image: 32, patch: 4, heads: 4)),
    ]

    static func fields(hidden: Int, layers: Int, image: Int, patch: Int, heads: Int? = nil) -> [String: Any] {
        ["hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads ?? hidden / 64,
         "intermediate_size": 4 * hidden, "image_size": image, "patch_size": patch, "encoder_stride": patch,
         "layer_norm_eps": 1e-6, "qkv_bias": true]
    }

    /// The `model.<field>` keys a ViT config takes.
    static let fieldNames = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                             "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
                             "image_size", "patch_size", "num_channels", "qkv_bias", "encoder_stride"]

    /// The head an objective trains.
    static func head(objective: String?) -> ViTHead {
        switch objective ?? objectives[0] {
        case "masked_image_modeling": return .maskedImageModeling
        case "distillation": return .distillation
        default: return .imageClassification
        }
    }

    /// The preset's (or `--init-from` directory's) ViTConfig with `model.<field>` overrides, the head of
    /// `head`, and the shards' channels and class names unless the overrides set them.
    public static func config(preset name: String?, initFrom: String?, overrides: [String: ConfigValue], head: ViTHead,
                              channels: Int, classes: [String], file: String) throws -> ViTConfig {
        var fields: [String: Any]
        if let initFrom {
            fields = try ModelFields.read(directory: initFrom)
            for k in ["architectures", "id2label", "label2id", "num_labels", "model_type"] { fields[k] = nil }
        } else {
            fields = try ModelFields.preset(name ?? "", of: self, file: file)
        }
        fields["num_channels"] = channels
        fields["id2label"] = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (String($0.offset), $0.element) })
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        fields["architectures"] = [head.rawValue]
        if head == .distillation { fields["model_type"] = "deit" }
        do {
            let data = try JSONSerialization.data(withJSONObject: fields)
            return try JSONDecoder().decode(ViTConfig.self, from: data)
        } catch let e as ViTError {
            throw ConfigError("\(file): model: \(e.message)")
        } catch {
            throw ConfigError("\(file): invalid model fields: \(error)")
        }
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let d = config.data
        for (key, set) in [("data.visual_tokens", d.visualTokens != nil), ("data.eval_visual_tokens", d.evalVisualTokens != nil),
                           ("data.min_mask_patches", d.minMaskPatches != nil)] where set {
            throw ConfigError("\(config.file): \(key) is BEiT's masked image modeling (model_type beit); ViT's SimMIM reconstructs pixels")
        }
        let (train, eval) = try VisionOptions.datasets(config)
        let head = head(objective: config.train.objective)
        var teacher: PretrainedViT? = nil
        if head == .distillation {
            guard let path = config.train.teacher else {
                throw ConfigError("\(config.file): train.objective = distillation needs train.teacher (a ViT classifier checkpoint directory)")
            }
            do { teacher = try PretrainedViT.load(directory: path) { _ in } } catch { throw ConfigError("train.teacher: \(error)") }
        }
        let vit = try self.config(preset: initFrom == nil ? config.model.preset : nil, initFrom: initFrom,
                                  overrides: config.model.fields, head: head, channels: train.channels,
                                  classes: train.classNames, file: config.file)
        do {
            return try VisionTask<ViT>(config: vit, train: train, eval: eval, options: VisionOptions(config), teacher: teacher,
                                       seed: settings.seed)
        } catch let e as DataError {
            throw ConfigError("\(config.file): \(e)")
        }
    }

    /// `last_hidden_state` (B, NP + 1, C) and `logits` (B, num_labels) of ViTForImageClassification (DeiT:
    /// `logits` the mean of `cls_logits` and `distillation_logits`, as DeiTForImageClassificationWithTeacher)
    /// or `reconstruction` (B, channels, H, W) of ViTForMaskedImageModeling; the loss needs `labels`
    /// (classification), `labels` and `teacher_labels` (DeiT) or `bool_masked_pos` (MIM). For gradients the
    /// graph is the one training records (the classification heads' last block at the leading tokens).
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let vit = try PretrainedViT.load(directory: directory, log: log)
        let batch = try ViTBatch(path: path, config: vit.config)
        let c = vit.config
        if c.head == .maskedImageModeling, batch.boolMaskedPos != nil, c.encoderStride != c.patchSize {
            throw ViTError("\(path): bool_masked_pos needs encoder_stride (\(c.encoderStride)) "
                           + "equal to patch_size (\(c.patchSize)), so that the reconstruction has the input's size")
        }
        let tape = Tape()
        tape.training = false
        let g = vit.model.record(on: tape, batch: batch.batch, allTokens: !forGradients)
        batch.fill(g)
        let hasTargets: Bool, needed: String
        switch c.head {
        case .imageClassification: (hasTargets, needed) = (batch.labels != nil, "labels")
        case .distillation: (hasTargets, needed) = (batch.labels != nil && batch.teacherLabels != nil, "labels and teacher_labels")
        case .maskedImageModeling: (hasTargets, needed) = (batch.boolMaskedPos != nil, "bool_masked_pos")
        }
        return DebugModel(tape: tape, parameters: vit.model.parameters, arena: vit.arena, outputs: {
            var out: [(name: String, shape: [Int], values: [Float])] = [
                ("last_hidden_state", g.lastHiddenState.shape.dims, Array(g.lastHiddenState.values))]
            if let logits = g.logits, let distillation = g.distillationLogits {
                out.append(("logits", logits.shape.dims, zip(logits.values, distillation.values).map { ($0 + $1) / 2 }))
                out.append(("cls_logits", logits.shape.dims, Array(logits.values)))
                out.append(("distillation_logits", logits.shape.dims, Array(distillation.values)))
            } else if let logits = g.logits {
                out.append(("logits", logits.shape.dims, Array(logits.values)))
            }
            if let r = g.reconstruction { out.append(("reconstruction", r.shape.dims, Array(r.values))) }
            return out
        }, loss: hasTargets ? g.loss : nil, missingTargets: needed)
    }
}
