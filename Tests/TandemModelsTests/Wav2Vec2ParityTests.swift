import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport

/// Wav2Vec2ForCTC and Wav2Vec2ForPreTraining against transformers on the fixtures written by
/// scripts/fixtures/make_wav2vec2_fixtures.py: random models with a three-layer feature encoder, hidden 36 =
/// 3 heads of 12, 2 layers and a positional convolution of kernel 8 in 4 groups, on a batch of 3 utterances of
/// 400, 331 and 257 samples (19, 16 and 12 frames) with padding and an attention mask, in eval mode. The
/// forward outputs within 1e-4, the loss within 1e-5 relative and every gradient within 1e-4 relative.
final class Wav2Vec2ParityTests: XCTestCase {
    static let lengths = [400, 331, 257]

    /// The fixture model `name`, loaded from its save_pretrained directory: every tensor used, none missing.
    private func model(_ name: String) throws -> (Wav2Vec2, ParameterArena) {
        let directory = Wav2Vec2Fixtures.path(name)
        let config = try JSONDecoder().decode(Wav2Vec2Config.self,
                                              from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
        let arena = ParameterArena()
        let model = Wav2Vec2(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) { try weights.copyFloats($0, into: $1) }
        XCTAssertEqual(report.keptInit, [], name)
        XCTAssertEqual(report.ignored, [], name)
        XCTAssertEqual(Set(arena.parameters.map(\.name)), Set(weights.names), name)
        return (model, arena)
    }

    /// Records, fills and runs the fixture batch `name` in eval mode, then backward from the loss; the tape
    /// and arena returned hold the graph's and the parameters' memory.
    private func run(_ name: String) throws -> (Wav2Vec2, Wav2Vec2.Graph, (Tape, ParameterArena)) {
        let (model, arena) = try model(name)
        let batch = try SafeTensorsFile(path: Wav2Vec2Fixtures.path("\(name)-batch.safetensors"))
        let values = try batch.floats("input_values")
        let S = try batch.info("input_values").shape[1]
        let U = model.config.head == .ctc ? try batch.info("labels").shape[1] : 1
        let tape = Tape()
        tape.training = false
        let graph = model.record(on: tape, batch: Self.lengths.count, samples: S, labelColumns: U)
        XCTAssertEqual(values.count, graph.inputValues.count)
        for (i, v) in values.enumerated() { graph.inputValues.data[i] = v }
        graph.setLengths(Self.lengths, config: model.config)
        XCTAssertEqual(try batch.int64s("attention_mask").reduce(0, +), Int64(Self.lengths.reduce(0, +)))
        if let labels = graph.labels {
            for (i, l) in try batch.int64s("labels").enumerated() { labels[i] = Int32(l) }
        }
        if let negatives = graph.sampledNegativeIndices, let mask = graph.maskTimeIndices {
            for (i, m) in try batch.bools("mask_time_indices").enumerated() { mask.data[i] = m ? 1 : 0 }
            for (i, n) in try batch.int64s("sampled_negative_indices").enumerated() { negatives[i] = Int32(n) }
        }
        arena.zeroGrads()
        tape.forward()
        tape.backward(from: graph.loss)
        return (model, graph, (tape, arena))
    }

    private func checkOutputs(_ name: String, _ outputs: [(String, Tensor)], loss: Float) throws {
        let reference = try SafeTensorsFile(path: Wav2Vec2Fixtures.path("\(name)-forward.safetensors"))
        for (key, tensor) in outputs {
            XCTAssertEqual(try reference.info(key).shape, tensor.shape.dims, "\(name) \(key)")
            let difference = maxAbsDifference(Array(tensor.values), try reference.floats(key))
            print("wav2vec2 \(name) forward parity: \(key) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, "\(name) \(key)")
        }
        let expected = try reference.floats("loss")[0]
        XCTAssertLessThanOrEqual(abs(loss - expected) / abs(expected), 1e-5, "\(name) loss \(loss) vs \(expected)")
    }

    private func checkGradients(_ name: String, _ model: Wav2Vec2, _ graph: Wav2Vec2.Graph, zero: Set<String>) throws {
        let reference = try SafeTensorsFile(path: Wav2Vec2Fixtures.path("\(name)-grads.safetensors"))
        let keyBiases = model.parameters.map(\.name).filter { $0.hasSuffix("k_proj.bias") }
        let (lossError, worst) = try assertParameterGradientsMatch(loss: graph.loss.data[0], parameters: model.parameters,
                                                                   reference: reference, zeroGradientNames: zero.union(keyBiases), name)
        print("wav2vec2 \(name) gradient parity: loss relative difference \(lossError), worst relative gradient error \(worst.error) on \(worst.name)")
    }

    func testCTCWithGroupNormMatchesTransformers() throws {
        let (model, graph, memory) = try run("ctc-group")
        defer { withExtendedLifetime(memory) {} }
        try checkOutputs("ctc-group", [("last_hidden_state", graph.lastHiddenState), ("logits", graph.logits!)], loss: graph.loss.data[0])
        // No frame is masked in eval mode without mask_time_indices: masked_spec_embed gets no gradient.
        try checkGradients("ctc-group", model, graph, zero: ["wav2vec2.masked_spec_embed"])
    }

    func testCTCWithStableLayerNormMatchesTransformers() throws {
        let (model, graph, memory) = try run("ctc-stable")
        defer { withExtendedLifetime(memory) {} }
        try checkOutputs("ctc-stable", [("last_hidden_state", graph.lastHiddenState), ("logits", graph.logits!)], loss: graph.loss.data[0])
        try checkGradients("ctc-stable", model, graph, zero: ["wav2vec2.masked_spec_embed"])
    }

    func testPreTrainingMatchesTransformers() throws {
        let (model, graph, memory) = try run("pretraining")
        defer { withExtendedLifetime(memory) {} }
        let reference = try SafeTensorsFile(path: Wav2Vec2Fixtures.path("pretraining-forward.safetensors"))
        try checkOutputs("pretraining", [("last_hidden_state", graph.lastHiddenState), ("projected_states", graph.projectedStates!),
                                         ("projected_quantized_states", graph.projectedQuantizedStates!)],
                         loss: graph.loss.data[0])
        let perplexity = try reference.floats("codevector_perplexity")[0]
        XCTAssertEqual(graph.codevectorPerplexity!.data[0], perplexity, accuracy: 1e-5 * perplexity)
        XCTAssertEqual(graph.lossTerms![0], try reference.floats("contrastive_loss")[0], accuracy: 1e-4)
        XCTAssertEqual(graph.lossTerms![1], try reference.floats("diversity_loss")[0], accuracy: 1e-4)
        // In eval mode the codes are an argmax: the quantiser's projection gets no gradient.
        try checkGradients("pretraining", model, graph, zero: ["quantizer.weight_proj.weight", "quantizer.weight_proj.bias"])
    }

    /// A config.json Tandem writes reads back as the same config, with transformers' keys.
    func testConfigRoundTrips() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Wav2Vec2Fixtures.path("ctc-stable") + "/config.json"))
        let config = try JSONDecoder().decode(Wav2Vec2Config.self, from: data)
        let again = try JSONDecoder().decode(Wav2Vec2Config.self, from: JSONEncoder().encode(config))
        XCTAssertEqual(config, again)
        XCTAssertTrue(config.doStableLayerNorm)
        XCTAssertEqual(config.ctcLossReduction, .mean)
        XCTAssertEqual(config.frames(samples: 400), 19)
        XCTAssertEqual(config.frames(samples: 9), 0)
        XCTAssertEqual(Wav2Vec2Config().receptiveField, 400)
        XCTAssertEqual(Wav2Vec2Config().framesStride, 320)
        XCTAssertEqual(Wav2Vec2Config().frames(samples: 16000), 49)
    }

    func testBadConfigsNameTheirField() {
        func error(_ json: String) -> String {
            do { _ = try JSONDecoder().decode(Wav2Vec2Config.self, from: Data(json.utf8)); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(error(#"{"conv_dim": [4, 4], "conv_stride": [2], "conv_kernel": [3, 3]}"#).contains("conv_stride"))
        XCTAssertTrue(error(#"{"feat_extract_norm": "batch"}"#).contains("feat_extract_norm"))
        XCTAssertTrue(error(#"{"hidden_size": 30, "num_conv_pos_embedding_groups": 16, "num_attention_heads": 3}"#)
            .contains("num_conv_pos_embedding_groups"))
        XCTAssertTrue(error(#"{"ctc_loss_reduction": "none"}"#).contains("ctc_loss_reduction"))
        XCTAssertTrue(error(#"{"mask_time_prob": 1.5}"#).contains("mask_time_prob"))
        XCTAssertTrue(error(#"{"vocab_size": 5, "pad_token_id": 7}"#).contains("pad_token_id"))
    }
}

enum Wav2Vec2Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("wav2vec2")
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}
