import Foundation
import TandemData
import TandemModels

/// A byte-level GPT (Radford et al. 2019, nanoGPT's layout) trained on next-token prediction over the
/// bytes of a text file (`CausalLanguageModelTask`); our own architecture name and layout until GPT-2's
/// (issue 17).
public enum GPTFamily: ModelFamily {
    public static let name = "gpt"
    public static let modelTypes = ["tandem-gpt"]
    public static let batchInputs = ["input_ids", "labels"]

    /// nanoGPT's "baby" configs, scaled to 2 cores: for the quickstart and tests.
    public static let presets: [(name: String, fields: [String: Any])] = [
        ("gpt-nano", ["vocab_size": 256, "n_positions": 256, "n_embd": 128, "n_layer": 4, "n_head": 4]),
        ("gpt-micro", ["vocab_size": 256, "n_positions": 512, "n_embd": 192, "n_layer": 6, "n_head": 6]),
    ]

    static let fieldNames = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "resid_pdrop", "layer_norm_epsilon",
                             "initializer_range"]

    /// The preset's fields with `overrides` applied; an unknown field or a wrong type is an error naming
    /// `model.<field>` and the file.
    public static func config(preset name: String, overrides: [String: ConfigValue], file: String) throws -> GPTConfig {
        var fields = try ModelFields.preset(name, of: self, file: file)
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        let c: GPTConfig = try ModelFields.decode(fields, file: file)
        guard c.nEmbd % c.nHead == 0 else {
            throw ConfigError("\(file): model.n_embd = \(c.nEmbd) is not divisible by model.n_head = \(c.nHead)")
        }
        guard c.vocabSize > 0, c.nLayer > 0, c.nPositions > 0 else {
            throw ConfigError("\(file): model.vocab_size, model.n_layer and model.n_positions must be positive")
        }
        return c
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        guard let preset = config.model.preset else {
            throw ConfigError("\(config.file): model.preset is required for the gpt family (it cannot start from --init-from yet)")
        }
        let gpt = try self.config(preset: preset, overrides: config.model.fields, file: config.file)
        let source = try ByteTokens(path: config.data.train!)
        return try CausalLanguageModelTask(config: gpt, source: source, sequenceLength: settings.sequenceLength,
                                           seed: settings.seed)
    }
}
