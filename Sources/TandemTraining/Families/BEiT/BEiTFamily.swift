import Foundation
import TandemAutograd
import TandemData
import TandemModels

/// BEiT (Bao et al. 2022) on image shards: transformers' BeitForImageClassification trained from scratch
/// or fine-tuned from a BEiT checkpoint (`--init-from`, e.g. a BeitForMaskedImageModeling pre-trained one,
/// whose visual-token head is then ignored), through `VisionTask` with ViT's data pipeline: crops, flips,
/// mixup, cutmix, label smoothing, top-1 evaluation. Masked image modeling is not trained: its targets
/// are the visual tokens of a dVAE tokenizer that Tandem does not have; `tandem debug` still runs
/// BeitForMaskedImageModeling on a batch file that holds them.
public enum BEiTFamily: ModelFamily {
    public static let name = "beit"
    public static let modelTypes = ["beit"]
    public static let objectives = ["classification"]
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

    /// The preset's (or `--init-from` directory's) BEiTConfig with `model.<field>` overrides, the
    /// classification head, and the shards' channels and class names.
    public static func config(preset name: String?, initFrom: String?, overrides: [String: ConfigValue], channels: Int,
                              classes: [String], file: String) throws -> BEiTConfig {
        var fields: [String: Any]
        if let initFrom {
            fields = try ModelFields.read(directory: initFrom)
            for k in ["architectures", "id2label", "label2id", "num_labels", "model_type", "problem_type"] { fields[k] = nil }
        } else {
            fields = try ModelFields.preset(name ?? "", of: self, file: file)
        }
        fields["num_channels"] = channels
        fields["id2label"] = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (String($0.offset), $0.element) })
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        fields["architectures"] = [BEiTHead.imageClassification.rawValue]
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
        let (train, eval) = try VisionOptions.datasets(config)
        let beit = try self.config(preset: initFrom == nil ? config.model.preset : nil, initFrom: initFrom,
                                   overrides: config.model.fields, channels: train.channels, classes: train.classNames,
                                   file: config.file)
        do {
            return try VisionTask<BEiT>(config: beit, train: train, eval: eval, options: VisionOptions(config), teacher: nil,
                                        seed: settings.seed)
        } catch let e as DataError {
            throw ConfigError("\(config.file): \(e)")
        } catch let e as BEiTError {
            throw ConfigError("\(config.file): model: \(e.message)")
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
