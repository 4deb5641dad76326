import TandemCheckpoint
import TandemModels

/// A BEiT batch file (DESIGN.md "Batch files"): `pixel_values` F32 (B, C, H, W) required; `labels`
/// integer, (B) class labels for BeitForImageClassification or (B, NP) every patch's visual token for
/// BeitForMaskedImageModeling (the loss reads the masked ones); `bool_masked_pos` (B, NP) BOOL or
/// integer 0/1 (masked image modeling).
public struct BEiTBatch {
    public let batch: Int
    public let pixelValues: [Float]
    public let labels: [Int32]?
    public let boolMaskedPos: [Int32]?

    /// Reads and checks `path` against `config`: the image shape must be the config's, labels in
    /// 0..<num_labels (classification) or 0..<vocab_size (masked image modeling), or -100, and the mask
    /// 0/1; errors name the file and the tensor.
    public init(path: String, config: BEiTConfig) throws {
        let file = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> BEiTError { BEiTError("\(path): \(message)") }
        let (B, pixels) = try file.pixelValues(channels: config.numChannels, size: config.imageSize, fail: fail)
        let NP = config.numPatches
        batch = B
        pixelValues = pixels
        switch config.head {
        case .imageClassification:
            labels = try file.batchIDs("labels", shape: [B], range: 0...Int32(config.numLabels - 1), alsoAllowed: -100, fail: fail)
            if file.tensors["bool_masked_pos"] != nil {
                throw fail("bool_masked_pos is an input of BeitForMaskedImageModeling, not of BeitForImageClassification")
            }
            boolMaskedPos = nil
        case .maskedImageModeling:
            labels = try file.batchIDs("labels", shape: [B, NP], range: 0...Int32(config.vocabSize - 1), alsoAllowed: -100, fail: fail)
            boolMaskedPos = try file.batchIDs("bool_masked_pos", shape: [B, NP], range: 0...1, fail: fail)
        }
    }

    /// Copies the batch into a graph recorded for B images; absent labels become -100 and an absent mask
    /// masks nothing.
    public func fill(_ g: BEiT.Graph) {
        precondition(g.batch == batch, "the graph was recorded for another batch size")
        g.pixelValues.data.update(from: pixelValues, count: pixelValues.count)
        let n = g.boolMaskedPos?.count ?? batch
        if let labels { g.labels.update(from: labels, count: n) } else { g.labels.update(repeating: -100, count: n) }
        if let m = g.boolMaskedPos {
            for i in 0..<m.count { m.data[i] = boolMaskedPos.map { Float($0[i]) } ?? 0 }
        }
    }
}
