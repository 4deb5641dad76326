import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels

/// DistilBERT (Sanh et al. 2019) as transformers' DistilBertForMaskedLM on WordPiece token shards, with
/// two objectives (`DistilBertTask`): `mlm`, masked LM alone, and `distillation`, the triple loss against a
/// BERT teacher (`train.teacher`) whose forward pass runs in the same step, the student starting from
/// every other teacher layer.
public enum DistilBERTFamily: ModelFamily {
    public static let name = "distilbert"
    public static let modelTypes = ["distilbert"]
    public static let objectives = ["mlm", "distillation"]
    public static let batchInputs = ["input_ids", "attention_mask", "labels"]

    /// distilbert-base as released (the student of bert-base: 6 layers of 768), and distilbert-mini (2
    /// layers of 256, the student of bert-mini's shape) for runs on a few cores.
    public static let presets: [(name: String, fields: [String: Any])] = [
        ("distilbert-mini", fields(layers: 2, dim: 256)),
        ("distilbert-base", fields(layers: 6, dim: 768)),
    ]

    static func fields(layers: Int, dim: Int) -> [String: Any] {
        ["model_type": "distilbert", "n_layers": layers, "dim": dim, "n_heads": dim / 64, "hidden_dim": 4 * dim,
         "max_position_embeddings": 512, "vocab_size": 30522, "pad_token_id": 0]
    }

    /// The `model.<field>` keys a DistilBERT config takes.
    static let fieldNames = ["vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim", "dropout",
                             "attention_dropout", "activation", "initializer_range", "pad_token_id"]

    /// The student's fields from its teacher: the teacher's width, heads, feed-forward width, positions
    /// and vocabulary, and half its layers (rounded up), so that block i starts from teacher block 2i.
    static func studentFields(of t: BertConfig) -> [String: Any] {
        ["model_type": "distilbert", "n_layers": (t.numHiddenLayers + 1) / 2, "dim": t.hiddenSize, "n_heads": t.numAttentionHeads,
         "hidden_dim": t.intermediateSize, "max_position_embeddings": t.maxPositionEmbeddings, "vocab_size": t.vocabSize,
         "pad_token_id": t.padTokenId, "dropout": Double(t.hiddenDropoutProb),
         "attention_dropout": Double(t.attentionProbsDropoutProb), "initializer_range": Double(t.initializerRange)]
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        guard let train = config.data.train else { throw ConfigError("\(config.file): data.train is required") }
        let tokenizer = try ModelFields.tokenizer(config, for: self)
        guard tokenizer.maskID != nil, tokenizer.padID != nil else {
            throw ConfigError("data.vocab: \(config.data.vocab!) has no [MASK] or [PAD] token, which DistilBERT's masked LM needs")
        }
        var teacher: PretrainedBERT? = nil
        var distillation: DistillationObjective? = nil
        if config.train.objective == "distillation" {
            guard let path = config.train.teacher else {
                throw ConfigError("\(config.file): train.objective = distillation needs train.teacher (a BERT checkpoint directory)")
            }
            teacher = try loadTeacher(path, tokenizer: tokenizer, vocabPath: config.data.vocab!)
            var d = DistillationObjective()
            d.alphaCE = Float(config.train.alphaCE); d.alphaMLM = Float(config.train.alphaMLM)
            d.alphaCos = Float(config.train.alphaCos); d.temperature = Float(config.train.temperature)
            distillation = d
        }
        var fields: [String: Any]
        if let initFrom {
            fields = try ModelFields.read(directory: initFrom)
        } else if let teacher {
            fields = studentFields(of: teacher.config)
        } else {
            fields = try ModelFields.preset(config.model.preset ?? "", of: self, file: config.file)
            if config.model.fields["vocab_size"] == nil { fields["vocab_size"] = tokenizer.vocabSize }
            if config.model.fields["pad_token_id"] == nil { fields["pad_token_id"] = Int(tokenizer.padID!) }
        }
        try ModelFields.merge(&fields, config.model.fields, known: fieldNames, file: config.file)
        let student: DistilBertConfig = try ModelFields.decode(fields, file: config.file)
        func dataset(_ key: String, _ path: String?) throws -> ShardDataset? {
            guard let path else { return nil }
            do { return try ShardDataset(directory: path, tokenizer: tokenizer) } catch { throw ConfigError("\(key): \(error)") }
        }
        var options = PretrainingOptions()
        options.maxSequence = settings.sequenceLength
        options.maxPredictions = config.data.maxPredictions
            ?? Int((Double(settings.sequenceLength) * config.data.maskProb).rounded(.up))
        options.maskProbability = config.data.maskProb
        options.wholeWordMasking = config.data.wholeWordMasking
        let vocabText = try String(contentsOfFile: config.data.vocab!, encoding: .utf8)
        return try DistilBertTask(config: student, tokenizer: tokenizer, vocabText: vocabText,
                                  train: dataset("data.train", train)!, eval: dataset("data.eval", config.data.eval),
                                  options: options, teacher: teacher, distillation: distillation, seed: settings.seed)
    }

    /// A BERT teacher with its MLM head, of the run's vocabulary: the same vocab_size as data.vocab and, when
    /// the directory holds a vocab.txt (transformers' do), the same tokens. Every failure names train.teacher.
    static func loadTeacher(_ path: String, tokenizer: WordPieceTokenizer, vocabPath: String) throws -> PretrainedBERT {
        let teacher: PretrainedBERT
        do {
            let config = try PretrainedBERT.readConfig(directory: path)
            guard config.modelType == "bert" else {
                throw BertError("\(path): model_type \(config.modelType) is not a BERT teacher (bert)")
            }
            guard config.vocabSize == tokenizer.vocabSize else {
                throw BertError("\(path) has vocab_size \(config.vocabSize) but data.vocab (\(vocabPath)) has \(tokenizer.vocabSize) tokens: the teacher must share the student's vocabulary")
            }
            let vocabFile = (path as NSString).appendingPathComponent("vocab.txt")
            if FileManager.default.fileExists(atPath: vocabFile) {
                let theirs = try WordPieceTokenizer(vocabFile: vocabFile)
                guard theirs.vocabHash == tokenizer.vocabHash else {
                    throw BertError("\(vocabFile) differs from data.vocab (\(vocabPath)) (vocab hash \(theirs.vocabHash.prefix(12)) vs \(tokenizer.vocabHash.prefix(12))): the teacher must share the student's vocabulary")
                }
            }
            teacher = try PretrainedBERT.load(directory: path) { _ in }
            let missing = teacher.report.keptInit.filter { $0.hasPrefix("cls.predictions.") }
            guard missing.isEmpty else {
                throw BertError("\(path) has no MLM head (\(missing.joined(separator: ", ")) missing): the teacher must be a BertForPreTraining or BertForMaskedLM")
            }
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError("train.teacher: \(error)")
        }
        return teacher
    }

    /// DistilBertForMaskedLM's outputs `last_hidden_state` (B, T, C) and `logits` (B, T, V); the loss needs
    /// `labels` (-100 where unscored); `attention_mask` defaults to ones.
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let config = try readConfig(directory: directory)
        let arena = ParameterArena()
        let model = DistilBERT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        try PretrainedBERT.loadWeights(parameters: model.parameters, load: model.load, headPrefix: "vocab_",
                                       baseModel: "DistilBertModel", directory: directory, log: log)
        let batch = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> BertError { BertError("\(path): \(message)") }
        let shape = try batch.info("input_ids").shape
        guard shape.count == 2, shape[0] > 0, shape[1] > 0 else { throw fail("input_ids has shape \(shape), expected (batch, sequence)") }
        let B = shape[0], T = shape[1]
        guard T <= config.maxPositionEmbeddings else {
            throw fail("sequence length \(T) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        let V = Int32(config.vocabSize)
        let ids = try batch.batchIDs("input_ids", shape: [B, T], range: 0...(V - 1), fail: fail)!
        let mask = try batch.batchIDs("attention_mask", shape: [B, T], range: 0...1, fail: fail) ?? [Int32](repeating: 1, count: B * T)
        let labels = try batch.batchIDs("labels", shape: [B, T], range: 0...(V - 1), alsoAllowed: -100, fail: fail)
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: B, sequence: T)
        g.inputIDs.update(from: ids, count: B * T)
        for i in 0..<B * T { g.attentionMask.data[i] = Float(mask[i]) }
        if let labels { g.labels.update(from: labels, count: B * T) }
        return DebugModel(tape: tape, parameters: model.parameters, arena: arena, outputs: {
            [("last_hidden_state", [B, T, config.dim], Array(g.lastHiddenState.values)),
             ("logits", [B, T, config.vocabSize], Array(g.logits.values))]
        }, loss: labels != nil ? g.loss : nil, missingTargets: "labels")
    }

    /// The DistilBertConfig of a transformers directory's `config.json`; errors name the file.
    public static func readConfig(directory: String) throws -> DistilBertConfig {
        try readModelConfig(DistilBertConfig.self, directory: directory, kind: "DistilBERT") { BertError($0) }.config
    }
}
