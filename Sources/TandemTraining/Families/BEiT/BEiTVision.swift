import TandemAutograd
import TandemModels

extension BEiTConfig: VisionModelConfig {
    public var architecture: String { head.rawValue }
    /// Masked image modeling is reported as such, but `VisionTask` only trains BEiT's classifier: its
    /// visual-token targets need a tokenizer Tandem does not have (`BEiTFamily`).
    public var objective: VisionObjective { head == .maskedImageModeling ? .maskedImageModeling : .classification }
}

extension BEiT: VisionModel {
    /// The classification graph (`record(on:batch:objective:)`): every layer on all T tokens, the mean of
    /// the patch tokens (or [CLS]) into the classifier, cross-entropy with the labels or soft targets.
    public func recordVision(on tape: Tape, batch B: Int, objective: ViT.Objective) -> VisionGraph {
        precondition(config.head == .imageClassification,
                     "BEiT trains BeitForImageClassification only (masked image modeling needs a visual tokenizer)")
        let g = record(on: tape, batch: B, objective: objective)
        return VisionGraph(batch: B, pixelValues: g.pixelValues, labels: g.labels, softTargets: g.softTargets,
                           logits: g.logits, loss: g.loss)
    }
}
