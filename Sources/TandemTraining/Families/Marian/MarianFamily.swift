import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// The Transformer encoder-decoder (`MarianMT`, HF MarianMTModel layout) trained for translation on a
/// parallel corpus by the translation task the recurrent `seq2seq` family uses (`Seq2SeqTask`: length
/// bucketing, eval loss, perplexity and BLEU of greedy translations).
///
/// One vocabulary for both sides (the model's shared embedding): `data.vocab` (`data.cased`), with which
/// `data.train` / `data.train_target` (and the eval pair) were both prepared; `launch/prepare-translation
/// --joint` builds one, cased, over both sides' training text. `data.target_vocab`, when set, must be the
/// same file. pad is [PAD], the decoder starts from [CLS] and eos is [SEP] unless `model.<field>` sets them.
/// `data.seq_len` and `data.target_seq_len` must fit `max_position_embeddings`.
public enum MarianFamily: ModelFamily {
    public static let name = "marian"
    public static let modelTypes = ["marian"]
    public static let batchInputs = ["input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "labels"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // For tests and quick checks.
        ("transformer-tiny", fields(d: 32, layers: 2, heads: 4, ffn: 64, activation: "swish", dropout: 0.1)),
        // What 2 CPU cores train in minutes on the EN-ES / EN-HI corpora.
        ("transformer-small", fields(d: 256, layers: 3, heads: 4, ffn: 1024, activation: "swish", dropout: 0.1)),
        // Vaswani et al. 2017's base model: d_model 512, 6 + 6 layers, 8 heads, ffn 2048, ReLU, dropout 0.1.
        ("transformer-base", fields(d: 512, layers: 6, heads: 8, ffn: 2048, activation: "relu", dropout: 0.1)),
        // The same shape as the opus-mt models (Marian's transformer base): swish.
        ("marian-base", fields(d: 512, layers: 6, heads: 8, ffn: 2048, activation: "swish", dropout: 0.1)),
    ]

    static func fields(d: Int, layers: Int, heads: Int, ffn: Int, activation: String, dropout: Double) -> [String: Any] {
        ["vocab_size": 8000, "d_model": d, "encoder_layers": layers, "decoder_layers": layers, "encoder_attention_heads": heads,
         "decoder_attention_heads": heads, "encoder_ffn_dim": ffn, "decoder_ffn_dim": ffn, "max_position_embeddings": 512,
         "dropout": dropout, "attention_dropout": 0.0, "activation_dropout": 0.0, "activation_function": activation,
         "scale_embedding": true, "pad_token_id": 0, "decoder_start_token_id": 2, "eos_token_id": 3]
    }

    static let fieldNames = ["vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                             "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings",
                             "dropout", "attention_dropout", "activation_dropout", "activation_function", "scale_embedding",
                             "init_std", "pad_token_id", "decoder_start_token_id", "eos_token_id", "decoder_vocab_size",
                             "share_encoder_decoder_embeddings", "tie_word_embeddings", "encoder_layerdrop", "decoder_layerdrop"]

    /// The preset's (or a model directory's) fields with `model.<field>` overrides. Without `initFrom`,
    /// the vocabulary size and special ids come from `vocab` unless `model.<field>` sets them.
    public static func config(preset name: String?, initFrom: String?, overrides: [String: ConfigValue],
                              vocab: WordPieceTokenizer?, file: String) throws -> MarianConfig {
        var fields = try initFrom.map { try ModelFields.read(directory: $0) } ?? ModelFields.preset(name ?? "", of: self, file: file)
        if initFrom == nil, let vocab {
            fields["vocab_size"] = vocab.vocabSize
            fields["pad_token_id"] = Int(vocab.padID ?? 0)
            fields["decoder_start_token_id"] = Int(vocab.clsID)
            fields["eos_token_id"] = Int(vocab.sepID)
        }
        for key in fields.keys where !fieldNames.contains(key) { fields[key] = nil }
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        if overrides["vocab_size"] != nil { fields["decoder_vocab_size"] = nil }
        do {
            let data = try JSONSerialization.data(withJSONObject: fields)
            return try JSONDecoder().decode(MarianConfig.self, from: data)
        } catch let e as MarianError {
            throw ConfigError("\(file): \(e)")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.dataCorrupted(let context) {
            throw ConfigError("\(file): model.\(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type")
        }
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let d = config.data
        let vocab = try ModelFields.tokenizer(config, for: self)
        if let target = d.targetVocab, target != d.vocab {
            throw ConfigError("\(config.file): data.target_vocab = \(target) differs from data.vocab = \(d.vocab!): the marian family embeds both sides with one table, so both sides' shards need one vocabulary (launch/prepare-translation --joint builds one)")
        }
        let model = try self.config(preset: config.model.preset, initFrom: initFrom, overrides: config.model.fields, vocab: vocab,
                                    file: config.file)
        guard model.vocabSize >= vocab.vocabSize else {
            throw ConfigError("\(config.file): model.vocab_size = \(model.vocabSize) is smaller than the \(vocab.vocabSize) tokens of its vocabulary")
        }
        let maxTarget = d.targetSeqLen ?? d.seqLen
        for (key, length) in [("data.seq_len", d.seqLen), ("data.target_seq_len", maxTarget)] where length > model.maxPositionEmbeddings {
            throw ConfigError("\(config.file): \(key) = \(length) exceeds model.max_position_embeddings = \(model.maxPositionEmbeddings)")
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
                return try ParallelDataset(sourceDirectory: source, sourceVocab: vocab, targetDirectory: target, targetVocab: vocab)
            } catch { throw ConfigError("\(sourceKey), \(targetKey): \(error)") }
        }
        guard let train = try corpus("data.train", d.train, "data.train_target", d.trainTarget) else {
            throw ConfigError("\(config.file): data.train is required")
        }
        let eval = try corpus("data.eval", d.eval, "data.eval_target", d.evalTarget)
        let summary = "marian d_model=\(model.dModel) layers=\(model.encoderLayers)+\(model.decoderLayers) heads=\(model.encoderAttentionHeads)/\(model.decoderAttentionHeads) ffn=\(model.encoderFfnDim)/\(model.decoderFfnDim) \(model.activationFunction) vocab=\(model.vocabSize) (shared)"
        let lowercase = vocab.normalization.lowercase
        let json = ModelFields.configJSON(model, adding: ["source_do_lower_case": lowercase, "target_do_lower_case": lowercase])
        return try Seq2SeqTask(model: { MarianMT(model, arena: $0, rng: $1) }, summary: summary, configJSON: json, train: train,
                               eval: eval, sourceVocab: vocab, targetVocab: vocab, vocabFiles: (d.vocab!, d.vocab!),
                               maxSource: d.seqLen, maxTarget: maxTarget, bucketByLength: d.bucketByLength,
                               labelSmoothing: Float(config.train.labelSmoothing), globalBatch: settings.globalBatch,
                               seed: settings.seed)
    }

    /// A transformers Marian directory with a batch file (`input_ids`, `attention_mask`, `decoder_input_ids`,
    /// optional `decoder_attention_mask` and `labels`), for `tandem debug forward|grads`: outputs `logits`
    /// and `encoder_last_hidden_state`, and the loss when the batch has labels; the gradients of every
    /// trainable parameter.
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        let config = try self.config(preset: nil, initFrom: directory, overrides: [:], vocab: nil, file: configPath)
        let arena = ParameterArena()
        let model = MarianMT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        let weights = try SafeTensorsFile(path: weightsPath)
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: weightsPath) { try weights.copyFloats($0, into: $1) }
        if !report.ignored.isEmpty { log("\(weightsPath): ignored \(report.ignored.joined(separator: ", "))") }
        if !report.keptInit.isEmpty { log("\(weightsPath): kept the init of \(report.keptInit.joined(separator: ", "))") }

        let batch = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> Error { ConfigError("\(path): \(message)") }
        guard let source = batch.tensors["input_ids"], source.shape.count == 2,
              let target = batch.tensors["decoder_input_ids"], target.shape.count == 2, target.shape[0] == source.shape[0] else {
            throw fail("needs input_ids (B, S) and decoder_input_ids (B, T)")
        }
        let B = source.shape[0], S = source.shape[1], T = target.shape[1]
        let ids = 0...Int32(config.vocabSize - 1)
        let tape = Tape()
        tape.training = false
        let graph = model.record(on: tape, batch: B, sourceLength: S, targetLength: T)
        graph.sourceIDs.update(from: try batch.batchIDs("input_ids", shape: [B, S], range: ids, fail: fail)!, count: B * S)
        graph.decoderInputIDs.update(from: try batch.batchIDs("decoder_input_ids", shape: [B, T], range: ids, fail: fail)!, count: B * T)
        func lengths(_ name: String, _ L: Int) throws -> [Int32] {
            guard let mask = try batch.batchIDs(name, shape: [B, L], range: 0...1, fail: fail) else { return Array(repeating: Int32(L), count: B) }
            do { return try Seq2SeqModel.sourceLengths(attentionMask: mask.map { Int64($0) }, batch: B, length: L) } catch { throw fail("\(name): \(error)") }
        }
        graph.sourceLengths.update(from: try lengths("attention_mask", S), count: B)
        graph.targetLengths.update(from: try lengths("decoder_attention_mask", T), count: B)
        let labels = try batch.batchIDs("labels", shape: [B, T], range: ids, alsoAllowed: -100, fail: fail)
        if let labels { graph.labels.update(from: labels, count: B * T) }
        let C = config.dModel, V = config.vocabSize
        // final_logits_bias is a buffer in transformers, with no gradient: `debug grads` lists what
        // named_parameters() does.
        return DebugModel(tape: tape, parameters: model.parameters.filter { $0 !== model.finalLogitsBias }, arena: arena, outputs: {
            [("logits", [B, T, V], Array(graph.logits.values)),
             ("encoder_last_hidden_state", [B, S, C], Array(graph.encoderOutput.values))]
        }, loss: labels == nil ? nil : graph.loss, missingTargets: "labels")
    }
}
