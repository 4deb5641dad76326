import Foundation
import TandemAutograd
import TandemData
import TandemModels

/// ALBERT (Lan et al. 2020) as transformers' AlbertForPreTraining: factorised embeddings, one layer
/// shared by every depth, masked LM plus sentence-order prediction on WordPiece token shards
/// (`AlbertPretrainingTask`).
public enum ALBERTFamily: ModelFamily {
    public static let name = "albert"
    public static let modelTypes = ["albert"]
    public static let batchInputs = ["input_ids", "attention_mask", "token_type_ids", "labels", "sentence_order_label"]

    /// The paper's Table 1 (E = 128, H/64 heads, 4H feed-forward), with ALBERT v2's settings (no dropout
    /// in the encoder, gelu_new), and a small one for tests and short runs on real text.
    public static let presets: [(name: String, fields: [String: Any])] = [
        ("albert-mini", fields(layers: 4, hidden: 256)),
        ("albert-base", fields(layers: 12, hidden: 768)),
        ("albert-large", fields(layers: 24, hidden: 1024)),
        ("albert-xlarge", fields(layers: 24, hidden: 2048)),
    ]

    static func fields(layers: Int, hidden: Int) -> [String: Any] {
        ["num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": hidden / 64,
         "intermediate_size": 4 * hidden, "embedding_size": 128, "max_position_embeddings": 512, "vocab_size": 30000,
         "hidden_act": "gelu_new", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
         "classifier_dropout_prob": 0.1]
    }

    /// The `model.<field>` keys an ALBERT config takes.
    static let fieldNames = ["vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
                             "num_attention_heads", "intermediate_size", "inner_group_num", "hidden_act",
                             "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                             "type_vocab_size", "initializer_range", "layer_norm_eps", "classifier_dropout_prob",
                             "pad_token_id"]

    /// The preset's fields with `overrides` applied, as an AlbertConfig; `vocabSize` (the run's vocabulary)
    /// replaces the preset's unless `model.vocab_size` is set.
    public static func config(preset name: String, overrides: [String: ConfigValue], vocabSize: Int?,
                              file: String) throws -> AlbertConfig {
        var fields = try ModelFields.preset(name, of: self, file: file)
        if let vocabSize { fields["vocab_size"] = vocabSize }
        return try config(fields, overrides: overrides, file: file)
    }

    /// An AlbertConfig read from a transformers directory (`--init-from`) with `model.<field>` overrides.
    public static func config(initFrom directory: String, overrides: [String: ConfigValue], file: String) throws -> AlbertConfig {
        let base: AlbertConfig
        do { base = try PretrainedALBERT.readConfig(directory: directory) } catch { throw ConfigError("--init-from: \(error)") }
        let fields = try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as! [String: Any]
        return try config(fields, overrides: overrides, file: file)
    }

    private static func config(_ fields: [String: Any], overrides: [String: ConfigValue], file: String) throws -> AlbertConfig {
        var fields = fields
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        do {
            let c: AlbertConfig = try ModelFields.decode(fields, file: file)
            try c.validate()
            return c
        } catch let e as AlbertError {
            throw ConfigError("\(file): model: \(e.message)")
        }
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let tokenizer = try ModelFields.tokenizer(config, for: self)
        let fields = config.model.fields
        let albert = try initFrom.map { try self.config(initFrom: $0, overrides: fields, file: config.file) }
            ?? self.config(preset: config.model.preset ?? "", overrides: fields,
                           vocabSize: fields["vocab_size"] == nil ? tokenizer.vocabSize : nil, file: config.file)
        let train = try ShardDataset(directory: config.data.train!, tokenizer: tokenizer)
        let eval = try config.data.eval.map { try ShardDataset(directory: $0, tokenizer: tokenizer) }
        var options = PretrainingOptions()
        options.maxSequence = settings.sequenceLength
        options.maxPredictions = config.data.maxPredictions
            ?? Int((Double(settings.sequenceLength) * config.data.maskProb).rounded(.up))
        options.maskProbability = config.data.maskProb
        options.shortSequenceProbability = config.data.shortSeqProb
        options.wholeWordMasking = config.data.wholeWordMasking
        options.maxNgram = config.data.maxNgram ?? 3
        options.sentenceOrder = true
        return try AlbertPretrainingTask(config: albert, tokenizer: tokenizer, train: train, eval: eval,
                                         options: options, seed: settings.seed)
    }

    /// AlbertForPreTraining's outputs `last_hidden_state` (B, T, H), `prediction_logits` (B, T, V) and
    /// `sop_logits` (B, 2); the loss (MLM, plus SOP when `sentence_order_label` is present) needs
    /// `labels`. The shared layer's gradient is the sum over its uses and the tied decoder's is part of
    /// `albert.embeddings.word_embeddings.weight`'s, as in PyTorch.
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let albert = try PretrainedALBERT.load(directory: directory, log: log)
        let batch = try AlbertBatch(path: path, config: albert.config)
        let tape = Tape()
        tape.training = false
        let g = albert.model.record(on: tape, batch: batch.batch, sequence: batch.sequence)
        batch.fill(g)
        let B = batch.batch, T = batch.sequence, c = albert.config
        return DebugModel(tape: tape, parameters: albert.model.parameters, arena: albert.arena, outputs: {
            [("last_hidden_state", [B, T, c.hiddenSize], Array(g.lastHiddenState.values)),
             ("prediction_logits", [B, T, c.vocabSize], Array(g.predictionLogits.values)),
             ("sop_logits", [B, 2], Array(g.sopLogits.values))]
        }, loss: batch.labels != nil ? g.loss : nil, missingTargets: "labels")
    }

    /// For `tandem inspect`: the parameter count beside BERT's of the same vocabulary, width, depth and
    /// feed-forward, the saving factorised embeddings and sharing buy.
    public static func describe(directory: String) throws -> String? {
        let c = try PretrainedALBERT.readConfig(directory: directory)
        return "params \(millions(c.parameterCount)) (BERT of the same shape: \(millions(c.bertParameterCount))): "
            + "embedding \(c.embeddingSize), hidden \(c.hiddenSize), \(c.numHiddenLayers) layers sharing one, vocab \(c.vocabSize)"
    }

    /// 11881148 -> "11.9M", 86726 -> "86.7k".
    static func millions(_ n: Int) -> String {
        n >= 1_000_000 ? String(format: "%.1fM", Double(n) / 1e6) : String(format: "%.1fk", Double(n) / 1e3)
    }
}
