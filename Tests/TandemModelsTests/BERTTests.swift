import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
import TandemTools
import TandemTraining

/// BERT's config, parameter layout, loader and batch checks, and the gather op its MLM head uses.
final class BERTTests: ScratchDirectoryTestCase {
    // MARK: - Config

    func testConfigTakesBertConfigDefaultsForMissingFields() throws {
        let c = try JSONDecoder().decode(BertConfig.self, from: Data(#"{"hidden_size": 36, "num_attention_heads": 4, "bos_token_id": null}"#.utf8))
        XCTAssertEqual(c, BertConfig(hiddenSize: 36, numAttentionHeads: 4))
        XCTAssertEqual(c.vocabSize, 30522)
        XCTAssertEqual(c.layerNormEps, 1e-12)
        XCTAssertEqual(c.intermediateSize, 3072)
        let again = try JSONDecoder().decode(BertConfig.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(again, c)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as? [String: Any])
        XCTAssertEqual(json["model_type"] as? String, "bert")
        XCTAssertEqual(json["architectures"] as? [String], ["BertForPreTraining"])
    }

    func testConfigRejectsWhatTheModelCannotRun() {
        for (json, expected) in [(#"{"hidden_act": "relu"}"#, "hidden_act \"relu\""),
                                 (#"{"hidden_size": 100, "num_attention_heads": 12}"#, "not a multiple"),
                                 (#"{"position_embedding_type": "relative_key"}"#, "relative_key"),
                                 (#"{"tie_word_embeddings": false}"#, "tie_word_embeddings"),
                                 (#"{"vocab_size": 0}"#, "vocab_size must be positive")] {
            XCTAssertThrowsError(try JSONDecoder().decode(BertConfig.self, from: Data(json.utf8)), json) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }

    // MARK: - Parameters

    func testParametersFollowBertForPreTrainingNamesAndOrder() {
        let arena = ParameterArena()
        let c = BertConfig(vocabSize: 50, hiddenSize: 12, numHiddenLayers: 2, numAttentionHeads: 3, intermediateSize: 20,
                           maxPositionEmbeddings: 16)
        let model = BERT(c, arena: arena, rng: Philox(seed: 0))
        let names = model.parameters.map(\.name)
        XCTAssertEqual(Array(names.prefix(5)), ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                                               "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                                               "bert.embeddings.LayerNorm.bias"])
        XCTAssertEqual(Array(names[5..<21]), [
            "query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias",
        ].map { "bert.encoder.layer.0.attention.self." + $0 } + [
            "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
            "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias",
        ].map { "bert.encoder.layer.0." + $0 })
        XCTAssertEqual(Array(names.suffix(9)), ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.predictions.bias",
                                                "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
                                                "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
                                                "cls.seq_relationship.weight", "cls.seq_relationship.bias"])
        XCTAssertFalse(names.contains { $0.contains("decoder") }, "the decoder is tied to the word embedding")
        let V = 50, C = 12, P = 16, I = 20, L = 2
        let perLayer = 4 * (C * C + C) + 2 * C + (C * I + I) + (I * C + C) + 2 * C
        XCTAssertEqual(arena.parameterCount, (V + P + 2) * C + 2 * C + L * perLayer + (C * C + C) + V + (C * C + C) + 2 * C + (2 * C + 2))
        XCTAssertEqual(arena["bert.embeddings.LayerNorm.weight"]?.decays, false)
        XCTAssertEqual(arena["cls.predictions.bias"]?.decays, false)
        XCTAssertEqual(arena["bert.encoder.layer.1.output.dense.weight"]?.decays, true)
        XCTAssertEqual(Array(arena["bert.embeddings.word_embeddings.weight"]!.values.prefix(C)), [Float](repeating: 0, count: C),
                       "the padding row starts at zero, as HF's init leaves it")
    }

    // MARK: - Loading

    /// The fixture model re-saved as a BertModel (no `bert.` prefix, no heads, with `embeddings.position_ids`)
    /// loads its encoder and reports the heads left at init and the ignored tensor.
    func testBertModelCheckpointLoadsTheEncoderOnly() throws {
        let source = try SafeTensorsFile(path: ModelFixtures.path("bert-random/model.safetensors"))
        let dir = try makeModelDirectory("bertmodel") { writer in
            for name in source.names where name.hasPrefix("bert.") {
                writer.add(String(name.dropFirst(5)), shape: try source.info(name).shape, floats: try source.floats(name))
            }
            writer.add("embeddings.position_ids", shape: [1, 40], int64s: (0..<40).map { Int64($0) })
        }
        var lines: [String] = []
        let bert = try PretrainedBERT.load(directory: dir, log: { lines.append($0) })
        XCTAssertFalse(bert.report.prefixed)
        XCTAssertEqual(bert.report.ignored, ["embeddings.position_ids"])
        XCTAssertEqual(bert.report.keptInit, bert.model.parameters.map(\.name).filter { $0.hasPrefix("cls.") })
        XCTAssertTrue(lines.contains { $0.contains("only the encoder was loaded") }, "\(lines)")
        let name = "bert.encoder.layer.2.output.dense.weight"
        XCTAssertEqual(Array(bert.arena[name]!.values), try source.floats(name))
    }

    /// Older transformers also stored the decoder bias under `cls.predictions.decoder.bias`: it is the
    /// same tensor as `cls.predictions.bias`.
    func testDecoderBiasAliasIsAccepted() throws {
        let source = try SafeTensorsFile(path: ModelFixtures.path("bert-random/model.safetensors"))
        let dir = try makeModelDirectory("alias") { writer in
            for name in source.names {
                let stored = name == "cls.predictions.bias" ? "cls.predictions.decoder.bias" : name
                writer.add(stored, shape: try source.info(name).shape, floats: try source.floats(name))
            }
        }
        let bert = try PretrainedBERT.load(directory: dir, log: { _ in })
        XCTAssertEqual(bert.report.keptInit, [])
        XCTAssertEqual(bert.report.ignored, [])
        XCTAssertEqual(Array(bert.arena["cls.predictions.bias"]!.values), try source.floats("cls.predictions.bias"))
    }

    func testLoaderErrorsNameTheTensorAndFile() throws {
        let source = try SafeTensorsFile(path: ModelFixtures.path("bert-random/model.safetensors"))
        let missing = try makeModelDirectory("missing") { writer in
            for name in source.names where name != "bert.encoder.layer.1.intermediate.dense.bias" {
                writer.add(name, shape: try source.info(name).shape, floats: try source.floats(name))
            }
        }
        XCTAssertThrowsError(try PretrainedBERT.load(directory: missing, log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("missing tensor bert.encoder.layer.1.intermediate.dense.bias"), "\(error)")
            XCTAssertTrue("\(error)".contains(missing + "/model.safetensors"), "\(error)")
        }
        let misshapen = try makeModelDirectory("shape") { writer in
            for name in source.names {
                var shape = try source.info(name).shape
                var values = try source.floats(name)
                if name == "bert.pooler.dense.bias" { shape = [35]; values.removeLast() }
                writer.add(name, shape: shape, floats: values)
            }
        }
        XCTAssertThrowsError(try PretrainedBERT.load(directory: misshapen, log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("bert.pooler.dense.bias has shape [35] but the config needs [36]"), "\(error)")
            XCTAssertTrue("\(error)".contains(misshapen + "/model.safetensors"), "\(error)")
        }
    }

    // MARK: - Batch files

    func testBatchFileIsCheckedAgainstTheModel() throws {
        let config = try PretrainedBERT.load(directory: ModelFixtures.path("bert-random"), log: { _ in }).config
        func batch(_ tensors: (inout SafeTensorsWriter) -> Void) throws -> String {
            var writer = SafeTensorsWriter()
            tensors(&writer)
            let path = scratch.appendingPathComponent("batch-\(UUID().uuidString).safetensors").path
            try writer.write(toPath: path)
            return path
        }
        let outOfVocabulary = try batch { $0.add("input_ids", shape: [1, 3], int32s: [1, 101, 2]) }
        XCTAssertThrowsError(try BertBatch(path: outOfVocabulary, config: config)) { error in
            XCTAssertTrue("\(error)".contains(outOfVocabulary) && "\(error)".contains("input_ids[1] = 101"), "\(error)")
        }
        let badLabels = try batch {
            $0.add("input_ids", shape: [1, 3], int64s: [1, 2, 3])
            $0.add("labels", shape: [1, 3], int64s: [-100, 7, -1])
        }
        XCTAssertThrowsError(try BertBatch(path: badLabels, config: config)) { error in
            XCTAssertTrue("\(error)".contains("labels[2] = -1"), "\(error)")
        }
        let tooLong = try batch { $0.add("input_ids", shape: [1, 41], int64s: [Int64](repeating: 1, count: 41)) }
        XCTAssertThrowsError(try BertBatch(path: tooLong, config: config)) { error in
            XCTAssertTrue("\(error)".contains("exceeds max_position_embeddings 40"), "\(error)")
        }
        let minimal = try BertBatch(path: try batch { $0.add("input_ids", shape: [2, 3], int32s: [1, 2, 3, 4, 5, 6]) }, config: config)
        XCTAssertEqual(minimal.attentionMask, [Int32](repeating: 1, count: 6))
        XCTAssertEqual(minimal.tokenTypeIDs, [Int32](repeating: 0, count: 6))
        XCTAssertNil(minimal.labels)
    }

    func testDebugGradsNeedsLabels() throws {
        var writer = SafeTensorsWriter()
        writer.add("input_ids", shape: [1, 3], int64s: [1, 2, 3])
        let path = scratch.appendingPathComponent("nolabels.safetensors").path
        try writer.write(toPath: path)
        XCTAssertThrowsError(try DebugCommands.grads(model: ModelFixtures.path("bert-random"), batch: path,
                                                     out: scratch.appendingPathComponent("g").path, log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("no labels"), "\(error)")
        }
    }

    /// Dropout (hidden_dropout_prob 0.1 in the fixture) is keyed on the tape's step: a step replays
    /// exactly, another step draws other masks, and `training = false` is the plain forward.
    func testDropoutReplaysPerStepAndTurnsOff() throws {
        let bert = try PretrainedBERT.load(directory: ModelFixtures.path("bert-random"), log: { _ in })
        let batch = try BertBatch(path: ModelFixtures.path("bert-random-batch.safetensors"), config: bert.config)
        let tape = Tape(rng: Philox(seed: 7))
        let g = bert.model.record(on: tape, batch: batch.batch, sequence: batch.sequence)
        batch.fill(g)
        func loss(step: UInt64, training: Bool) -> Float {
            tape.step = step
            tape.training = training
            tape.forward()
            return g.loss.data[0]
        }
        let plain = loss(step: 0, training: false)
        let first = loss(step: 1, training: true)
        XCTAssertEqual(loss(step: 1, training: true), first)
        XCTAssertNotEqual(loss(step: 2, training: true), first)
        XCTAssertNotEqual(first, plain)
        let reference = try SafeTensorsFile(path: ModelFixtures.path("bert-random-forward.safetensors")).floats("loss")[0]
        XCTAssertEqual(plain, reference, accuracy: 1e-5 * reference)
    }

    // MARK: - Ops

    /// gatherRows picks rows of a (B, T, C) activation and scatter-adds back, a repeated row getting the
    /// sum; the padding-aware embedding gives the padding row no gradient from the lookup.
    func testGatherRowsAndPaddingEmbedding() {
        let arena = ParameterArena()
        let table = arena.register("table", Shape(4, 3), initializer: .normal(std: 1), rng: Philox(seed: 3))
        arena.seal()
        let tape = Tape()
        let ids = tape.intInput(count: 4)
        let rows = tape.intInput(count: 3)
        let targets = tape.intInput(count: 3)
        let x = tape.embedding(ids, count: 4, table: table, paddingIndex: 0).reshaped(Shape(2, 2, 3))
        let picked = tape.gatherRows(x, rows: rows, count: 3)
        let loss = tape.crossEntropy(picked, targets: targets)
        ids.update(from: [2, 0, 1, 3], count: 4)
        rows.update(from: [3, 1, 3], count: 3)
        targets.update(from: [0, 1, 2], count: 3)
        arena.zeroGrads()
        tape.forward()
        XCTAssertEqual(Array(picked.values), Array(table.values[9..<12]) + Array(table.values[0..<3]) + Array(table.values[9..<12]))
        tape.backward(from: loss)
        // Rows 1 and 3 of x come from table rows 0 (padding) and 3; rows 0 and 2 were not picked.
        XCTAssertEqual(Array(table.grads[0..<3]), [0, 0, 0])
        XCTAssertEqual(Array(table.grads[3..<9]), [Float](repeating: 0, count: 6))
        let expected = (0..<3).map { c in picked.grad![c] + picked.grad![6 + c] }
        XCTAssertEqual(Array(table.grads[9..<12]), expected)
        XCTAssertNotEqual(expected, [0, 0, 0])
    }

    private func makeModelDirectory(_ name: String, _ tensors: (inout SafeTensorsWriter) throws -> Void) throws -> String {
        let dir = scratch.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ModelFixtures.path("bert-random/config.json"),
                                         toPath: dir.appendingPathComponent("config.json").path)
        var writer = SafeTensorsWriter()
        try tensors(&writer)
        try writer.write(toPath: dir.appendingPathComponent("model.safetensors").path)
        return dir.path
    }
}
