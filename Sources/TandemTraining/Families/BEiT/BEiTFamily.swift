import Foundation
import TandemAutograd
import TandemData
import TandemModels

/// BEiT (Bao et al. 2022) on image shards, through `VisionTask` with ViT's data pipeline, with two
/// objectives: `classification` (BeitForImageClassification trained from scratch or fine-tuned from a
/// BEiT checkpoint, `--init-from`, e.g. a BeitForMaskedImageModeling pre-trained one, whose visual-token
/// head is then ignored: crops, flips, mixup, cutmix, label smoothing, top-1 evaluation) and
/// `masked_image_modeling` (BeitForMaskedImageModeling pre-training: blockwise masks on the unaugmented
/// images, the masked patches' visual tokens from a tokenizer's file, `data.visual_tokens`, as targets).
public enum BEiTFamily: ModelFamily {
    public static let name = "beit"
    public static let modelTypes = ["beit"]
    public static let objectives = ["classification", "masked_image_modeling"]
    public static let batchInputs = ["pixel_values", "labels", "bool_masked_pos"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // BEiT-B/16 at 224 px as microsoft/beit-base-patch16-224 fine-tunes it: transformers' BeitConfig
        // defaults (layer scale 0.1, stochastic depth 0.1, mean pooling, no absolute positions) with a
        // relative position bias table in every layer. The defaults alone have no position information
        // at all (no absolute and no relative positions), which a model trained from scratch needs.
        ("beit-base", fields(hidden: 768, layers: 12, image: 224, patch: 16)),
        // Small-image BEiTs with 4-pixel patches (7x7 patches of 28 px images: MNIST, Fashion-MNIST),
        // shaped as vit-tiny-28 and vit-mini-28; beit-mini-28 trains on 2 cores in minutes.
        ("beit-tiny-28", fields(hidden: 192, layers: 12, image: 28, patch: 4)),
        ("beit-mini-28", fields(hidden: 128, layers: 6, image: 28, patch: 4, heads: 4)),
    ]

    static func fields(hidden: Int, layers: Int, image: Int, patch: Int, heads: Int? = nil) -> [String: Any] {
        ["hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads ?? hidden / 64,
         "intermediate_size": 4 * hidden, "image_size": image, "patch_size": patch, "use_relative_position_bias": true,
         "use_shared_relative_position_bias": false, "use_absolute_position_embeddings": false, "use_mask_token": false,
         "use_mean_pooling": true, "layer_scale_init_value": 0.1, "drop_path_rate": 0.1, "layer_norm_eps": 1e-12]
    }

    /// The `model.<field>` keys a BEiT config takes.
    static let fieldNames = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                             "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
                             "image_size", "patch_size", "num_channels", "use_absolute_position_embeddings",
                             "use_relative_position_bias", "use_shared_relative_position_bias", "layer_scale_init_value",
                             "drop_path_rate", "use_mean_pooling"]

    /// The preset's (or `--init-from` directory's) BEiTConfig with `model.<field>` overrides, the head,
    /// and the shards' channels and class names. Masked image modeling (`visualTokens`: the token file and
    /// its vocabulary) takes its vocab_size from the token file (a `model.vocab_size` override must agree) and
    /// uses the mask token.
    public static func config(preset name: String?, initFrom: String?, overrides: [String: ConfigValue], channels: Int,
                              classes: [String], file: String, visualTokens: (path: String, vocabSize: Int)? = nil) throws -> BEiTConfig {
        var fields: [String: Any]
        if let initFrom {
            fields = try ModelFields.read(directory: initFrom)
            for k in ["architectures", "id2label", "label2id", "num_labels", "model_type", "problem_type"] { fields[k] = nil }
        } else {
            fields = try ModelFields.preset(name ?? "", of: self, file: file)
        }
        fields["num_channels"] = channels
        fields["id2label"] = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (String($0.offset), $0.element) })
        if let tokens = visualTokens {
            if let v = overrides["vocab_size"], v.int != tokens.vocabSize {
                throw ConfigError("\(file): model.vocab_size = \(v.int.map(String.init) ?? "\(v)") disagrees with data.visual_tokens (\(tokens.path)), whose tokens come from a vocabulary of \(tokens.vocabSize)")
            }
            try ModelFields.merge(&fields, overrides, known: fieldNames + ["vocab_size"], file: file)
            fields["vocab_size"] = tokens.vocabSize
            fields["use_mask_token"] = true
            fields["architectures"] = [BEiTHead.maskedImageModeling.rawValue]
        } else {
            try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
            fields["architectures"] = [BEiTHead.imageClassification.rawValue]
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: fields)
            return try JSONDecoder().decode(BEiTConfig.self, from: data)
        } catch let e as BEiTError {
            throw ConfigError("\(file): model: \(e.message)")
        } catch let e as DecodingError {
            throw ConfigError("\(file): invalid model fields: \(describeDecodingError(e))")
        }
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let pretraining = config.train.objective == "masked_image_modeling"
        try checkObjectiveKeys(config, pretraining: pretraining)
        let (train, eval) = try VisionOptions.datasets(config)
        var tokens: (train: VisualTokens, eval: VisualTokens?)? = nil
        if pretraining, let path = config.data.visualTokens {
            tokens = (try VisualTokens(path: path, key: "data.visual_tokens"),
                      try config.data.evalVisualTokens.map { try VisualTokens(path: $0, key: "data.eval_visual_tokens") })
        }
        let beit = try self.config(preset: initFrom == nil ? config.model.preset : nil, initFrom: initFrom,
                                   overrides: config.model.fields, channels: train.channels, classes: train.classNames,
                                   file: config.file, visualTokens: tokens.map { ($0.train.path, $0.train.vocabSize) })
        var options = VisionOptions(config)
        if pretraining { options.augment = false }
        do {
            return try VisionTask<BEiT>(config: beit, train: train, eval: eval, options: options, teacher: nil,
                                        seed: settings.seed, visualTokens: tokens)
        } catch let e as DataError {
            throw ConfigError("\(config.file): \(e)")
        } catch let e as BEiTError {
            throw ConfigError("\(config.file): model: \(e.message)")
        }
    }

    /// The keys an objective reads or refuses, before any file is opened. Masked image modeling needs
    /// data.visual_tokens (and data.eval_visual_tokens with data.eval) and refuses what would
    /// desynchronise the images from their tokens (crops and flips, mixup, cutmix) or does not apply
    /// (SimMIM's mask patches, label smoothing); classification refuses the token and block-mask keys.
    static func checkObjectiveKeys(_ config: TrainingConfig, pretraining: Bool) throws {
        let d = config.data, file = config.file
        guard pretraining else {
            for (key, set) in [("data.visual_tokens", d.visualTokens != nil), ("data.eval_visual_tokens", d.evalVisualTokens != nil),
                               ("data.min_mask_patches", d.minMaskPatches != nil), ("data.mask_ratio", d.maskRatio != nil),
                               ("data.mask_patch_size", d.maskPatchSize != nil)] where set {
                throw ConfigError("\(file): \(key) is read by train.objective = masked_image_modeling only (this run classifies)")
            }
            return
        }
        guard d.visualTokens != nil else {
            throw ConfigError("\(file): train.objective = masked_image_modeling needs data.visual_tokens: the visual tokens of data.train's images (the token file `tandem tokenize-images` writes)")
        }
        if d.eval != nil, d.evalVisualTokens == nil {
            throw ConfigError("\(file): data.eval_visual_tokens is required with data.eval for masked_image_modeling: the visual tokens of data.eval's images (\(d.eval!))")
        }
        if d.eval == nil, d.evalVisualTokens != nil {
            throw ConfigError("\(file): data.eval_visual_tokens is set but data.eval is not: the tokens belong to the held-out images")
        }
        if d.augment == true {
            throw ConfigError("\(file): data.augment must be false for masked_image_modeling: the visual tokens in data.visual_tokens were computed on the unaugmented images, so random crops and flips would desynchronise the pixels from their tokens")
        }
        if d.mixup > 0 || d.cutmix > 0 {
            throw ConfigError("\(file): data.mixup and data.cutmix must be 0 for masked_image_modeling: mixed images have no visual tokens (the tokens in data.visual_tokens are those of the unmixed images)")
        }
        if d.maskPatchSize != nil {
            throw ConfigError("\(file): data.mask_patch_size is SimMIM's (vit); BEiT masks blocks of patches: data.mask_ratio and data.min_mask_patches")
        }
        if config.train.labelSmoothing > 0 {
            throw ConfigError("\(file): train.label_smoothing applies to classification; masked_image_modeling's cross-entropy has hard visual-token targets")
        }
    }

    /// `last_hidden_state` (B, NP + 1, C) and, for BeitForImageClassification, `pooler_output` (B, C) and
    /// `logits` (B, num_labels), or for BeitForMaskedImageModeling `logits` (B, NP, vocab_size) of every
    /// patch; the loss needs `labels` (classification) or `labels` and `bool_masked_pos` (masked image
    /// modeling). Training and `debug` record the same graph.
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let beit = try PretrainedBEiT.load(directory: directory, log: log)
        let batch = try BEiTBatch(path: path, config: beit.config)
        let tape = Tape()
        tape.training = false
        let g = beit.model.record(on: tape, batch: batch.batch)
        batch.fill(g)
        let hasTargets: Bool, needed: String
        switch beit.config.head {
        case .imageClassification: (hasTargets, needed) = (batch.labels != nil, "labels")
        case .maskedImageModeling: (hasTargets, needed) = (batch.labels != nil && batch.boolMaskedPos != nil, "labels and bool_masked_pos")
        }
        return DebugModel(tape: tape, parameters: beit.model.parameters, arena: beit.arena, outputs: {
            var out: [(name: String, shape: [Int], values: [Float])] = [
                ("last_hidden_state", g.lastHiddenState.shape.dims, Array(g.lastHiddenState.values))]
            if let pooled = g.pooled { out.append(("pooler_output", pooled.shape.dims, Array(pooled.values))) }
            out.append(("logits", g.logits.shape.dims, Array(g.logits.values)))
            return out
        }, loss: hasTargets ? g.loss : nil, missingTargets: needed)
    }
}
