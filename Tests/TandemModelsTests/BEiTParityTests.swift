import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport

/// BEiT against transformers' BeitForMaskedImageModeling and BeitForImageClassification, on the fixtures of
/// scripts/fixtures/make_beit_fixtures.py (random models of 20 px images, patch 5, hidden 36 = 3 heads, 2
/// layers, intermediate 60; per-layer, shared, and both relative position tables; mean or [CLS] pooling;
/// with and without layer scale; drop_path_rate 0.2 and hidden dropout 0.1, off in eval mode): a checkpoint
/// written by `save_pretrained` loads with nothing missing or left over and our state dict has exactly its
/// keys; outputs within 1e-4, the loss within 1e-5 relative and every gradient within 1e-4 relative.
final class BEiTParityTests: XCTestCase {
    static func path(_ name: String) -> String { ModelFixtures.path("beit/" + name) }

    /// The fixture model `name`, loaded from its save_pretrained directory.
    static func model(_ name: String) throws -> (BEiT, ParameterArena) {
        let directory = path(name)
        let config = try JSONDecoder().decode(BEiTConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
        let arena = ParameterArena()
        let model = try BEiT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) { try weights.copyFloats($0, into: $1) }
        XCTAssertEqual(report.ignored, [], name)
        XCTAssertEqual(report.keptInit, [], name)
        XCTAssertTrue(report.prefixed, name)
        XCTAssertEqual(Set(arena.parameters.map(\.name)), Set(weights.names), "\(name): state dict keys")
        XCTAssertEqual(arena.parameters.count, weights.names.count, name)
        return (model, arena)
    }

    func testMaskedImageModelingMatchesTransformers() throws {
        try check("mim", head: .maskedImageModeling, outputs: ["last_hidden_state", "logits"])
    }

    func testMeanPoolingClassificationWithSharedBiasMatchesTransformers() throws {
        try check("classification", head: .imageClassification, outputs: ["last_hidden_state", "logits", "pooler_output"])
    }

    func testClassTokenClassificationWithBothBiasesMatchesTransformers() throws {
        try check("classification-cls", head: .imageClassification, outputs: ["last_hidden_state", "logits", "pooler_output"])
    }

    private func check(_ name: String, head: BEiTHead, outputs: [String]) throws {
        let (model, arena) = try Self.model(name)
        XCTAssertEqual(model.config.head, head)
        XCTAssertGreaterThan(model.config.dropPathRate, 0, "the fixture checks that stochastic depth is off in eval mode")
        let batch = try SafeTensorsFile(path: Self.path("\(name)-batch.safetensors"))
        let B = try batch.info("pixel_values").shape[0]
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: B)
        _ = g.pixelValues.values.update(fromContentsOf: try batch.floats("pixel_values"))
        let labels = try batch.int64s("labels").map { Int32($0) }
        g.labels.update(from: labels, count: labels.count)
        if let mask = g.boolMaskedPos {
            _ = mask.values.update(fromContentsOf: try batch.bools("bool_masked_pos").map { $0 ? Float(1) : 0 })
        }
        arena.zeroGrads()
        tape.forward()
        tape.backward(from: g.loss)
        let reference = try SafeTensorsFile(path: Self.path("\(name)-grads.safetensors"))
        for output in outputs {
            let ours: Tensor
            switch output {
            case "last_hidden_state": ours = g.lastHiddenState
            case "pooler_output": ours = g.pooled!
            default: ours = g.logits
            }
            XCTAssertEqual(ours.shape.dims, try reference.info(output).shape, "\(name) \(output)")
            let difference = maxAbsDifference(Array(ours.values), try reference.floats(output))
            print("BEiT \(name) parity: \(output) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, "\(name) \(output)")
        }
        let (lossError, worst) = try assertParameterGradientsMatch(
            loss: g.loss.data[0], parameters: model.parameters, reference: reference, ignoring: Set(outputs), name)
        print("BEiT \(name) parity: loss relative difference \(lossError), worst relative gradient error \(worst.error) on \(worst.name)")
    }

    /// Parameters are registered in transformers 4's `named_parameters` order: a layer's lambdas first
    /// (its own parameters), the relative position table after the value projection, the shared table
    /// before the layers.
    func testRegistrationOrderFollowsTransformers() throws {
        let (model, _) = try Self.model("mim")
        let names = model.parameters.map(\.name)
        XCTAssertEqual(Array(names.prefix(7)), [
            "beit.embeddings.cls_token", "beit.embeddings.mask_token", "beit.embeddings.position_embeddings",
            "beit.embeddings.patch_embeddings.projection.weight", "beit.embeddings.patch_embeddings.projection.bias",
            "beit.encoder.layer.0.lambda_1", "beit.encoder.layer.0.lambda_2"])
        let layer = "beit.encoder.layer.0."
        XCTAssertEqual(Array(names[7..<20]), [
            "attention.attention.query.weight", "attention.attention.query.bias", "attention.attention.key.weight",
            "attention.attention.value.weight", "attention.attention.value.bias",
            "attention.attention.relative_position_bias.relative_position_bias_table",
            "attention.output.dense.weight", "attention.output.dense.bias", "intermediate.dense.weight",
            "intermediate.dense.bias", "output.dense.weight", "output.dense.bias", "layernorm_before.weight",
        ].map { layer + $0 })
        XCTAssertEqual(Array(names.suffix(6)), ["beit.layernorm.weight", "beit.layernorm.bias", "layernorm.weight",
                                                "layernorm.bias", "lm_head.weight", "lm_head.bias"])
        let (shared, _) = try Self.model("classification")
        XCTAssertEqual(shared.parameters[3].name, "beit.encoder.relative_position_bias.relative_position_bias_table")
        XCTAssertEqual(Array(shared.parameters.suffix(4).map(\.name)),
                       ["beit.pooler.layernorm.weight", "beit.pooler.layernorm.bias", "classifier.weight", "classifier.bias"])
    }

    /// A fresh model has transformers' init: zero tokens, positions, tables and biases (the key has none),
    /// lambdas at layer_scale_init_value, LayerNorms at one, weights normal(0, initializer_range).
    func testFreshModelHasTransformersInit() throws {
        let config = BEiTConfig(vocabSize: 11, hiddenSize: 12, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 20,
                                imageSize: 8, patchSize: 4, useMaskToken: true, useAbsolutePositionEmbeddings: true,
                                useRelativePositionBias: true, useSharedRelativePositionBias: true, layerScaleInitValue: 0.25,
                                head: .maskedImageModeling)
        let arena = ParameterArena()
        let model = try BEiT(config, arena: arena, rng: Philox(seed: 1))
        arena.seal()
        for p in model.parameters {
            let v = Array(p.values)
            if p.name.hasSuffix("lambda_1") || p.name.hasSuffix("lambda_2") {
                XCTAssertEqual(v, [Float](repeating: 0.25, count: 12), p.name)
            } else if p.name.contains("layernorm") && p.name.hasSuffix("weight") {
                XCTAssertEqual(v, [Float](repeating: 1, count: 12), p.name)
            } else if p.name.hasSuffix("weight") {
                let std = (v.reduce(0) { $0 + Double($1 * $1) } / Double(v.count)).squareRoot()
                XCTAssertEqual(std, 0.02, accuracy: 0.006, p.name)
            } else {
                XCTAssertEqual(v, [Float](repeating: 0, count: p.count), p.name)
            }
        }
        XCTAssertFalse(model.parameters.contains { $0.name.hasSuffix("key.bias") })
        XCTAssertEqual(model.encoder.relativePositionIndex.count, 5 * 5, "(T, T) with T = 2 x 2 patches + [CLS]")
        XCTAssertThrowsError(try BEiT(BEiTConfig(head: .maskedImageModeling), arena: ParameterArena(), rng: Philox(seed: 0)))
    }

    /// The config decodes transformers' config.json and encodes one that decodes to the same config (and that
    /// transformers loads: the fixtures' generator was checked by hand to load `encode`'s output).
    func testConfigRoundTripsAndValidates() throws {
        for name in ["mim", "classification", "classification-cls"] {
            let url = URL(fileURLWithPath: Self.path(name) + "/config.json")
            let config = try JSONDecoder().decode(BEiTConfig.self, from: Data(contentsOf: url))
            let again = try JSONDecoder().decode(BEiTConfig.self, from: JSONEncoder().encode(config))
            XCTAssertEqual(again, config, name)
        }
        let mim = try JSONDecoder().decode(BEiTConfig.self, from: Data(contentsOf: URL(fileURLWithPath: Self.path("mim") + "/config.json")))
        XCTAssertEqual(mim.head, .maskedImageModeling)
        XCTAssertEqual(mim.vocabSize, 23)
        XCTAssertEqual(mim.relativeDistances, 52)
        XCTAssertEqual(mim.dropPathRate(layer: 1), 0.2)
        let defaults = try JSONDecoder().decode(BEiTConfig.self, from: Data("{}".utf8))
        XCTAssertEqual(defaults, BEiTConfig())
        func error(_ json: String) -> String {
            do { _ = try JSONDecoder().decode(BEiTConfig.self, from: Data(json.utf8)); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(error(#"{"hidden_act": "gelu_new"}"#).contains("hidden_act"))
        XCTAssertTrue(error(#"{"hidden_size": 100}"#).contains("num_attention_heads"))
        XCTAssertTrue(error(#"{"image_size": 30}"#).contains("patch_size"))
        XCTAssertTrue(error(#"{"drop_path_rate": 1.5}"#).contains("drop_path_rate"))
        XCTAssertTrue(error(#"{"architectures": ["BeitForMaskedImageModeling"]}"#).contains("use_mask_token"))
        XCTAssertTrue(error(#"{"model_type": "vit"}"#).contains("model_type"))
    }

    /// Stochastic depth in training mode drops whole samples' branches, differently at each step and
    /// each layer, and is the identity in eval mode: training-mode logits differ from eval-mode ones,
    /// and the same step replays to the same bits.
    func testStochasticDepthActsOnlyInTraining() throws {
        let (model, arena) = try Self.model("classification")
        defer { withExtendedLifetime(arena) {} }
        let batch = try SafeTensorsFile(path: Self.path("classification-batch.safetensors"))
        let tape = Tape(rng: Philox(seed: 3))
        let g = model.record(on: tape, batch: 3)
        _ = g.pixelValues.values.update(fromContentsOf: try batch.floats("pixel_values"))
        func logits(training: Bool, step: UInt64) -> [Float] {
            tape.training = training
            tape.step = step
            tape.forward()
            return Array(g.logits.values)
        }
        let eval = logits(training: false, step: 0)
        let reference = try SafeTensorsFile(path: Self.path("classification-grads.safetensors"))
        XCTAssertLessThanOrEqual(maxAbsDifference(eval, try reference.floats("logits")), 1e-4)
        let trained = (0..<4).map { logits(training: true, step: $0) }
        XCTAssertTrue(trained.contains { $0 != eval }, "drop path 0.2 (and dropout 0.1) changed nothing in 4 steps")
        XCTAssertEqual(logits(training: true, step: 2), trained[2], "a step replays exactly")
    }
}
