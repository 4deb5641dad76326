import Foundation
import TandemAutograd
import TandemCheckpoint
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
                             "feat_extract_norm", "feat_extract_activation", "conv_dim", "conv_stride", "conv_kernel", "conv_bias", "num_conv_pos_embeddings",
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

    /// A transformers `Wav2Vec2ForCTC` or `Wav2Vec2ForPreTraining` directory (config.json, model.safetensors)
    /// in a new, sealed arena. Every tensor of the base model must be present, and so must the head's (a CTC
    /// config over a pre-trained checkpoint would have a random `lm_head`); `log` hears what kept its init
    /// otherwise (`masked_spec_embed`) and what was ignored.
    public static func loadPretrained(directory: String, log: (String) -> Void) throws -> (model: Wav2Vec2, arena: ParameterArena) {
        let (configPath, type) = try ModelFields.checkpointModelType(directory: directory)
        guard type == "wav2vec2" else {
            throw ConfigError("\(configPath): model_type \(type ?? "none") is not wav2vec2")
        }
        let config = try readModelConfig(Wav2Vec2Config.self, directory: directory, kind: "wav2vec2") { ConfigError($0) }.config
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw ConfigError("\(weightsPath): no such file (only safetensors weights are read)")
        }
        let weights = try SafeTensorsFile(path: weightsPath)
        let arena = ParameterArena()
        let model = Wav2Vec2(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: weightsPath) { try weights.copyFloats($0, into: $1) }
        if let missing = report.keptInit.first(where: { !$0.hasPrefix("wav2vec2.") }) {
            throw ConfigError("\(weightsPath): no \(missing) for the \(config.head.rawValue) head of \(configPath) (a checkpoint of another head?)")
        }
        logLoadReport(report, origin: weightsPath, log: log)
        return (model, arena)
    }

    /// `last_hidden_state` (B, frames, hidden) and, for Wav2Vec2ForCTC, `logits` (B, frames, vocab_size),
    /// the loss needing `labels`; for Wav2Vec2ForPreTraining `projected_states` and
    /// `projected_quantized_states` (B, frames, proj_codevector_dim) and, with `mask_time_indices`,
    /// `codevector_perplexity` (over the masked frames), the loss with its `contrastive_loss` and
    /// `diversity_loss` needing `mask_time_indices` and `sampled_negative_indices`. Eval mode, as the parity
    /// tests record it: no dropout, LayerDrop or masking draws; the masked frames are the batch's.
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let (model, arena) = try loadPretrained(directory: directory, log: log)
        let config = model.config
        let batch = try Wav2Vec2Batch(path: path, config: config)
        if config.head == .preTraining && model.maskedSpecEmbed == nil {
            throw ConfigError("\(directory): a Wav2Vec2ForPreTraining config with mask_time_prob 0 has no masked_spec_embed, so it cannot pre-train")
        }
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: batch.batch, samples: batch.samples, labelColumns: batch.labelColumns)
        batch.fill(g, config: config)
        let hasTargets: Bool, needed: String
        switch config.head {
        case .ctc: (hasTargets, needed) = (batch.labels != nil, "labels")
        case .preTraining:
            (hasTargets, needed) = (batch.maskTimeIndices != nil && batch.sampledNegativeIndices != nil,
                                    "mask_time_indices and sampled_negative_indices")
        }
        let masked = batch.maskTimeIndices != nil
        // The closure holds the model: the recorded quantiser reads its Gumbel temperature through an unowned
        // reference at every forward.
        return DebugModel(tape: tape, parameters: model.parameters, arena: arena, outputs: {
            withExtendedLifetime(model) {}
            func output(_ name: String, _ t: Tensor) -> (name: String, shape: [Int], values: [Float]) {
                (name, t.shape.dims, Array(t.values))
            }
            var out = [output("last_hidden_state", g.lastHiddenState)]
            if let logits = g.logits { out.append(output("logits", logits)) }
            if let p = g.projectedStates, let q = g.projectedQuantizedStates, let perplexity = g.codevectorPerplexity {
                out += [output("projected_states", p), output("projected_quantized_states", q)]
                if masked { out.append(("codevector_perplexity", [], [perplexity.data[0]])) }
                if hasTargets, let terms = g.lossTerms {
                    out += [("contrastive_loss", [], [terms[0]]), ("diversity_loss", [], [terms[1]])]
                }
            }
            return out
        }, loss: hasTargets ? g.loss : nil, missingTargets: needed)
    }
}
