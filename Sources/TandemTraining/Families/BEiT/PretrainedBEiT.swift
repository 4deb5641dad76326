import Foundation
import TandemCheckpoint
import TandemModels

/// A BEiT built from a transformers model directory (`config.json` + `model.safetensors`).
public struct PretrainedBEiT {
    public let config: BEiTConfig
    public let arena: ParameterArena
    public let model: BEiT
    public let report: CheckpointLoadReport

    /// Reads `directory/config.json` (transformers' BeitConfig fields, defaults for missing ones; the head
    /// is the one `architectures` names, classification without it) and fills a new, sealed arena from
    /// `directory/model.safetensors` (see `BEiT.load(shapes:origin:copy:)`). `log` hears which parameters
    /// kept their init and which tensors were ignored.
    public static func load(directory: String, log: (String) -> Void) throws -> PretrainedBEiT {
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        let config = try readModelConfig(BEiTConfig.self, directory: directory, kind: "BEiT") { BEiTError($0) }.config
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw BEiTError("\(weightsPath): no such file (only safetensors weights are read)")
        }
        let file = try SafeTensorsFile(path: weightsPath)
        let arena = ParameterArena()
        let model = try BEiT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let report = try model.load(shapes: file.tensors.mapValues(\.shape), origin: weightsPath) { name, into in
            try file.copyFloats(name, into: into)
        }
        logLoadReport(report, origin: weightsPath, log: log)
        return PretrainedBEiT(config: config, arena: arena, model: model, report: report)
    }
}
