import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemModels

// `tandem debug forward|grads` for ViT (DESIGN.md "Command line"): a transformers ViT directory and a batch
// file in, ViTForImageClassification's or ViTForMaskedImageModeling's outputs or the loss and every
// parameter gradient out, under HF names.

// MARK: - Loading a transformers ViT

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
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        var config: ViTConfig
        let json: Data
        do {
            json = try Data(contentsOf: URL(fileURLWithPath: configPath))
        } catch {
            throw ViTError("\(configPath): cannot read (\(error.localizedDescription))")
        }
        do {
            config = try JSONDecoder().decode(ViTConfig.self, from: json)
        } catch let e as ViTError {
            throw ViTError("\(configPath): \(e.message)")
        } catch let e as DecodingError {
            throw ViTError("\(configPath): not a valid ViT config.json (\(describeDecodingError(e)))")
        }
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
        if !report.keptInit.isEmpty {
            log("\(weightsPath): \(report.keptInit.count) parameters keep their random init: "
                + report.keptInit.joined(separator: ", "))
        }
        if !report.ignored.isEmpty {
            log("\(weightsPath): ignored \(report.ignored.joined(separator: ", "))")
        }
        return PretrainedViT(config: config, arena: arena, model: model, report: report)
    }

    /// Whether `directory/config.json` says `"model_type": "vit"`; false when it cannot be read, so that
    /// the BERT path reports the error.
    public static func isViT(directory: String) -> Bool {
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configPath),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return ["vit", "deit"].contains(object["model_type"] as? String ?? "")
    }
}

// MARK: - Batch files

/// A ViT batch file (DESIGN.md "Batch files"): `pixel_values` F32 (B, C, H, W) required, `labels` (B)
/// integer (classification) and `bool_masked_pos` (B, NP) BOOL or integer 0/1 (MIM) optional.
public struct ViTBatch {
    public let batch: Int
    public let pixelValues: [Float]
    public let labels: [Int32]?
    public let boolMaskedPos: [Int32]?
    /// DeiT's hard-distillation targets (a Tandem extension of the batch format).
    public let teacherLabels: [Int32]?

    /// Reads and checks `path` against `config`: the image shape must be the config's, labels must be in
    /// 0..<num_labels (or -100) and the mask 0/1; errors name the file and the tensor.
    public init(path: String, config: ViTConfig) throws {
        let file = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> ViTError { ViTError("\(path): \(message)") }
        let shape = try file.info("pixel_values").shape
        let S = config.imageSize
        guard shape.count == 4, shape[0] > 0, shape[1] == config.numChannels, shape[2] == S, shape[3] == S else {
            throw fail("pixel_values has shape \(shape), expected (batch, \(config.numChannels), \(S), \(S))")
        }
        let B = shape[0]
        func read(_ name: String, shape: [Int], range: ClosedRange<Int32>, alsoAllowed: Int32? = nil) throws -> [Int32]? {
            guard let info = file.tensors[name] else { return nil }
            guard info.shape == shape else { throw fail("\(name) has shape \(info.shape), expected \(shape)") }
            let values = try file.int32s(name)
            if let i = values.firstIndex(where: { !range.contains($0) && $0 != alsoAllowed }) {
                throw fail("\(name)[\(i)] = \(values[i]) is outside \(range.lowerBound)...\(range.upperBound)")
            }
            return values
        }
        batch = B
        pixelValues = try file.floats("pixel_values")
        labels = try read("labels", shape: [B], range: 0...Int32(config.numLabels - 1), alsoAllowed: -100)
        boolMaskedPos = try read("bool_masked_pos", shape: [B, config.numPatches], range: 0...1)
        teacherLabels = try read("teacher_labels", shape: [B], range: 0...Int32(config.numLabels - 1), alsoAllowed: -100)
    }

    /// Copies the batch into a graph recorded for B images; absent labels become -100 and an absent
    /// mask masks nothing.
    public func fill(_ g: ViT.Graph) {
        precondition(g.batch == batch, "the graph was recorded for another batch size")
        g.pixelValues.data.update(from: pixelValues, count: pixelValues.count)
        if let l = g.labels {
            if let labels { l.update(from: labels, count: batch) } else { l.update(repeating: -100, count: batch) }
        }
        if let m = g.boolMaskedPos {
            for i in 0..<m.count { m.data[i] = boolMaskedPos.map { Float($0[i]) } ?? 0 }
        }
        if let t = g.teacherLabels {
            if let teacherLabels { t.update(from: teacherLabels, count: batch) } else { t.update(repeating: -100, count: batch) }
        }
    }
}

// MARK: - The commands

/// `tandem debug forward` and `tandem debug grads` for a ViT model directory, with dropout off.
public enum ViTDebugCommands {
    /// Writes `last_hidden_state` (B, NP + 1, C) and `logits` (B, num_labels) for
    /// ViTForImageClassification or `reconstruction` (B, channels, H, W) for ViTForMaskedImageModeling,
    /// plus the scalar `loss` when the batch has `labels` (classification) or `bool_masked_pos` (MIM).
    public static func forward(model directory: String, batch batchPath: String, out outputPath: String,
                               log: (String) -> Void = DebugCommands.standardErrorLog) throws {
        let vit = try PretrainedViT.load(directory: directory, log: log)
        let batch = try ViTBatch(path: batchPath, config: vit.config)
        let g = try record(vit, batch, batchPath, allTokens: true)
        g.tape.forward()
        let graph = g.graph
        var writer = SafeTensorsWriter()
        writer.add("last_hidden_state", shape: graph.lastHiddenState.shape.dims,
                   borrowing: UnsafeBufferPointer(graph.lastHiddenState.values))
        if let logits = graph.logits, let distillation = graph.distillationLogits {
            // DeiTForImageClassificationWithTeacher: logits are the mean of the two heads'.
            let mean = zip(logits.values, distillation.values).map { ($0 + $1) / 2 }
            writer.add("logits", shape: logits.shape.dims, floats: mean)
            writer.add("cls_logits", shape: logits.shape.dims, borrowing: UnsafeBufferPointer(logits.values))
            writer.add("distillation_logits", shape: logits.shape.dims, borrowing: UnsafeBufferPointer(distillation.values))
        } else if let logits = graph.logits {
            writer.add("logits", shape: logits.shape.dims, borrowing: UnsafeBufferPointer(logits.values))
        }
        if let reconstruction = graph.reconstruction {
            writer.add("reconstruction", shape: reconstruction.shape.dims, borrowing: UnsafeBufferPointer(reconstruction.values))
        }
        if hasTargets(vit, batch), let loss = graph.loss { writer.add("loss", shape: [], floats: [loss.data[0]]) }
        try writer.write(toPath: outputPath)
    }

    /// Writes the scalar `loss` of the batch (which needs `labels` for classification or
    /// `bool_masked_pos` for MIM) and d(loss)/d(parameter) for every parameter under its HF name, from
    /// the graph that training records (for the classification heads, the last block only at the
    /// leading tokens).
    public static func grads(model directory: String, batch batchPath: String, out outputPath: String,
                             log: (String) -> Void = DebugCommands.standardErrorLog) throws {
        let vit = try PretrainedViT.load(directory: directory, log: log)
        let batch = try ViTBatch(path: batchPath, config: vit.config)
        guard hasTargets(vit, batch) else {
            let needed = vit.config.head == .imageClassification ? "labels"
                : vit.config.head == .distillation ? "labels and teacher_labels" : "bool_masked_pos"
            throw ViTError("\(batchPath): no \(needed) tensor, so there is no loss to differentiate")
        }
        let g = try record(vit, batch, batchPath, allTokens: false)
        guard let loss = g.graph.loss else { preconditionFailure("record checked that the loss exists") }
        vit.arena.zeroGrads()
        g.tape.forward()
        g.tape.backward(from: loss)
        var writer = SafeTensorsWriter()
        writer.add("loss", shape: [], floats: [loss.data[0]])
        for p in vit.model.parameters {
            writer.add(p.name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(p.grads))
        }
        try writer.write(toPath: outputPath)
    }

    private static func hasTargets(_ vit: PretrainedViT, _ batch: ViTBatch) -> Bool {
        switch vit.config.head {
        case .imageClassification: return batch.labels != nil
        case .distillation: return batch.labels != nil && batch.teacherLabels != nil
        case .maskedImageModeling: return batch.boolMaskedPos != nil
        }
    }

    /// Records the model on a tape with dropout off (every token of the last block when `allTokens`) and
    /// fills the batch; a mask with encoder_stride other than patch_size is an error, as in HF.
    private static func record(_ vit: PretrainedViT, _ batch: ViTBatch, _ batchPath: String,
                               allTokens: Bool) throws -> (tape: Tape, graph: ViT.Graph) {
        if vit.config.head == .maskedImageModeling, batch.boolMaskedPos != nil, vit.config.encoderStride != vit.config.patchSize {
            throw ViTError("\(batchPath): bool_masked_pos needs encoder_stride (\(vit.config.encoderStride)) "
                           + "equal to patch_size (\(vit.config.patchSize)), so that the reconstruction has the input's size")
        }
        let tape = Tape()
        tape.training = false
        let graph = vit.model.record(on: tape, batch: batch.batch, allTokens: allTokens)
        batch.fill(graph)
        return (tape, graph)
    }
}
