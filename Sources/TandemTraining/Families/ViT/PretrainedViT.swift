import Foundation
import TandemCheckpoint
import TandemModels

/// A ViT built from a transformers model directory (`config.json` + `model.safetensors`).
public struct PretrainedViT {
    public let config: ViTConfig
    public let arena: ParameterArena
    public let model: ViT
    public let report: ViT.LoadReport

    /// Reads `directory/config.json` (HF ViTConfig fields, defaults for missing ones) and fills a new,
    /// sealed arena from `directory/model.safetensors` (see `ViT.load(shapes:origin:copy:)`). The head
    /// is the one `architectures` names; without `architectures`, a checkpoint holding `decoder.0.weight`
    /// and no `classifier.weight` is taken as ViTForMaskedImageModeling. `log` hears which parameters
    /// kept their init and which tensors were ignored.
    public static func load(directory: String, log: (String) -> Void) throws -> PretrainedViT {
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        var (config, json, _) = try readModelConfig(ViTConfig.self, directory: directory, kind: "ViT") { ViTError($0) }
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw ViTError("\(weightsPath): no such file (only safetensors weights are read)")
        }
        let file = try SafeTensorsFile(path: weightsPath)
        let named = (try? JSONSerialization.jsonObject(with: json) as? [String: Any])?["architectures"] != nil
        if !named, file.tensors["decoder.0.weight"] != nil, file.tensors["classifier.weight"] == nil {
            config.head = .maskedImageModeling
        }
        let arena = ParameterArena()
        let model = ViT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let report = try model.load(shapes: file.tensors.mapValues(\.shape), origin: weightsPath) { name, into in
            try file.copyFloats(name, into: into)
        }
        logLoadReport(report, origin: weightsPath, log: log)
        return PretrainedViT(config: config, arena: arena, model: model, report: report)
    }
}
