import TandemAutograd
import TandemNN

/// The tensors of a teacher-forced translation graph that a training task fills and reads, whatever the
/// model: B sentence pairs of S source and T target positions, right-padded.
public struct TeacherForcedGraph {
    public let batch: Int
    public let sourceLength: Int
    public let targetLength: Int
    /// (B, S) source ids.
    public let sourceIDs: UnsafeMutablePointer<Int32>
    /// (B) each source's length; padding follows it.
    public let sourceLengths: UnsafeMutablePointer<Int32>
    /// (B, T) the decoder's inputs: its start id, then the target shifted right.
    public let decoderInputIDs: UnsafeMutablePointer<Int32>
    /// (B, T) the target tokens; -100 is ignored.
    public let labels: UnsafeMutablePointer<Int32>
    /// (B, T, V)
    public let logits: Tensor
    /// Mean cross-entropy over the labels that are not -100.
    public let loss: Tensor

    public init(batch: Int, sourceLength: Int, targetLength: Int, sourceIDs: UnsafeMutablePointer<Int32>,
                sourceLengths: UnsafeMutablePointer<Int32>, decoderInputIDs: UnsafeMutablePointer<Int32>,
                labels: UnsafeMutablePointer<Int32>, logits: Tensor, loss: Tensor) {
        self.batch = batch; self.sourceLength = sourceLength; self.targetLength = targetLength
        self.sourceIDs = sourceIDs; self.sourceLengths = sourceLengths; self.decoderInputIDs = decoderInputIDs
        self.labels = labels; self.logits = logits; self.loss = loss
    }
}

/// An encoder-decoder that a translation task trains on sentence pairs and decodes for BLEU: the recurrent
/// `Seq2SeqModel` and the Transformer `MarianMT`.
public protocol TranslationModel: StepwiseTranslator {
    /// model.safetensors' tensors under their names.
    var checkpointTensors: [(String, Parameter)] { get }
    /// The source ids' width.
    var sourceVocabularySize: Int { get }
    /// The id that pads sources.
    var sourcePadID: Int32 { get }
    /// The id that pads decoder inputs.
    var targetPadID: Int32 { get }
    /// Records the teacher-forced graph; the loss smooths its targets by `labelSmoothing` (0: none).
    func recordTeacherForced(on tape: Tape, batch: Int, sourceLength: Int, targetLength: Int,
                             labelSmoothing: Float) -> TeacherForcedGraph
    /// Training FLOPs of one pair of S source and T target tokens.
    func trainingFLOPsPerSample(sourceLength S: Int, targetLength T: Int) -> Double
    /// Fills the parameters from a checkpoint with the model's names (errors name the tensor and `origin`).
    func load(shapes: [String: [Int]], origin: String,
              copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport
}

extension Seq2SeqModel: TranslationModel {
    public var sourceVocabularySize: Int { config.sourceVocabSize }
    public var sourcePadID: Int32 { Int32(config.sourcePadTokenId) }
    public var targetPadID: Int32 { Int32(config.targetPadTokenId) }

    public func recordTeacherForced(on tape: Tape, batch B: Int, sourceLength S: Int, targetLength T: Int,
                                    labelSmoothing: Float) -> TeacherForcedGraph {
        let g = record(on: tape, batch: B, sourceLength: S, targetLength: T, labelSmoothing: labelSmoothing)
        return TeacherForcedGraph(batch: B, sourceLength: S, targetLength: T, sourceIDs: g.sourceIDs, sourceLengths: g.sourceLengths,
                                  decoderInputIDs: g.decoderInputIDs, labels: g.labels, logits: g.logits, loss: g.loss)
    }
}

extension MarianMT: TranslationModel {
    public var sourceVocabularySize: Int { config.vocabSize }
    public var sourcePadID: Int32 { Int32(config.padTokenId) }
    public var targetPadID: Int32 { Int32(config.padTokenId) }

    /// The decoder's key mask stays all ones: past each target's end the decoder inputs are padding that
    /// no loss reads (see `Graph.targetLengths`).
    public func recordTeacherForced(on tape: Tape, batch B: Int, sourceLength S: Int, targetLength T: Int,
                                    labelSmoothing: Float) -> TeacherForcedGraph {
        let g = record(on: tape, batch: B, sourceLength: S, targetLength: T, labelSmoothing: labelSmoothing)
        return TeacherForcedGraph(batch: B, sourceLength: S, targetLength: T, sourceIDs: g.sourceIDs, sourceLengths: g.sourceLengths,
                                  decoderInputIDs: g.decoderInputIDs, labels: g.labels, logits: g.logits, loss: g.loss)
    }
}
