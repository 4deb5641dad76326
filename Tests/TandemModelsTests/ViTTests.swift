import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
import TandemTools
import TandemTraining

/// ViT's config, parameter layout, loader and batch checks.
final class ViTTests: ScratchDirectoryTestCase {
    private func decode(_ json: String) throws -> ViTConfig {
        try JSONDecoder().decode(ViTConfig.self, from: Data(json.utf8))
    }

    // MARK: - Config

    func testConfigTakesViTConfigDefaultsAndRoundTrips() throws {
        let c = try decode(#"{"hidden_size": 36, "num_attention_heads": 3, "image_size": [32, 32], "pooler_act": "tanh"}"#)
        XCTAssertEqual(c, ViTConfig(hiddenSize: 36, numAttentionHeads: 3, imageSize: 32))
        XCTAssertEqual(c.patchSize, 16)
        XCTAssertEqual(c.layerNormEps, 1e-12)
        XCTAssertEqual(c.hiddenDropoutProb, 0)
        XCTAssertEqual(c.numLabels, 2)
        XCTAssertEqual(c.head, .imageClassification)
        XCTAssertEqual(c.numPatches, 4)
        var mim = c
        mim.head = .maskedImageModeling
        mim.id2label = [0: "cat", 1: "dog", 2: "bird"]
        let data = try JSONEncoder().encode(mim)
        XCTAssertEqual(try JSONDecoder().decode(ViTConfig.self, from: data), mim)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(json["model_type"] as? String, "vit")
        XCTAssertEqual(json["architectures"] as? [String], ["ViTForMaskedImageModeling"])
        XCTAssertEqual(json["id2label"] as? [String: String], ["0": "cat", "1": "dog", "2": "bird"])
        XCTAssertEqual(json["label2id"] as? [String: Int], ["cat": 0, "dog": 1, "bird": 2])
    }

    func testConfigReadsNumLabelsWithoutId2label() throws {
        let c = try decode(#"{"num_labels": 10}"#)
        XCTAssertEqual(c.numLabels, 10)
        XCTAssertEqual(c.id2label[9], "LABEL_9")
    }

    func testConfigRejectsWhatTheModelCannotRun() {
        for (json, expected) in [(#"{"hidden_act": "gelu_new"}"#, "hidden_act \"gelu_new\""),
                                 (#"{"hidden_size": 100, "num_attention_heads": 12}"#, "not a multiple of num_attention_heads"),
                                 (#"{"image_size": 30, "patch_size": 4}"#, "not a multiple of patch_size"),
                                 (#"{"image_size": [32, 16]}"#, "only square"),
                                 (#"{"num_labels": 1}"#, "at least two"),
                                 (#"{"id2label": {"0": "a", "2": "b"}}"#, "0..<num_labels"),
                                 (#"{"problem_type": "regression"}"#, "regression")] {
            XCTAssertThrowsError(try decode(json), json) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }

    // MARK: - Parameters

    func testParametersFollowTheCheckpointNamesAndOrder() {
        let config = ViTConfig(hiddenSize: 12, numHiddenLayers: 1, numAttentionHeads: 2, intermediateSize: 20,
                               imageSize: 8, patchSize: 4, numChannels: 3, encoderStride: 4, head: .maskedImageModeling)
        let arena = ParameterArena()
        let vit = ViT(config, arena: arena, rng: Philox(seed: 1))
        let layer = ["attention.attention.query", "attention.attention.key", "attention.attention.value",
                     "attention.output.dense", "intermediate.dense", "output.dense", "layernorm_before", "layernorm_after"]
            .flatMap { ["vit.encoder.layer.0.\($0).weight", "vit.encoder.layer.0.\($0).bias"] }
        XCTAssertEqual(vit.parameters.map(\.name),
                       ["vit.embeddings.cls_token", "vit.embeddings.mask_token", "vit.embeddings.position_embeddings",
                        "vit.embeddings.patch_embeddings.projection.weight", "vit.embeddings.patch_embeddings.projection.bias"]
                       + layer + ["vit.layernorm.weight", "vit.layernorm.bias", "decoder.0.weight", "decoder.0.bias"])
        XCTAssertEqual(arena["vit.embeddings.position_embeddings"]?.shape, Shape(1, 5, 12))
        XCTAssertEqual(arena["vit.embeddings.patch_embeddings.projection.weight"]?.shape, Shape(12, 3, 4, 4))
        XCTAssertEqual(arena["decoder.0.weight"]?.shape, Shape(48, 12, 1, 1))

        var noBias = config
        noBias.qkvBias = false
        noBias.head = .imageClassification
        let classifier = ViT(noBias, arena: ParameterArena(), rng: Philox(seed: 1))
        let names = classifier.parameters.map(\.name)
        XCTAssertFalse(names.contains("vit.embeddings.mask_token"))
        XCTAssertFalse(names.contains("vit.encoder.layer.0.attention.attention.query.bias"))
        XCTAssertEqual(names.suffix(2), ["classifier.weight", "classifier.bias"])
    }

    // MARK: - Loading

    func testLoadsAnEncoderCheckpointWithoutPrefixKeepingTheHeadInit() throws {
        let config = ViTConfig(hiddenSize: 6, numHiddenLayers: 1, numAttentionHeads: 2, intermediateSize: 8,
                               imageSize: 4, patchSize: 2, numChannels: 1)
        let sourceArena = ParameterArena()
        let source = ViT(config, arena: sourceArena, rng: Philox(seed: 2))
        sourceArena.seal()
        var shapes: [String: [Int]] = ["pooler.dense.weight": [6, 6]]
        for p in source.parameters where p.name.hasPrefix("vit.") { shapes[String(p.name.dropFirst(4))] = p.shape.dims }
        let arena = ParameterArena()
        let target = ViT(config, arena: arena, rng: Philox(seed: 3))
        arena.seal()
        let report = try target.load(shapes: shapes, origin: "m.safetensors") { name, into in
            let p = try XCTUnwrap(source.parameters.first { $0.name == "vit." + name })
            _ = into.update(fromContentsOf: p.values)
        }
        XCTAssertFalse(report.prefixed)
        XCTAssertEqual(report.keptInit, ["classifier.weight", "classifier.bias"])
        XCTAssertEqual(report.ignored, ["pooler.dense.weight"])
        XCTAssertEqual(Array(target.positionEmbeddings.values), Array(source.positionEmbeddings.values))
        XCTAssertNotEqual(Array(target.positionEmbeddings.values), [Float](repeating: 0, count: target.positionEmbeddings.count))

        shapes["embeddings.cls_token"] = [1, 1, 7]
        XCTAssertThrowsError(try target.load(shapes: shapes, origin: "m.safetensors") { _, _ in }) { error in
            XCTAssertTrue("\(error)".contains("m.safetensors: tensor embeddings.cls_token has shape [1, 1, 7]"), "\(error)")
        }
        shapes["embeddings.cls_token"] = nil
        XCTAssertThrowsError(try target.load(shapes: shapes, origin: "m.safetensors") { _, _ in }) { error in
            XCTAssertTrue("\(error)".contains("missing tensor embeddings.cls_token"), "\(error)")
        }
    }

    func testRegistryRecognisesViTDirectories() throws {
        XCTAssertEqual(try ModelFamilies.family(ofDirectory: ViTFixtures.path("mim")).name, ViTFamily.name)
        XCTAssertThrowsError(try ModelFamilies.family(ofDirectory: scratch.path))
    }

    // MARK: - The training graph

    /// For the classification heads the last block runs only at the leading tokens: the same logits, loss
    /// and parameter gradients as the graph with every token (`allTokens`, what `debug forward` records).
    func testLeadingTokenGraphGivesTheSameLogitsLossAndGradients() throws {
        for (name, L) in [("classification", 1), ("deit", 2)] {
            let vit = try PretrainedViT.load(directory: ViTFixtures.path(name), log: { _ in })
            let batch = try ViTBatch(path: ViTFixtures.path("\(name)-batch.safetensors"), config: vit.config)
            XCTAssertEqual(vit.config.lastLayerQueryRows, L)
            func run(allTokens: Bool) throws -> (logits: [Float], loss: Float, grads: [Float], hidden: Shape) {
                let tape = Tape()
                tape.training = false
                let g = vit.model.record(on: tape, batch: batch.batch, allTokens: allTokens)
                batch.fill(g)
                let loss = try XCTUnwrap(g.loss)
                vit.arena.zeroGrads()
                tape.forward()
                tape.backward(from: loss)
                let logits = Array(try XCTUnwrap(g.logits).values) + (g.distillationLogits.map { Array($0.values) } ?? [])
                return (logits, loss.data[0], Array(vit.arena.grads), g.lastHiddenState.shape)
            }
            let full = try run(allTokens: true), leading = try run(allTokens: false)
            let B = batch.batch, T = vit.config.sequenceLength, C = vit.config.hiddenSize
            XCTAssertEqual(full.hidden, Shape(B, T, C), name)
            XCTAssertEqual(leading.hidden, Shape(B, L, C), name)
            assertClose(leading.logits, full.logits, atol: 1e-6, rtol: 1e-5, "\(name) logits")
            XCTAssertEqual(leading.loss, full.loss, accuracy: 1e-6 * abs(full.loss), name)
            XCTAssertLessThanOrEqual(relativeError(leading.grads, full.grads), 1e-5, name)
        }
    }

    /// The FLOP count follows the rows each part runs on, written out for the fixtures' shapes (hidden
    /// 36, intermediate 60, 2 layers, 16 patches of 3 x 5 x 5, 7 labels; SimMIM's decoder 36 -> 75).
    func testTrainingFLOPsCountTheLastBlockWhereItRuns() throws {
        let C = 36.0, I = 60.0, NP = 16.0, K = 7.0
        let patch = 75 * C + C, linear = C * C + C, norm = 2 * C
        let block = 2 * norm + 4 * linear + (C * I + I) + (I * C + C)
        let queryBlock = 2 * linear + norm + (C * I + I) + (I * C + C)  // the rest: norm + 2 linear
        func expected(leading L: Double, classifiers: Double, decoder: Double) -> Double {
            let T = NP + L
            let full = 6 * block * T + 12 * C * T * T
            let last = 6 * (norm + 2 * linear) * T + 6 * queryBlock * L + 12 * C * L * T
            return 6 * patch * NP + full + last + 6 * norm * L + 6 * classifiers * (C * K + K) + 6 * decoder * NP
        }
        for (name, value) in [("classification", expected(leading: 1, classifiers: 1, decoder: 0)),
                              ("deit", expected(leading: 2, classifiers: 2, decoder: 0))] {
            let vit = try PretrainedViT.load(directory: ViTFixtures.path(name), log: { _ in })
            XCTAssertEqual(vit.model.trainingFLOPsPerImage, value, accuracy: 1e-9 * value, name)
        }
        let mim = try PretrainedViT.load(directory: ViTFixtures.path("mim"), log: { _ in })
        let T = NP + 1
        let mimFLOPs = 6 * patch * NP + 2 * (6 * block * T + 12 * C * T * T) + 6 * norm * T + 6 * (75 * C + 75) * NP
        XCTAssertEqual(mim.model.trainingFLOPsPerImage, mimFLOPs, accuracy: 1e-9 * mimFLOPs)
    }

    // MARK: - Batches

    func testBatchChecksShapesAndValues() throws {
        let config = try PretrainedViT.load(directory: ViTFixtures.path("classification"), log: { _ in }).config
        func write(_ build: (inout SafeTensorsWriter) -> Void) throws -> String {
            var writer = SafeTensorsWriter()
            build(&writer)
            let path = scratch.appendingPathComponent("\(UUID().uuidString).safetensors").path
            try writer.write(toPath: path)
            return path
        }
        let pixels = [Float](repeating: 0.5, count: 2 * 3 * 20 * 20)
        let wrongSize = try write { $0.add("pixel_values", shape: [2, 3, 16, 16], floats: Array(pixels.prefix(2 * 3 * 16 * 16))) }
        XCTAssertThrowsError(try ViTBatch(path: wrongSize, config: config)) { error in
            XCTAssertTrue("\(error)".contains("pixel_values has shape [2, 3, 16, 16], expected (batch, 3, 20, 20)"), "\(error)")
        }
        let badLabel = try write {
            $0.add("pixel_values", shape: [2, 3, 20, 20], floats: pixels)
            $0.add("labels", shape: [2], int64s: [1, 7])
        }
        XCTAssertThrowsError(try ViTBatch(path: badLabel, config: config)) { error in
            XCTAssertTrue("\(error)".contains("labels[1] = 7 is outside 0...6"), "\(error)")
        }
        let good = try write {
            $0.add("pixel_values", shape: [2, 3, 20, 20], floats: pixels)
            $0.add("labels", shape: [2], int32s: [-100, 6])
            $0.add("bool_masked_pos", shape: [2, 16], bools: (0..<32).map { $0 % 3 == 0 })
        }
        let batch = try ViTBatch(path: good, config: config)
        XCTAssertEqual(batch.batch, 2)
        XCTAssertEqual(batch.labels, [-100, 6])
        XCTAssertEqual(batch.boolMaskedPos?.prefix(4), [1, 0, 0, 1])
    }

    func testGradsWithoutTargetsIsAnError() throws {
        XCTAssertThrowsError(try DebugCommands.grads(model: ViTFixtures.path("mim"),
                                                        batch: ViTFixtures.path("classification-batch.safetensors"),
                                                        out: scratch.appendingPathComponent("g.safetensors").path,
                                                        log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("no bool_masked_pos tensor"), "\(error)")
        }
    }
}
