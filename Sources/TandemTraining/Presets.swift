import Foundation
import TandemModels

/// Model presets: a family and its HF config.json fields. `model.<field>` keys override them.
public enum ModelPresets {
    public enum Family: String { case gpt, bert }

    public static let all: [String: (family: Family, fields: [String: Any])] = [
        // Byte-level GPTs for the quickstart and tests (nanoGPT's "baby" configs, scaled to 2 cores).
        "gpt-nano": (.gpt, ["vocab_size": 256, "n_positions": 256, "n_embd": 128, "n_layer": 4, "n_head": 4]),
        "gpt-micro": (.gpt, ["vocab_size": 256, "n_positions": 512, "n_embd": 192, "n_layer": 6, "n_head": 6]),
        // google-research/bert's table of compact and full models (Turc et al. 2019; Devlin et al. 2019):
        // L layers, H hidden, H/64 heads, 4H feed-forward.
        "bert-tiny": (.bert, bert(layers: 2, hidden: 128)),
        "bert-mini": (.bert, bert(layers: 4, hidden: 256)),
        "bert-small": (.bert, bert(layers: 4, hidden: 512)),
        "bert-medium": (.bert, bert(layers: 8, hidden: 512)),
        "bert-base": (.bert, bert(layers: 12, hidden: 768)),
        "bert-large": (.bert, bert(layers: 24, hidden: 1024)),
    ]

    static func bert(layers: Int, hidden: Int) -> [String: Any] {
        ["num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": hidden / 64,
         "intermediate_size": 4 * hidden, "max_position_embeddings": 512, "vocab_size": 30522]
    }

    /// The preset's fields with `overrides` applied, as a BertConfig; `vocabSize` (the run's vocabulary)
    /// replaces the preset's unless `model.vocab_size` is set.
    public static func bertConfig(_ name: String, overrides: [String: ConfigValue], vocabSize: Int?, file: String) throws -> BertConfig {
        var fields = try preset(name, file: file, family: .bert).fields
        if let vocabSize { fields["vocab_size"] = vocabSize }
        try merge(&fields, overrides, known: bertFields, file: file)
        let c: BertConfig = try decode(fields, file: file)
        do { try c.validate() } catch { throw ConfigError("\(file): \(error)") }
        return c
    }

    /// The preset's fields with `overrides` applied, decoded into the family's config type; an unknown
    /// field or a wrong type is an error naming `model.<field>` and the file.
    public static func gptConfig(_ name: String, overrides: [String: ConfigValue], file: String) throws -> GPTConfig {
        var fields = try preset(name, file: file, family: .gpt).fields
        let known = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "resid_pdrop", "layer_norm_epsilon",
                     "initializer_range"]
        try merge(&fields, overrides, known: known, file: file)
        let c: GPTConfig = try decode(fields, file: file)
        guard c.nEmbd % c.nHead == 0 else {
            throw ConfigError("\(file): model.n_embd = \(c.nEmbd) is not divisible by model.n_head = \(c.nHead)")
        }
        guard c.vocabSize > 0, c.nLayer > 0, c.nPositions > 0 else {
            throw ConfigError("\(file): model.vocab_size, model.n_layer and model.n_positions must be positive")
        }
        return c
    }

    /// A BertConfig read from a transformers directory (`--init-from`) with `model.<field>` overrides.
    public static func bertConfig(initFrom directory: String, overrides: [String: ConfigValue], file: String) throws -> BertConfig {
        let base: BertConfig
        do { base = try PretrainedBERT.readConfig(directory: directory) } catch { throw ConfigError("--init-from: \(error)") }
        var fields = try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as! [String: Any]
        try merge(&fields, overrides, known: bertFields, file: file)
        let c: BertConfig = try decode(fields, file: file)
        do { try c.validate() } catch { throw ConfigError("\(file): \(error)") }
        return c
    }

    static let bertFields = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                             "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                             "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id"]

    public static func family(of name: String, file: String) throws -> Family {
        guard let p = all[name] else {
            throw ConfigError("\(file): model.preset = \(name) is not a known preset (known: \(all.keys.sorted().joined(separator: ", ")))")
        }
        return p.family
    }

    private static func preset(_ name: String, file: String, family: Family) throws -> (family: Family, fields: [String: Any]) {
        guard let p = all[name], p.family == family else { throw ConfigError("\(file): model.preset = \(name) is not a \(family) preset") }
        return p
    }

    private static func merge(_ fields: inout [String: Any], _ overrides: [String: ConfigValue], known: [String], file: String) throws {
        for (k, v) in overrides {
            guard known.contains(k) else {
                throw ConfigError("\(file): unknown model field model.\(k) (fields: \(known.joined(separator: ", ")))")
            }
            switch v {
            case .int(let i): fields[k] = i
            case .float(let d): fields[k] = d
            case .bool(let b): fields[k] = b
            case .string(let s): fields[k] = s
            }
        }
    }

    private static func decode<T: Decodable>(_ fields: [String: Any], file: String) throws -> T {
        do {
            let data = try JSONSerialization.data(withJSONObject: fields)
            return try JSONDecoder().decode(T.self, from: data)
        } catch DecodingError.typeMismatch(_, let context), DecodingError.dataCorrupted(let context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw ConfigError("\(file): model.\(key) has the wrong type (\(context.debugDescription))")
        } catch {
            throw ConfigError("\(file): invalid model fields: \(error)")
        }
    }
}
