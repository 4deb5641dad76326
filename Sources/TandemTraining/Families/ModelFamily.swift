import Foundation
import TandemAutograd

/// A model family (BERT, ViT with DeiT and SimMIM, BEiT, GPT, ...): the HF `model_type`s of its checkpoints,
/// its presets, its objectives (`train.objective`), the tensors its batch files hold, how it builds a
/// training task from a config, and how it loads a transformers directory for `tandem debug`. The
/// trainer, the CLI, `inspect`, `--init-from` and checkpoint export reach the family through
/// `ModelFamilies`; a new family adds its own files and one line to `ModelFamilies.all`.
public protocol ModelFamily {
    /// The family's name in messages ("bert").
    static var name: String { get }
    /// The `model_type`s of its config.json files, the first the one Tandem writes.
    static var modelTypes: [String] { get }
    /// Preset names (`model.preset`) and their HF config.json fields, in the order help lists them.
    static var presets: [(name: String, fields: [String: Any])] { get }
    /// The objectives `train.objective` may name, the first the default (empty: one objective, no key).
    static var objectives: [String] { get }
    /// The tensor names of its batch files (DESIGN.md "Batch files"), for `tandem debug` and
    /// `train.dump_batches`.
    static var batchInputs: [String] { get }
    /// The training task of `config`: the preset's (or `initFrom`'s config.json) architecture with the
    /// `model.<field>` overrides, its data and objective. `initFrom`'s weights are loaded later, on rank 0
    /// only, by `TrainingTask.loadPretrained`.
    static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask
    /// A transformers model directory with a batch file filled in, on a tape with dropout off, for
    /// `tandem debug forward|grads`; `forGradients` records the graph training runs (which may skip work
    /// no loss reads).
    static func debugModel(directory: String, batch: String, forGradients: Bool,
                           log: (String) -> Void) throws -> DebugModel
    /// A line about the model of a checkpoint directory for `tandem inspect` (ALBERT: its parameter count
    /// beside BERT's of the same shape), or nil (the default) when the family adds none.
    static func describe(directory: String) throws -> String?
}

extension ModelFamily {
    public static var objectives: [String] { [] }

    public static func describe(directory: String) throws -> String? { nil }

    public static func debugModel(directory: String, batch: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        throw ConfigError("\(directory): tandem debug does not support the \(name) family yet")
    }
}

/// A model of a transformers directory with a batch in its graph (`ModelFamily.debugModel`).
public struct DebugModel {
    public let tape: Tape
    /// Every parameter under its HF name, in checkpoint order.
    public let parameters: [Parameter]
    public let arena: ParameterArena
    /// The named outputs (HF output names) after `tape.forward()`, without the loss.
    public let outputs: () -> [(name: String, shape: [Int], values: [Float])]
    /// The scalar loss, or nil when the batch lacks the targets (`missingTargets` then says which).
    public let loss: Tensor?
    public let missingTargets: String

    public init(tape: Tape, parameters: [Parameter], arena: ParameterArena,
                outputs: @escaping () -> [(name: String, shape: [Int], values: [Float])], loss: Tensor?,
                missingTargets: String) {
        self.tape = tape; self.parameters = parameters; self.arena = arena
        self.outputs = outputs; self.loss = loss; self.missingTargets = missingTargets
    }
}

/// The registry of model families: the one list a new family joins.
public enum ModelFamilies {
    public static let all: [any ModelFamily.Type] = [BERTFamily.self, ViTFamily.self, GPTFamily.self, RNNFamily.self, Seq2SeqFamily.self,
                                                   MarianFamily.self, RobertaFamily.self, ALBERTFamily.self,
                                                   DistilBERTFamily.self, Wav2Vec2Family.self, BEiTFamily.self,
                                                   VQVAEFamily.self]

    /// Every preset name with its family.
    public static var presets: [(name: String, family: any ModelFamily.Type)] {
        all.flatMap { f in f.presets.map { ($0.name, f) } }
    }

    /// The family of a preset name; an unknown one is an error listing the known presets.
    public static func family(ofPreset name: String, file: String) throws -> any ModelFamily.Type {
        guard let f = presets.first(where: { $0.name == name })?.family else {
            throw ConfigError("\(file): model.preset = \(name) is not a known preset (known: \(presets.map(\.name).sorted().joined(separator: ", ")))")
        }
        return f
    }

    /// The family of a model directory, by its config.json's `model_type`; an unreadable config.json, a
    /// missing or unsupported `model_type` is an error naming the file, what it found and what is supported.
    public static func family(ofDirectory directory: String) throws -> any ModelFamily.Type {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("\(path): cannot read (is \(directory) a model directory?)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError("\(path): not a JSON object")
        }
        let supported = all.flatMap { $0.modelTypes }.joined(separator: ", ")
        guard let type = object["model_type"] as? String else {
            throw ConfigError("\(path): no model_type field, so the model family is unknown (supported model_types: \(supported))")
        }
        guard let f = all.first(where: { $0.modelTypes.contains(type) }) else {
            throw ConfigError("\(path): model_type \(type) is not supported (supported model_types: \(supported))")
        }
        return f
    }

    /// The training task of `config` through its family (by `--init-from`'s model_type, else by
    /// `model.preset`), after checking `train.objective` and `train.teacher` against the family.
    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let family: any ModelFamily.Type
        if let initFrom {
            family = try self.family(ofDirectory: initFrom)
        } else if let preset = config.model.preset {
            family = try self.family(ofPreset: preset, file: config.file)
        } else {
            throw ConfigError("\(config.file): model.preset is required (or start from a transformers checkpoint with --init-from)")
        }
        if let objective = config.train.objective, !family.objectives.contains(objective) {
            let known = family.objectives.isEmpty ? "it has one objective and no train.objective"
                : "its objectives are " + family.objectives.joined(separator: ", ")
            throw ConfigError("\(config.file): train.objective = \(objective) is not an objective of the \(family.name) family (\(known))")
        }
        if config.train.teacher != nil && config.train.objective != "distillation" {
            throw ConfigError("\(config.file): train.teacher is only used with train.objective = distillation")
        }
        return try family.makeTask(config, settings: settings, initFrom: initFrom)
    }
}
