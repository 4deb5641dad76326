import Foundation
import TandemData
import TandemKernels
import TandemModels

/// Recurrent encoder-decoder translation (`Seq2SeqModel`: GRU or LSTM, attention none, Bahdanau or Luong)
/// on a parallel corpus of two line-aligned shard directories (`Seq2SeqTask`).
///
/// Config: `data.train` / `data.eval` the source sides' shards with `data.vocab` (`data.cased`),
/// `data.train_target` / `data.eval_target` the target sides' with `data.target_vocab`
/// (`data.target_cased`), `data.seq_len` and `data.target_seq_len` the longest source and target (eos
/// included) trained on.
public enum Seq2SeqFamily: ModelFamily {
    public static let name = "seq2seq"
    public static let modelTypes = ["seq2seq"]
    public static let batchInputs = ["input_ids", "attention_mask", "decoder_input_ids", "labels"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // PyTorch's "NLP From Scratch: Translation with a Sequence to Sequence Network and Attention": a
        // 1-layer GRU encoder and a Bahdanau-attention GRU decoder; hidden 512 as the speed row.
        ("seq2seq-gru-bahdanau", fields("GRU", "bahdanau", layers: 1, embedding: 256, hidden: 512, bidirectional: false, dropout: 0.1)),
        // The same without attention: Sutskever et al.'s fixed-size bottleneck, for the comparison.
        ("seq2seq-gru-none", fields("GRU", "none", layers: 1, embedding: 256, hidden: 512, bidirectional: false, dropout: 0.1)),
        // Luong et al. 2015: a 2-layer LSTM with global (general) attention and input feeding; a
        // bidirectional encoder, dropout 0.2 as OpenNMT-py's RNN defaults.
        ("seq2seq-lstm-luong", fields("LSTM", "luong_general", layers: 2, embedding: 256, hidden: 512, bidirectional: true, dropout: 0.2)),
    ]

    static func fields(_ cell: String, _ attention: String, layers: Int, embedding: Int, hidden: Int, bidirectional: Bool,
                       dropout: Double) -> [String: Any] {
        ["rnn_type": cell, "attention": attention, "source_vocab_size": 8000, "target_vocab_size": 8000,
         "embedding_size": embedding, "hidden_size": hidden, "num_layers": layers, "bidirectional_encoder": bidirectional,
         "dropout": dropout]
    }

    static let fieldNames = ["rnn_type", "attention", "source_vocab_size", "target_vocab_size", "embedding_size", "hidden_size",
                             "num_layers", "bidirectional_encoder", "dropout", "source_pad_token_id", "target_pad_token_id",
                             "bos_token_id", "eos_token_id"]

    /// The preset's (or a model directory's) fields with `model.<field>` overrides. Without `initFrom`,
    /// the vocabulary sizes and special ids come from the two vocabularies (pad [PAD], bos [CLS], eos
    /// [SEP]) unless `model.<field>` sets them.
    public static func config(preset name: String?, initFrom: String?, overrides: [String: ConfigValue],
                              source: WordPieceTokenizer?, target: WordPieceTokenizer?, file: String) throws -> Seq2SeqConfig {
        var fields = try initFrom.map { try ModelFields.read(directory: $0) } ?? ModelFields.preset(name ?? "", of: self, file: file)
        if initFrom == nil, let source, let target {
            fields["source_vocab_size"] = source.vocabSize
            fields["target_vocab_size"] = target.vocabSize
            fields["source_pad_token_id"] = Int(source.padID ?? 0)
            fields["target_pad_token_id"] = Int(target.padID ?? 0)
            fields["bos_token_id"] = Int(target.clsID)
            fields["eos_token_id"] = Int(target.sepID)
        }
        for key in fields.keys where !fieldNames.contains(key) { fields[key] = nil }
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        let c: Seq2SeqConfig = try ModelFields.decode(fields, file: file)
        do { try c.validate() } catch { throw ConfigError("\(file): \(error)") }
        return c
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let d = config.data
        let sourceVocab = try ModelFields.tokenizer(config, for: self)
        guard let targetPath = d.targetVocab else {
            throw ConfigError("\(config.file): data.target_vocab is required for seq2seq (the target side's vocab.txt)")
        }
        let targetVocab: WordPieceTokenizer
        do { targetVocab = try WordPieceTokenizer(path: targetPath, cased: d.targetCased) } catch {
            throw ConfigError("data.target_vocab: \(error)")
        }
        let model = try self.config(preset: config.model.preset, initFrom: initFrom, overrides: config.model.fields,
                                    source: sourceVocab, target: targetVocab, file: config.file)
        for (key, size, vocab) in [("source_vocab_size", model.sourceVocabSize, sourceVocab),
                                   ("target_vocab_size", model.targetVocabSize, targetVocab)] where size < vocab.vocabSize {
            throw ConfigError("\(config.file): model.\(key) = \(size) is smaller than the \(vocab.vocabSize) tokens of its vocabulary")
        }
        func corpus(_ sourceKey: String, _ source: String?, _ targetKey: String, _ target: String?) throws -> ParallelDataset? {
            guard let source else {
                if target != nil { throw ConfigError("\(config.file): \(targetKey) is set but \(sourceKey) is not") }
                return nil
            }
            guard let target else {
                throw ConfigError("\(config.file): \(targetKey) is required with \(sourceKey) (the target side's shards, line-aligned with the source's)")
            }
            do {
                return try ParallelDataset(sourceDirectory: source, sourceVocab: sourceVocab, targetDirectory: target,
                                           targetVocab: targetVocab)
            } catch { throw ConfigError("\(sourceKey), \(targetKey): \(error)") }
        }
        guard let train = try corpus("data.train", d.train, "data.train_target", d.trainTarget) else {
            throw ConfigError("\(config.file): data.train is required")
        }
        let eval = try corpus("data.eval", d.eval, "data.eval_target", d.evalTarget)
        return try Seq2SeqTask(config: model, train: train, eval: eval, sourceVocab: sourceVocab, targetVocab: targetVocab,
                               vocabFiles: (d.vocab!, targetPath), maxSource: d.seqLen, maxTarget: d.targetSeqLen ?? d.seqLen,
                               bucketByLength: d.bucketByLength, labelSmoothing: Float(config.train.labelSmoothing),
                               globalBatch: settings.globalBatch, seed: settings.seed)
    }
}
