import Foundation
import TandemData
import TandemKernels
import TandemModels

/// Recurrent word-level language models as PyTorch's examples/word_language_model `RNNModel` (LSTM, GRU,
/// or a tanh or ReLU RNN; Zaremba et al. 2014's recipe) on the sentences of WordPiece token shards, each
/// sentence ended by [SEP] as the example ends every line with <eos> (`RNNLanguageModelTask`).
public enum RNNFamily: ModelFamily {
    public static let name = "rnn_lm"
    public static let modelTypes = ["rnn_lm"]
    public static let batchInputs = ["input_ids", "labels"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // Zaremba et al. 2014: small (2 x 200, no dropout), medium (2 x 650, dropout 0.5) and large
        // (2 x 1500, dropout 0.65) LSTMs; untied, as in the paper.
        ("lstm-small", fields("LSTM", hidden: 200, dropout: 0)),
        ("lstm-medium", fields("LSTM", hidden: 650, dropout: 0.5)),
        ("lstm-large", fields("LSTM", hidden: 1500, dropout: 0.65)),
        ("gru-medium", fields("GRU", hidden: 650, dropout: 0.5)),
    ]

    static func fields(_ type: String, hidden: Int, dropout: Double) -> [String: Any] {
        ["rnn_type": type, "vocab_size": 10000, "embedding_size": hidden, "hidden_size": hidden, "num_layers": 2,
         "dropout": dropout, "tie_weights": false]
    }

    static let fieldNames = ["rnn_type", "vocab_size", "embedding_size", "hidden_size", "num_layers", "dropout", "tie_weights"]

    /// The preset's (or a model directory's) fields with `model.<field>` overrides; `vocabSize` (the
    /// run's vocabulary) replaces the preset's unless `model.vocab_size` is set.
    public static func config(preset name: String?, initFrom: String?, overrides: [String: ConfigValue], vocabSize: Int?,
                              file: String) throws -> RNNLMConfig {
        var fields = try initFrom.map { try ModelFields.read(directory: $0) } ?? ModelFields.preset(name ?? "", of: self, file: file)
        if initFrom == nil, let vocabSize { fields["vocab_size"] = vocabSize }
        fields["model_type"] = nil
        fields["architectures"] = nil
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        let c: RNNLMConfig = try ModelFields.decode(fields, file: file)
        do { try c.validate() } catch { throw ConfigError("\(file): \(error)") }
        return c
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let tokenizer = try ModelFields.tokenizer(config, for: self)
        let rnn = try self.config(preset: config.model.preset, initFrom: initFrom, overrides: config.model.fields,
                                  vocabSize: config.model.fields["vocab_size"] == nil ? tokenizer.vocabSize : nil,
                                  file: config.file)
        func stream(_ key: String, _ path: String?) throws -> ShardTokenStream? {
            guard let path else { return nil }
            do {
                return try ShardTokenStream(dataset: ShardDataset(directory: path, tokenizer: tokenizer),
                                            separator: tokenizer.sepID)
            } catch { throw ConfigError("\(key): \(error)") }
        }
        return try RNNLanguageModelTask(config: rnn, source: stream("data.train", config.data.train)!,
                                        eval: stream("data.eval", config.data.eval), sequenceLength: settings.sequenceLength,
                                        carryState: config.data.carryState, globalBatch: settings.globalBatch,
                                        seed: settings.seed)
    }
}
