import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels

/// RoBERTa (Liu et al. 2019) as transformers' RobertaForMaskedLM: BERT's encoder pretrained on masked LM
/// alone, with dynamic masking, FULL-SENTENCES inputs packed across documents and a byte-level BPE whose
/// `<s>`, `<pad>`, `</s>` and `<mask>` tokens (`tandem vocab --type bpe --roberta`) frame and pad the
/// samples (`RobertaPretrainingTask`).
public enum RobertaFamily: ModelFamily {
    public static let name = "roberta"
    public static let modelTypes = ["roberta"]
    public static let batchInputs = ["input_ids", "attention_mask", "labels"]

    /// roberta-base and roberta-large as released (fairseq's `roberta.base`/`roberta.large`), and the
    /// compact BERT shapes (Turc et al. 2019) with RoBERTa's embeddings for runs on a few cores.
    public static let presets: [(name: String, fields: [String: Any])] = [
        ("roberta-tiny", fields(layers: 2, hidden: 128)),
        ("roberta-mini", fields(layers: 4, hidden: 256)),
        ("roberta-small", fields(layers: 4, hidden: 512)),
        ("roberta-base", fields(layers: 12, hidden: 768)),
        ("roberta-large", fields(layers: 24, hidden: 1024)),
    ]

    static func fields(layers: Int, hidden: Int) -> [String: Any] {
        ["model_type": "roberta", "num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": hidden / 64,
         "intermediate_size": 4 * hidden, "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
         "vocab_size": 50265, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2]
    }

    static let fieldNames = BERTFamily.fieldNames + ["bos_token_id", "eos_token_id"]

    /// The special ids of a RoBERTa tokenizer (a byte-level BPE with `<s>`, `<pad>`, `</s>` and `<mask>`).
    struct Specials { let bos: Int32, pad: Int32, eos: Int32, mask: Int32, unk: Int32? }

    static func specials(_ tokenizer: ByteLevelBPETokenizer) throws -> Specials {
        var found: [String: Int32] = [:]
        for t in ["<s>", "<pad>", "</s>", "<mask>", "<unk>"] { found[t] = tokenizer.ids[t] }
        let missing = ["<s>", "<pad>", "</s>", "<mask>"].filter { found[$0] == nil }
        guard missing.isEmpty else {
            throw ConfigError("data.vocab: \(tokenizer.source) has no \(missing.joined(separator: ", ")) token, which RoBERTa needs (train one with tandem vocab --type bpe --roberta)")
        }
        return Specials(bos: found["<s>"]!, pad: found["<pad>"]!, eos: found["</s>"]!, mask: found["<mask>"]!, unk: found["<unk>"])
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        guard let train = config.data.train else { throw ConfigError("\(config.file): data.train is required") }
        guard let tokenizer = try ModelFields.textTokenizer(config, for: self) as? ByteLevelBPETokenizer else {
            throw ConfigError("data.vocab: \(config.data.vocab!) is a WordPiece vocabulary; RoBERTa needs a byte-level BPE tokenizer.json with <s>, <pad>, </s> and <mask> (tandem vocab --type bpe --roberta)")
        }
        let ids = try specials(tokenizer)
        var fields: [String: Any]
        if let initFrom {
            let base: BertConfig
            do { base = try PretrainedBERT.readConfig(directory: initFrom) } catch { throw ConfigError("--init-from: \(error)") }
            fields = try JSONSerialization.jsonObject(with: JSONEncoder().encode(base)) as! [String: Any]
        } else {
            fields = try ModelFields.preset(config.model.preset ?? "", of: self, file: config.file)
            for (key, value) in [("vocab_size", tokenizer.vocabSize), ("pad_token_id", Int(ids.pad)), ("bos_token_id", Int(ids.bos)),
                                 ("eos_token_id", Int(ids.eos))] where config.model.fields[key] == nil {
                fields[key] = value
            }
        }
        try ModelFields.merge(&fields, config.model.fields, known: fieldNames, file: config.file)
        let roberta: BertConfig = try ModelFields.decode(fields, file: config.file)
        do { try roberta.validate() } catch { throw ConfigError("\(config.file): \(error)") }
        guard roberta.isRoberta else { throw ConfigError("--init-from: \(initFrom ?? "") is not a RoBERTa checkpoint (model_type \(roberta.modelType))") }
        guard roberta.padTokenId == Int(ids.pad) else {
            throw ConfigError("\(config.file): model.pad_token_id = \(roberta.padTokenId) but data.vocab's <pad> is \(ids.pad): the position ids count from the padding id")
        }
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
        let text = try String(contentsOfFile: config.data.vocab!, encoding: .utf8)
        return try RobertaPretrainingTask(config: roberta, tokenizer: tokenizer, specials: ids, tokenizerJSON: text,
                                          train: dataset("data.train", train)!, eval: dataset("data.eval", config.data.eval),
                                          options: options, seed: settings.seed)
    }

    /// RobertaForMaskedLM's `logits` (B, T, V); the loss needs `labels` (-100 where unscored). Position ids
    /// follow from `input_ids` as in transformers; `attention_mask` defaults to ones.
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let config = try PretrainedBERT.readConfig(directory: directory)
        let arena = ParameterArena()
        let model = RoBERTa(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        try PretrainedBERT.loadWeights(parameters: model.parameters, load: model.load, headPrefix: "lm_head.",
                                       baseModel: "RobertaModel", directory: directory, log: log)
        let batch = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> BertError { BertError("\(path): \(message)") }
        let shape = try batch.info("input_ids").shape
        guard shape.count == 2, shape[0] > 0, shape[1] > 0 else { throw fail("input_ids has shape \(shape), expected (batch, sequence)") }
        let B = shape[0], T = shape[1]
        guard T <= model.maxSequence else {
            throw fail("sequence length \(T) needs positions up to \(T + config.padTokenId), beyond max_position_embeddings \(config.maxPositionEmbeddings)")
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
            [("last_hidden_state", [B, T, config.hiddenSize], Array(g.lastHiddenState.values)),
             ("logits", [B, T, config.vocabSize], Array(g.logits.values))]
        }, loss: labels != nil ? g.loss : nil, missingTargets: "labels")
    }
}
