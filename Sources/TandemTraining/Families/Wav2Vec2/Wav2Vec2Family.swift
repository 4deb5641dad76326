import Foundation
import TandemData
import TandemKernels
import TandemModels

/// wav2vec 2.0 (`Wav2Vec2ForPreTraining`, `Wav2Vec2ForCTC`) on audio shards made by `tandem prepare-audio`:
/// self-supervised pre-training (`train.objective: pretraining`) or CTC fine-tuning over a character
/// vocabulary (`ctc`, the default), from scratch or from a pre-trained checkpoint (`--init-from`).
public enum Wav2Vec2Family: ModelFamily {
    public static let name = "wav2vec2"
    public static let modelTypes = ["wav2vec2"]
    public static let objectives = ["ctc", "pretraining"]
    public static let batchInputs = ["input_values", "attention_mask", "labels", "mask_time_indices", "sampled_negative_indices"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // facebook/wav2vec2-base: HF's defaults (7 convolutions of 512 channels, 12 post-LN layers of 768).
        ("wav2vec2-base", [:]),
        // facebook/wav2vec2-large-lv60's shape: layer norms on every convolution, stable layer norm, 24 x 1024.
        ("wav2vec2-large", ["hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                            "feat_extract_norm": "layer", "do_stable_layer_norm": true, "conv_bias": true,
                            "codevector_dim": 768, "proj_codevector_dim": 768]),
        // A small model for two cores: the base feature encoder at 256 channels, 6 layers of 384.
        ("wav2vec2-small", ["hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 6, "intermediate_size": 1536,
                            "conv_dim": [256, 256, 256, 256, 256, 256, 256], "codevector_dim": 256, "proj_codevector_dim": 128,
                            "num_codevectors_per_group": 160, "num_negatives": 50]),
        // Tests: a few channels and one layer.
        ("wav2vec2-tiny", ["hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                           "conv_dim": [16, 16, 16, 16, 16, 16, 16], "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4,
                           "codevector_dim": 16, "proj_codevector_dim": 16, "num_codevectors_per_group": 8, "num_negatives": 10]),
    ]

    static let fieldNames = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                             "hidden_act", "hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout",
                             "feat_quantizer_dropout", "final_dropout", "layerdrop", "initializer_range", "layer_norm_eps",
                             "feat_extract_norm", "feat_extract_activation", "conv_bias", "num_conv_pos_embeddings",
                             "num_conv_pos_embedding_groups", "do_stable_layer_norm", "apply_spec_augment", "mask_time_prob",
                             "mask_time_length", "mask_time_min_masks", "mask_feature_prob", "mask_feature_length",
                             "mask_feature_min_masks", "num_codevectors_per_group",
                             "num_codevector_groups", "contrastive_logits_temperature", "num_negatives", "codevector_dim",
                             "proj_codevector_dim", "diversity_loss_weight", "ctc_loss_reduction", "ctc_zero_infinity", "pad_token_id"]

    /// The preset's (or a model directory's) config with `model.<field>` overrides and the objective's head.
    public static func config(preset name: String?, initFrom: String?, overrides: [String: ConfigValue], objective: String,
                              vocabSize: Int, file: String) throws -> Wav2Vec2Config {
        var fields = try initFrom.map { try ModelFields.read(directory: $0) } ?? ModelFields.preset(name ?? "", of: self, file: file)
        fields["model_type"] = nil
        fields["architectures"] = [objective == "pretraining" ? Wav2Vec2Head.preTraining.rawValue : Wav2Vec2Head.ctc.rawValue]
        if objective == "ctc" { fields["vocab_size"] = vocabSize }
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        let c: Wav2Vec2Config = try ModelFields.decode(fields, file: file)
        if objective == "pretraining" && !(c.maskTimeProb > 0 && c.applySpecAugment) {
            throw ConfigError("\(file): pre-training masks nothing with model.mask_time_prob \(c.maskTimeProb) and apply_spec_augment \(c.applySpecAugment); give mask_time_prob > 0 (wav2vec 2.0 uses 0.65)")
        }
        if objective == "ctc" && c.vocabSize != vocabSize {
            throw ConfigError("\(file): model.vocab_size \(c.vocabSize) differs from the character vocabulary's \(vocabSize) tokens")
        }
        return c
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let objective = config.train.objective ?? "ctc"
        let vocabulary: CharacterVocabulary
        if let path = config.data.vocab {
            do { vocabulary = try CharacterVocabulary(path: path) } catch { throw ConfigError("data.vocab: \(error)") }
        } else if let initFrom, FileManager.default.fileExists(atPath: (initFrom as NSString).appendingPathComponent("vocab.json")) {
            vocabulary = try CharacterVocabulary(path: (initFrom as NSString).appendingPathComponent("vocab.json"))
        } else {
            vocabulary = .english
        }
        let model = try self.config(preset: config.model.preset, initFrom: initFrom, overrides: config.model.fields,
                                    objective: objective, vocabSize: vocabulary.count, file: config.file)
        func shards(_ key: String, _ path: String?) throws -> AudioShards? {
            guard let path else { return nil }
            do { return try AudioShards(directory: path) } catch { throw ConfigError("\(key): \(error)") }
        }
        guard let train = try shards("data.train", config.data.train) else {
            throw ConfigError("\(config.file): data.train is required (a directory of audio shards from tandem prepare-audio)")
        }
        return try SpeechTask(config: model, train: train, eval: try shards("data.eval", config.data.eval), vocabulary: vocabulary,
                              maxSeconds: config.data.maxSeconds, settings: settings)
    }
}
