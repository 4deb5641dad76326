import TandemAutograd
import TandemModels

extension BEiTConfig: VisionModelConfig {
    public var architecture: String { head.rawValue }
    /// BeitForMaskedImageModeling predicts visual tokens (`VisionObjective.visualTokens`), not pixels.
    public var objective: VisionObjective { head == .maskedImageModeling ? .visualTokens : .classification }
}

extension BEiT: VisionModel {
    /// `record(on:batch:objective:)`'s graph: for classification every layer on all T tokens, the mean of
    /// the patch tokens (or [CLS]) into the classifier, cross-entropy with the labels or soft targets; for
    /// masked image modeling the mask token in place of the masked patches, `lm_head` on every patch and
    /// cross-entropy of the masked ones with their visual tokens (`patchLabels`, `patchLogits`).
    public func recordVision(on tape: Tape, batch B: Int, objective: ViT.Objective) -> VisionGraph {
        let g = record(on: tape, batch: B, objective: objective)
        switch config.head {
        case .imageClassification:
            return VisionGraph(batch: B, pixelValues: g.pixelValues, labels: g.labels, softTargets: g.softTargets,
                               logits: g.logits, loss: g.loss)
        case .maskedImageModeling:
            return VisionGraph(batch: B, pixelValues: g.pixelValues, labels: nil, softTargets: nil,
                               boolMaskedPos: g.boolMaskedPos, patchLabels: g.labels, patchLogits: g.logits, logits: nil,
                               loss: g.loss)
        }
    }
}
