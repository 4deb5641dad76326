import Foundation
import TandemCheckpoint
import TandemModels

/// An ALBERT built from a transformers model directory (`config.json` + `model.safetensors`).
public struct PretrainedALBERT {
    public let config: AlbertConfig
    public let arena: ParameterArena
    public let model: ALBERT
    public let report: CheckpointLoadReport

    /// Reads `directory/config.json` (HF AlbertConfig fields; `embedding_size` required, defaults for the
    /// other missing ones) and fills a new, sealed arena from `directory/model.safetensors` (names with or
    /// without `albert.`; see `ALBERT.load(shapes:origin:copy:)`). `log` hears which parameters kept their
    /// init and which tensors were ignored.
    public static func load(directory: String, log: (String) -> Void) throws -> PretrainedALBERT {
        let config = try readConfig(directory: directory)
        let arena = ParameterArena()
        let model = ALBERT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let report = try loadWeights(into: model, directory: directory, log: log)
        return PretrainedALBERT(config: config, arena: arena, model: model, report: report)
    }

    /// The AlbertConfig of a transformers directory's `config.json`; errors name the file and the field.
    public static func readConfig(directory: String) throws -> AlbertConfig {
        try readModelConfig(AlbertConfig.self, directory: directory, kind: "ALBERT") { AlbertError($0) }.config
    }

    /// Copies a transformers directory's `model.safetensors` into `model`'s parameters and logs what kept
    /// its init (the heads of an AlbertModel checkpoint) and what was ignored.
    @discardableResult
    public static func loadWeights(into model: ALBERT, directory: String, log: (String) -> Void) throws -> CheckpointLoadReport {
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw AlbertError("\(weightsPath): no such file (only safetensors weights are read)")
        }
        let file = try SafeTensorsFile(path: weightsPath)
        let report = try model.load(shapes: file.tensors.mapValues(\.shape), origin: weightsPath) { name, into in
            try file.copyFloats(name, into: into)
        }
        if !report.keptInit.isEmpty {
            log("\(weightsPath): \(report.keptInit.count) parameters keep their random init: " + report.keptInit.joined(separator: ", "))
        }
        if !report.ignored.isEmpty {
            log("\(weightsPath): ignored \(report.ignored.joined(separator: ", "))")
        }
        return report
    }
}
