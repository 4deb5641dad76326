import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels

/// GPT-2 (Radford et al. 2019) in transformers' `GPT2LMHeadModel` layout (`model_type: gpt2`), trained on
/// next-token prediction (`CausalLanguageModelTask`) over the bytes of a text file (the byte-level
/// gpt-nano/gpt-micro presets, vocabulary 256) or over the documents of token shards (`data.vocab`: the
/// tokenizer the shards were made with; its end-of-text token goes before every document).
public enum GPTFamily: ModelFamily {
    public static let name = "gpt2"
    public static let modelTypes = ["gpt2"]
    public static let batchInputs = ["input_ids", "labels"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // nanoGPT's "baby" configs on bytes, scaled to 2 cores: for the quickstart and tests.
        ("gpt-nano", ["vocab_size": 256, "n_positions": 256, "n_embd": 128, "n_layer": 4, "n_head": 4,
                      "bos_token_id": 0, "eos_token_id": 0]),
        ("gpt-micro", ["vocab_size": 256, "n_positions": 512, "n_embd": 192, "n_layer": 6, "n_head": 6,
                       "bos_token_id": 0, "eos_token_id": 0]),
        // GPT-2 as released (the 124M and 350M models), with GPT-2's 50257-token vocabulary unless the
        // run's tokenizer says otherwise.
        ("gpt2", ["vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12]),
        ("gpt2-medium", ["vocab_size": 50257, "n_positions": 1024, "n_embd": 1024, "n_layer": 24, "n_head": 16]),
    ]

    static let fieldNames = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
                             "resid_pdrop", "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range",
                             "bos_token_id", "eos_token_id", "tie_word_embeddings"]

    /// The preset's (or a transformers directory's) fields with `model.<field>` overrides; `vocabSize` and
    /// `eosID` (the run's tokenizer) replace the preset's unless set by `model.<field>`. An unknown field,
    /// a wrong type or an architecture Tandem cannot build is an error naming `model.<field>` and the file.
    public static func config(preset name: String?, initFrom: String? = nil, overrides: [String: ConfigValue],
                              vocabSize: Int? = nil, eosID: Int? = nil, file: String) throws -> GPTConfig {
        var fields: [String: Any]
        if let initFrom {
            fields = try ModelFields.read(directory: initFrom).filter { fieldNames.contains($0.key) && !($0.value is NSNull) }
        } else {
            fields = try ModelFields.preset(name ?? "", of: self, file: file)
            if let vocabSize, overrides["vocab_size"] == nil { fields["vocab_size"] = vocabSize }
            if let eosID {
                if overrides["eos_token_id"] == nil { fields["eos_token_id"] = eosID }
                if overrides["bos_token_id"] == nil { fields["bos_token_id"] = eosID }
            }
        }
        try ModelFields.merge(&fields, overrides, known: fieldNames, file: file)
        let c: GPTConfig = try ModelFields.decode(fields, file: file)
        if let problem = c.problem { throw ConfigError("\(file): \(problem)") }
        return c
    }

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        guard let train = config.data.train else { throw ConfigError("\(config.file): data.train is required") }
        var isDirectory: ObjCBool = false
        if !(FileManager.default.fileExists(atPath: train, isDirectory: &isDirectory) && isDirectory.boolValue) {
            // Bytes of a text file: vocabulary 256, no documents.
            guard config.data.crossDocumentAttention else {
                throw ConfigError("\(config.file): data.cross_document_attention = false needs token shards with documents (data.train \(train) is a text file read as bytes)")
            }
            let gpt = try self.config(preset: config.model.preset, initFrom: initFrom, overrides: config.model.fields,
                                      file: config.file)
            func bytes(_ key: String, _ path: String?) throws -> ByteTokens? {
                guard let path else { return nil }
                do { return try ByteTokens(path: path) } catch { throw ConfigError("\(key): \(error)") }
            }
            return try CausalLanguageModelTask(config: gpt, source: bytes("data.train", train)!, eval: bytes("data.eval", config.data.eval),
                                               sequenceLength: settings.sequenceLength, separator: nil, seed: settings.seed)
        }
        let tokenizer = try ModelFields.textTokenizer(config, for: self)
        // GPT-2's <|endoftext|>, or a WordPiece vocabulary's [SEP].
        let eos: Int32
        if let bpe = tokenizer as? ByteLevelBPETokenizer {
            guard let id = bpe.endOfTextID else {
                throw ConfigError("data.vocab: \(bpe.source) has no \(ByteLevelBPETokenizer.endOfText) token to put between documents")
            }
            eos = id
        } else {
            eos = (tokenizer as! WordPieceTokenizer).sepID
        }
        let gpt = try self.config(preset: config.model.preset, initFrom: initFrom, overrides: config.model.fields,
                                  vocabSize: tokenizer.vocabSize, eosID: Int(eos), file: config.file)
        func stream(_ key: String, _ path: String?) throws -> ShardTokenStream? {
            guard let path else { return nil }
            do {
                return try ShardTokenStream(dataset: ShardDataset(directory: path, tokenizer: tokenizer), separator: eos,
                                            segments: .documentsEachPreceded)
            } catch { throw ConfigError("\(key): \(error)") }
        }
        return try CausalLanguageModelTask(config: gpt, source: stream("data.train", train)!, eval: stream("data.eval", config.data.eval),
                                           sequenceLength: settings.sequenceLength,
                                           separator: config.data.crossDocumentAttention ? nil : eos,
                                           tokenizerFile: try CheckpointVocabulary.file(dataVocab: config.data.vocab!),
                                           seed: settings.seed)
    }

    /// `logits` (B, T, V) of GPT2LMHeadModel; the loss needs `labels` (shifted by the model, as transformers
    /// does: position t predicts labels[t + 1]; -100 is ignored).
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let c = try config(preset: nil, initFrom: directory, overrides: [:], file: directory + "/config.json")
        let arena = ParameterArena()
        let model = GPT(c, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        let weights = try SafeTensorsFile(path: weightsPath)
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: weightsPath) { try weights.copyFloats($0, into: $1) }
        if !report.ignored.isEmpty { log("not used from \(weightsPath): \(report.ignored.joined(separator: ", "))") }
        let batch = try SafeTensorsFile(path: path)
        guard batch.names.contains("input_ids") else { throw ConfigError("\(path): no input_ids tensor") }
        let shape = try batch.info("input_ids").shape
        guard shape.count == 2 else { throw ConfigError("\(path): input_ids has shape \(shape), not [batch, sequence]") }
        let B = shape[0], T = shape[1]
        guard T <= c.nPositions else { throw ConfigError("\(path): sequence \(T) exceeds n_positions = \(c.nPositions)") }
        let ids = try batch.int32s("input_ids")
        if let bad = ids.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw ConfigError("\(path): input_ids holds \(bad), outside the vocabulary of \(c.vocabSize)")
        }
        let labels = batch.names.contains("labels") ? try batch.int32s("labels") : nil
        if let labels, labels.count != B * T { throw ConfigError("\(path): labels do not have input_ids' shape [\(B), \(T)]") }
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: B, sequence: T)
        for i in 0..<B * T {
            g.inputIDs[i] = ids[i]
            let t = i % T
            g.targets[i] = labels.map { t + 1 < T ? $0[i + 1] : -100 } ?? -100
        }
        return DebugModel(tape: tape, parameters: model.parameters, arena: arena, outputs: {
            [("logits", [B, T, c.vocabSize], Array(g.logits.values))]
        }, loss: labels != nil ? g.loss : nil, missingTargets: "labels")
    }
}
