import Foundation
import TandemAutograd
import TandemKernels

/// What the masked-LM tasks (BERT, RoBERTa, and their successors) share: the scored rows gathered at the
/// masked positions, their FLOP count, the labels of a batch file and the held-out statistics.
enum MaskedLM {
    /// Shifts each sample's masked positions (0..<T) by b x T, into rows of the (B T) hidden states.
    static func offsetRows(_ rows: UnsafeMutablePointer<Int32>, sample b: Int, sequence T: Int, predictions P: Int) {
        for k in 0..<P { rows[b * P + k] += Int32(b * T) }
    }

    /// DESIGN.md's 6 x parameters + 12 x L x C x T per token, except that the embeddings are lookups and
    /// the tied decoder (V x C) runs only at the P masked positions, so they are counted where the work is:
    /// 6 x V x C per prediction. Counting the decoder at every token would overstate MFU.
    static func trainingFLOPsPerSample(parameters: Int, embeddingParameters: Int, layers: Int, hidden: Int,
                                       vocabulary V: Int, sequence T: Int, predictions P: Int) -> Double {
        let perToken = 6.0 * Double(parameters - embeddingParameters) + 12.0 * Double(layers * hidden) * Double(T)
        return perToken * Double(T) + 6.0 * Double(V * hidden) * Double(P)
    }

    /// The (B, T) labels of an HF batch file: the original token at each gathered masked row, -100 elsewhere.
    static func labels(rows: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, count: Int, batch B: Int,
                       sequence T: Int) -> [Int64] {
        var labels = [Int64](repeating: -100, count: B * T)
        for r in 0..<count where targets[r] != -100 { labels[Int(rows[r])] = Int64(targets[r]) }
        return labels
    }

    /// Adds the MLM loss sum, correct predictions and count of `count` scored rows into s[0], s[1], s[2];
    /// `meanLoss` is the graph's loss, the mean over the rows whose target is not -100.
    static func accumulate(logits: UnsafePointer<Float>, targets: UnsafeMutablePointer<Int32>, count: Int, vocabulary V: Int,
                           meanLoss: Float, into s: UnsafeMutablePointer<Double>) {
        var counted = 0
        for r in 0..<count where targets[r] != -100 {
            counted += 1
            if argmax(logits + r * V, V) == Int(targets[r]) { s[1] += 1 }
        }
        s[0] += Double(meanLoss) * Double(counted)
        s[2] += Double(counted)
    }

    /// eval_mlm_loss, eval_mlm_accuracy and eval_perplexity from s[0..<3].
    static func describe(_ s: [Double]) -> [(String, Double)] {
        let loss = s[0] / max(s[2], 1)
        return [("eval_mlm_loss", loss), ("eval_mlm_accuracy", s[1] / max(s[2], 1)), ("eval_perplexity", exp(loss))]
    }
}
