import Foundation
import TandemModels

/// Model presets: a family and its HF config.json fields. `model.<field>` keys override them.
public enum ModelPresets {
    public enum Family: String { case gpt, bert, vit }

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
        // DeiT's table (Touvron et al. 2021, Table 1): ViT-Ti/S/B at 224 px with 16-pixel patches, 64-wide
        // heads, 4x MLPs. Channels and labels come from the image shards.
        "vit-tiny": (.vit, vit(hidden: 192, layers: 12, image: 224, patch: 16)),
        "vit-small": (.vit, vit(hidden: 384, layers: 12, image: 224, patch: 16)),
        "vit-base": (.vit, vit(hidden: 768, layers: 12, image: 224, patch: 16)),
        // Small-image ViTs with 4-pixel patches: 7x7 patches of 28 px images (MNIST, Fashion-MNIST), 8x8 of
        // 32 px ones (CIFAR); vit-tiny-32 is issue 8's throughput model. vit-mini is narrower and shallower,
        // sized to train Fashion-MNIST on 2 cores in minutes.
        "vit-tiny-28": (.vit, vit(hidden: 192, layers: 12, image: 28, patch: 4)),
        "vit-tiny-32": (.vit, vit(hidden: 192, layers: 12, image: 32, patch: 4)),
        "vit-mini-28": (.vit, vit(hidden: 128, layers: 6, image: 28, patch: 4, heads: 4)),
        "vit-mini-32": (.vit, vit(hidden: 128, layers: 6, image: 32, patch: 4, heads: 4)),
    ]

    static func vit(hidden: Int, layers: Int, image: Int, patch: Int, heads: Int? = nil) -> [String: Any] {
        ["hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads ?? hidden / 64,
         "intermediate_size": 4 * hidden, "image_size": image, "patch_size": patch, "encoder_stride": patch,
         "layer_norm_eps": 1e-6, "qkv_bias": true]
    }

    /// The preset's (or `--init-from` directory's) ViTConfig with `model.<field>` overrides, the head of
    /// `head`, and the shards' channels and class names unless the overrides set them.
    public static func vitConfig(_ name: String?, initFrom: String?, overrides: [String: ConfigValue], head: ViTHead,
                                 channels: Int, classes: [String], file: String) throws -> ViTConfig {
        var fields: [String: Any]
        if let initFrom {
            let path = (initFrom as NSString).appendingPathComponent("config.json")
            guard let data = FileManager.default.contents(atPath: path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ConfigError("--init-from: \(path) cannot be read as JSON")
            }
            fields = object
            for k in ["architectures", "id2label", "label2id", "num_labels", "model_type"] { fields[k] = nil }
        } else {
            fields = try preset(name ?? "", file: file, family: .vit).fields
        }
        fields["num_channels"] = channels
        fields["id2label"] = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (String($0.offset), $0.element) })
        try merge(&fields, overrides, known: vitFields, file: file)
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

    static let vitFields = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                            "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
                            "image_size", "patch_size", "num_channels", "qkv_bias", "encoder_stride"]

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
