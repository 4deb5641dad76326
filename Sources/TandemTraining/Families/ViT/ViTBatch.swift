import TandemCheckpoint
import TandemModels

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
        let (B, pixels) = try file.pixelValues(channels: config.numChannels, size: config.imageSize, fail: fail)
        func read(_ name: String, shape: [Int], range: ClosedRange<Int32>, alsoAllowed: Int32? = nil) throws -> [Int32]? {
            try file.batchIDs(name, shape: shape, range: range, alsoAllowed: alsoAllowed, fail: fail)
        }
        batch = B
        pixelValues = pixels
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
