import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemModels

// `tandem debug forward|grads` (DESIGN.md "Command line"): a transformers model directory and a batch
// file in, the model's outputs or the loss and every parameter gradient out, under HF names, so that
// a script can compare them with PyTorch's.

// MARK: - Loading a transformers BERT

/// A BERT built from a transformers model directory (`config.json` + `model.safetensors`).
public struct PretrainedBERT {
    public let config: BertConfig
    public let arena: ParameterArena
    public let model: BERT
    public let report: BERT.LoadReport

    /// Reads `directory/config.json` (HF BertConfig fields, defaults for missing ones) and fills a new,
    /// sealed arena from `directory/model.safetensors` (names with or without `bert.`; see
    /// `BERT.load(shapes:origin:copy:)`). `log` hears which parameters kept their init and which
    /// tensors were ignored.
    public static func load(directory: String, log: (String) -> Void) throws -> PretrainedBERT {
        let config = try readConfig(directory: directory)
        let arena = ParameterArena()
        let model = BERT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let report = try loadWeights(into: model, directory: directory, log: log)
        return PretrainedBERT(config: config, arena: arena, model: model, report: report)
    }

    /// The BertConfig of a transformers directory's `config.json`.
    public static func readConfig(directory: String) throws -> BertConfig {
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        do {
            return try JSONDecoder().decode(BertConfig.self, from: Data(contentsOf: URL(fileURLWithPath: configPath)))
        } catch let e as BertError {
            throw BertError("\(configPath): \(e.message)")
        } catch let e as DecodingError {
            throw BertError("\(configPath): not a valid BERT config.json (\(describeDecodingError(e)))")
        } catch {
            throw BertError("\(configPath): cannot read (\(error.localizedDescription))")
        }
    }

    /// Copies a transformers directory's `model.safetensors` into `model`'s parameters and logs what kept
    /// its init (the heads of a BertModel checkpoint) and what was ignored.
    @discardableResult
    public static func loadWeights(into model: BERT, directory: String, log: (String) -> Void) throws -> BERT.LoadReport {
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw BertError("\(weightsPath): no such file (only safetensors weights are read)")
        }
        let file = try SafeTensorsFile(path: weightsPath)
        let report = try model.load(shapes: file.tensors.mapValues(\.shape), origin: weightsPath) { name, into in
            try file.copyFloats(name, into: into)
        }
        if !report.keptInit.isEmpty {
            let heads = model.parameters.filter { $0.name.hasPrefix("cls.") }.map(\.name)
            let noHeads = heads.allSatisfy(report.keptInit.contains) ? " (a BertModel checkpoint: only the encoder was loaded)" : ""
            log("\(weightsPath): \(report.keptInit.count) parameters keep their random init\(noHeads): "
                + report.keptInit.joined(separator: ", "))
        }
        if !report.ignored.isEmpty {
            log("\(weightsPath): ignored \(report.ignored.joined(separator: ", "))")
        }
        return report
    }
}

/// A config.json decoding error as "field.path: what is wrong", for messages that name the file.
func describeDecodingError(_ e: DecodingError) -> String {
    switch e {
    case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
        let path = c.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
    @unknown default:
        return "\(e)"
    }
}

// MARK: - Batch files

/// A BERT batch file (DESIGN.md "Batch files"): safetensors named after HF's forward arguments,
/// `input_ids` (B, T) required, `attention_mask` and `token_type_ids` (B, T) optional (ones and zeros
/// by default, as in HF), `labels` (B, T) with -100 for unscored positions and `next_sentence_label`
/// (B) optional; integer dtypes (I64 or I32).
public struct BertBatch {
    public let batch: Int
    public let sequence: Int
    public let inputIDs: [Int32]
    public let tokenTypeIDs: [Int32]
    public let attentionMask: [Int32]
    public let labels: [Int32]?
    public let nextSentenceLabels: [Int32]?

    /// Reads and checks `path` against `config`: every id, segment and label must fit the model, the
    /// mask must be 0/1 and T at most max_position_embeddings; errors name the file and the tensor.
    public init(path: String, config: BertConfig) throws {
        let file = try SafeTensorsFile(path: path)
        func fail(_ message: String) -> BertError { BertError("\(path): \(message)") }
        let idsShape = try file.info("input_ids").shape
        guard idsShape.count == 2, idsShape[0] > 0, idsShape[1] > 0 else {
            throw fail("input_ids has shape \(idsShape), expected (batch, sequence)")
        }
        let B = idsShape[0], T = idsShape[1]
        guard T <= config.maxPositionEmbeddings else {
            throw fail("sequence length \(T) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        func read(_ name: String, shape: [Int], range: ClosedRange<Int32>?, alsoAllowed: Int32? = nil) throws -> [Int32]? {
            guard let info = file.tensors[name] else { return nil }
            guard info.shape == shape else { throw fail("\(name) has shape \(info.shape), expected \(shape)") }
            let values = try file.int32s(name)
            if let range, let i = values.firstIndex(where: { !range.contains($0) && $0 != alsoAllowed }) {
                throw fail("\(name)[\(i)] = \(values[i]) is outside \(range.lowerBound)...\(range.upperBound)")
            }
            return values
        }
        let V = Int32(config.vocabSize)
        batch = B
        sequence = T
        inputIDs = try read("input_ids", shape: [B, T], range: 0...(V - 1))!
        tokenTypeIDs = try read("token_type_ids", shape: [B, T], range: 0...Int32(config.typeVocabSize - 1))
            ?? [Int32](repeating: 0, count: B * T)
        attentionMask = try read("attention_mask", shape: [B, T], range: 0...1) ?? [Int32](repeating: 1, count: B * T)
        labels = try read("labels", shape: [B, T], range: 0...(V - 1), alsoAllowed: -100)
        nextSentenceLabels = try read("next_sentence_label", shape: [B], range: 0...1, alsoAllowed: -100)
    }

    /// Copies the batch into a graph recorded for (B, T) with every position scored; absent labels
    /// become -100, so their loss is 0.
    public func fill(_ g: BERT.Graph) {
        precondition(g.batch == batch && g.sequence == sequence && g.maskedPositions == nil,
                     "the graph was recorded for another batch shape")
        let N = batch * sequence
        g.inputIDs.update(from: inputIDs, count: N)
        g.tokenTypeIDs.update(from: tokenTypeIDs, count: N)
        for i in 0..<N { g.attentionMask.data[i] = Float(attentionMask[i]) }
        if let labels { g.mlmLabels.update(from: labels, count: N) } else { g.mlmLabels.update(repeating: -100, count: N) }
        if let nextSentenceLabels {
            g.nextSentenceLabels.update(from: nextSentenceLabels, count: batch)
        } else {
            g.nextSentenceLabels.update(repeating: -100, count: batch)
        }
    }
}

// MARK: - The commands

/// `tandem debug forward` and `tandem debug grads`, with dropout off.
public enum DebugCommands {
    /// Writes `last_hidden_state` (B, T, C), `prediction_logits` (B, T, V), `seq_relationship_logits`
    /// (B, 2) and, when the batch has `labels`, the scalar `loss` (MLM, plus NSP when
    /// `next_sentence_label` is present, as BertForPreTraining's) to `outputPath`.
    public static func forward(model directory: String, batch batchPath: String, out outputPath: String,
                               log: (String) -> Void = standardErrorLog) throws {
        let bert = try PretrainedBERT.load(directory: directory, log: log)
        let batch = try BertBatch(path: batchPath, config: bert.config)
        let tape = Tape()
        tape.training = false
        let g = bert.model.record(on: tape, batch: batch.batch, sequence: batch.sequence)
        batch.fill(g)
        tape.forward()
        let B = batch.batch, T = batch.sequence
        var writer = SafeTensorsWriter()
        writer.add("last_hidden_state", shape: [B, T, bert.config.hiddenSize], borrowing: UnsafeBufferPointer(g.lastHiddenState.values))
        writer.add("prediction_logits", shape: [B, T, bert.config.vocabSize], borrowing: UnsafeBufferPointer(g.predictionLogits.values))
        writer.add("seq_relationship_logits", shape: [B, 2], borrowing: UnsafeBufferPointer(g.seqRelationshipLogits.values))
        if batch.labels != nil { writer.add("loss", shape: [], floats: [g.loss.data[0]]) }
        try writer.write(toPath: outputPath)
    }

    /// Writes the scalar `loss` of the batch (which needs `labels`; NSP is added when
    /// `next_sentence_label` is present) and d(loss)/d(parameter) for every parameter under its HF
    /// BertForPreTraining name (also for a BertModel checkpoint) to `outputPath`. The tied decoder's gradient is part of
    /// `bert.embeddings.word_embeddings.weight`'s, as in PyTorch.
    public static func grads(model directory: String, batch batchPath: String, out outputPath: String,
                             log: (String) -> Void = standardErrorLog) throws {
        let bert = try PretrainedBERT.load(directory: directory, log: log)
        let batch = try BertBatch(path: batchPath, config: bert.config)
        guard batch.labels != nil else {
            throw BertError("\(batchPath): no labels tensor, so there is no loss to differentiate")
        }
        let tape = Tape()
        tape.training = false
        let g = bert.model.record(on: tape, batch: batch.batch, sequence: batch.sequence)
        batch.fill(g)
        bert.arena.zeroGrads()
        tape.forward()
        tape.backward(from: g.loss)
        var writer = SafeTensorsWriter()
        writer.add("loss", shape: [], floats: [g.loss.data[0]])
        for p in bert.model.parameters {
            writer.add(p.name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(p.grads))
        }
        try writer.write(toPath: outputPath)
    }

    /// Writes a line to standard error, where the commands' remarks go (standard output stays clean).
    public static func standardErrorLog(_ line: String) {
        FileHandle.standardError.write(Data("tandem: \(line)\n".utf8))
    }
}
