import Foundation
import TandemAutograd
import TandemData
import TandemModels

/// BERT (Devlin et al. 2019) as transformers' BertForPreTraining: masked LM plus next-sentence
/// prediction on WordPiece token shards (`BertPretrainingTask`, objective `mlm_nsp`), or SpanBERT's
/// recipe (Joshi et al. 2020, objective `spanbert`: span masking and the span-boundary objective on
/// single segments, `SpanBertTask`).
public enum BERTFamily: ModelFamily {
    public static let name = "bert"
    public static let modelTypes = ["bert"]
    public static let objectives = ["mlm_nsp", "spanbert"]
    public static let batchInputs = ["input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"]

    /// google-research/bert's table of compact and full models (Turc et al. 2019; Devlin et al. 2019):
    /// L layers, H hidden, H/64 heads, 4H feed-forward.
    public static let presets: [(name: String, fields: [String: Any])] = [
        ("bert-tiny", fields(layers: 2, hidden: 128)),
        ("bert-mini", fields(layers: 4, hidden: 256)),
        ("bert-small", fields(layers: 4, hidden: 512)),
        ("bert-medium", fields(layers: 8, hidden: 512)),
        ("bert-base", fields(layers: 12, hidden: 768)),
        ("bert-large", fields(layers: 24, hidden: 1024)),
    ]

    static func fields(layers: Int, hidden: Int) -> [String: Any] {
        ["num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": hidden / 64,
         "intermediate_size": 4 * hidden, "max_position_embeddings": 512, "vocab_size": 30522]
    }

    /// The `model.<field>` keys a BERT config takes.
    static let fieldNames = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                             "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                             "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id"]

    /// The preset's fields with `overrides` applied, as a BertConfig; `vocabSize` (the run's vocabulary)
    /// replaces the preset's unless `model.vocab_size` is set.
    public static func config(preset name: String, overrides: [String: ConfigValue], vocabSize: Int?,
                              file: String) throws -> BertConfig {
        var fields = try ModelFields.preset(name, of: self, file: file)
        if let vocabSize { fields["vocab_size"] = vocabSize }
        return try config(fields, overrides: overrides, file: file)
    }

    /// A BertConfig read from a transformers directory (`--init-from`) with `model.<field>` overrides.
    public static func config(initFrom directory: String, overrides: [String: ConfigValue], file: String) throws -> BertConfig {
        let base: BertConfig
        do { base = try PretrainedBERT.readConfig(directory: directory) } catch { throw ConfigError("--init-from: \(error)") }
        let fields = try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as! [String: Any]
        return try config(fields, overrides: overrides, file: file)
    }

    private static func config(_ fields: [String: Any], overrides: [String: ConfigValue], file: String) throws -> BertConfig {
        var fields = fields
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        let c: BertConfig = try ModelFields.decode(fields, file: file)
        do { try c.validate() } catch { throw ConfigError("\(file): \(error)") }
        return c
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let tokenizer = try ModelFields.tokenizer(config, for: self)
        let vocabulary = try CheckpointVocabulary.file(dataVocab: config.data.vocab!)
        if let initFrom { try CheckpointVocabulary.check(initFrom: initFrom, dataVocab: config.data.vocab!, tokenizer: tokenizer) }
        var fields = config.model.fields
        let spanBERT = config.train.objective == "spanbert"
        var head = SpanBoundaryHeadConfig()
        if spanBERT {
            // The head's sizes: model.<field>, else --init-from's config.json, else SpanBERT's.
            let saved = try initFrom.map { try ModelFields.read(directory: $0) } ?? [:]
            for (key, path) in zip(SpanBertTask.headFields, [\SpanBoundaryHeadConfig.maxTargets, \SpanBoundaryHeadConfig.positionSize]) {
                if let value = fields.removeValue(forKey: key) {
                    guard case .int(let n) = value, n > 0 else { throw ConfigError("\(config.file): model.\(key) must be a positive integer") }
                    head[keyPath: path] = n
                } else if let n = saved[key] as? Int {
                    head[keyPath: path] = n
                }
            }
        } else {
            for key in SpanBertTask.headFields where fields[key] != nil {
                throw ConfigError("\(config.file): model.\(key) is a field of SpanBERT's head (train.objective: spanbert)")
            }
        }
        let bert = try initFrom.map { try self.config(initFrom: $0, overrides: fields, file: config.file) }
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
        options.maxNgram = config.data.maxNgram ?? 1
        if spanBERT {
            var span = SpanMaskingOptions()
            span.p = config.data.spanP
            span.maxSpan = config.data.maxSpan
            span.maxTargets = head.maxTargets
            options.spanMasking = span
            let task = try SpanBertTask(config: bert, head: head, tokenizer: tokenizer, train: train, eval: eval, options: options,
                                        seed: settings.seed)
            task.checkpointVocabulary = vocabulary
            return task
        }
        let task = try BertPretrainingTask(config: bert, tokenizer: tokenizer, train: train, eval: eval,
                                           options: options, seed: settings.seed)
        task.checkpointVocabulary = vocabulary
        return task
    }

    /// BertForPreTraining's outputs `last_hidden_state` (B, T, C), `prediction_logits` (B, T, V) and
    /// `seq_relationship_logits` (B, 2); the loss (MLM, plus NSP when `next_sentence_label` is present)
    /// needs `labels`. The tied decoder's gradient is part of `bert.embeddings.word_embeddings.weight`'s,
    /// as in PyTorch.
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let bert = try PretrainedBERT.load(directory: directory, log: log)
        let batch = try BertBatch(path: path, config: bert.config)
        let tape = Tape()
        tape.training = false
        let g = bert.model.record(on: tape, batch: batch.batch, sequence: batch.sequence)
        batch.fill(g)
        let B = batch.batch, T = batch.sequence, c = bert.config
        return DebugModel(tape: tape, parameters: bert.model.parameters, arena: bert.arena, outputs: {
            [("last_hidden_state", [B, T, c.hiddenSize], Array(g.lastHiddenState.values)),
             ("prediction_logits", [B, T, c.vocabSize], Array(g.predictionLogits.values)),
             ("seq_relationship_logits", [B, 2], Array(g.seqRelationshipLogits.values))]
        }, loss: batch.labels != nil ? g.loss : nil, missingTargets: "labels")
    }
}
