import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
import TandemTraining

/// ViT's config, parameter layout, loader and batch checks.
final class ViTTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-vit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

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

    func testDispatchRecognisesViTDirectories() {
        XCTAssertTrue(PretrainedViT.isViT(directory: ViTFixtures.path("mim")))
        XCTAssertFalse(PretrainedViT.isViT(directory: scratch.path))
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
        XCTAssertThrowsError(try ViTDebugCommands.grads(model: ViTFixtures.path("mim"),
                                                        batch: ViTFixtures.path("classification-batch.safetensors"),
                                                        out: scratch.appendingPathComponent("g.safetensors").path,
                                                        log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("no bool_masked_pos tensor"), "\(error)")
        }
    }
}
