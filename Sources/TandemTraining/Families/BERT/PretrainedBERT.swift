import Foundation
import TandemCheckpoint
import TandemModels

/// A BERT built from a transformers model directory (`config.json` + `model.safetensors`).
public struct PretrainedBERT {
    public let config: BertConfig
    public let arena: ParameterArena
    public let model: BERT
    public let report: BERT.LoadReport

    /// Reads `directory/config.json` (HF BertConfig fields, defaults for missing ones) and fills a new,
    /// sealed arena from `directory/model.safetensors` (names with or without `bert.`; see
    /// `BERT.load(shapes:origin:copy:)`). `log` hears which parameters kept their init and which
    /// tensors were ignored.
    public static func load(directory: String, log: (String) -> Void) throws -> PretrainedBERT {
        let config = try readConfig(directory: directory)
        let arena = ParameterArena()
        let model = BERT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let report = try loadWeights(into: model, directory: directory, log: log)
        return PretrainedBERT(config: config, arena: arena, model: model, report: report)
    }

    /// The BertConfig of a transformers directory's `config.json`.
    public static func readConfig(directory: String) throws -> BertConfig {
        try readModelConfig(BertConfig.self, directory: directory, kind: "BERT") { BertError($0) }.config
    }

    /// Copies a transformers directory's `model.safetensors` into `model`'s parameters and logs what kept
    /// its init (the heads of a BertModel checkpoint) and what was ignored.
    @discardableResult
    public static func loadWeights(into model: BERT, directory: String, log: (String) -> Void) throws -> BERT.LoadReport {
        try loadWeights(parameters: model.parameters, load: model.load, headPrefix: "cls.", baseModel: "BertModel",
                        directory: directory, log: log)
    }

    /// The same for any BERT-like model: `load` is its `load(shapes:origin:copy:)`; when every parameter
    /// under `headPrefix` kept its init, the log says the checkpoint was a `baseModel` (an encoder alone).
    @discardableResult
    public static func loadWeights(
        parameters: [Parameter], load: ([String: [Int]], String, (String, UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport,
        headPrefix: String, baseModel: String, directory: String, log: (String) -> Void
    ) throws -> CheckpointLoadReport {
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw BertError("\(weightsPath): no such file (only safetensors weights are read)")
        }
        let file = try SafeTensorsFile(path: weightsPath)
        let report = try load(file.tensors.mapValues(\.shape), weightsPath) { name, into in
            try file.copyFloats(name, into: into)
        }
        if !report.keptInit.isEmpty {
            let heads = parameters.filter { $0.name.hasPrefix(headPrefix) }.map(\.name)
            let noHeads = heads.allSatisfy(report.keptInit.contains) ? " (a \(baseModel) checkpoint: only the encoder was loaded)" : ""
            log("\(weightsPath): \(report.keptInit.count) parameters keep their random init\(noHeads): "
                + report.keptInit.joined(separator: ", "))
        }
        if !report.ignored.isEmpty {
            log("\(weightsPath): ignored \(report.ignored.joined(separator: ", "))")
        }
        return report
    }
}
