import TandemAutograd
import TandemKernels

/// DistilBERT's triple loss (Sanh et al. 2019, section 2): L = α_ce L_ce + α_mlm L_mlm + α_cos L_cos, with
/// L_ce the soft-target KL of the student's logits against the teacher's at temperature τ, times τ²,
/// averaged over the tokens that are not padding; L_mlm the masked-LM cross-entropy; L_cos the mean
/// 1 - cos between the student's and the teacher's last hidden states over the same tokens. The defaults
/// are the paper's run (transformers' research_projects/distillation `train.py`: α_ce 5, α_mlm 2, α_cos 1,
/// τ 2), whose `distiller.py` this matches with `restrict_ce_to_mask` false.
public struct DistillationObjective: Equatable, Sendable {
    public var alphaCE: Float = 5
    public var alphaMLM: Float = 2
    public var alphaCos: Float = 1
    public var temperature: Float = 2
    public init() {}

    /// The terms and their weighted sum, scalar tensors.
    public struct Losses {
        public let softTarget: Tensor
        public let mlm: Tensor
        public let cosine: Tensor
        public let total: Tensor
    }

    /// Records the loss of student logits (N, V) and hidden states (N, C) against the teacher's (N, V) and
    /// (N, C), which get no gradient; `attentionMask` (N) marks the tokens that are not padding and `labels`
    /// (N) hold the MLM targets (-100 where unscored).
    public func record(on tape: Tape, studentLogits: Tensor, teacherLogits: Tensor, studentHidden: Tensor,
                       teacherHidden: Tensor, attentionMask: Tensor, labels: UnsafeMutablePointer<Int32>) -> Losses {
        let ce = tape.softKL(studentLogits, teacher: teacherLogits, rowMask: attentionMask, temperature: temperature)
        let mlm = tape.crossEntropy(studentLogits, targets: labels)
        let cosine = tape.cosineLoss(studentHidden, teacher: teacherHidden, rowMask: attentionMask)
        let total = tape.weightedSum([(ce, alphaCE), (mlm, alphaMLM), (cosine, alphaCos)])
        return Losses(softTarget: ce, mlm: mlm, cosine: cosine, total: total)
    }
}
