import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemKernels
import TandemModels
import TandemNN
import TandemTestSupport
import TandemTools

/// The Transformer encoder-decoder against transformers' MarianMTModel, on the fixtures written by
/// scripts/fixtures/make_marian_fixtures.py (swish with scaled embeddings over 2 + 2 layers, relu without
/// over 1 + 1; d_model 15 over 3 heads; both sides padded). Loss within 1e-5 relative, every gradient
/// within 1e-4 relative, logits and the encoder's output within 1e-5; the label-smoothed loss too.
final class MarianParityTests: XCTestCase {
    static let names = ["marian-swish", "marian-relu"]

    static func path(_ name: String) -> String { ModelFixtures.path("marian/" + name) }

    /// The model of fixture `name` with its saved weights.
    static func model(_ name: String) throws -> (MarianMT, ParameterArena, CheckpointLoadReport) {
        let directory = path(name)
        let config = try JSONDecoder().decode(MarianConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
        let arena = ParameterArena()
        let model = MarianMT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) { try weights.copyFloats($0, into: $1) }
        return (model, arena, report)
    }

    func testLossGradientsAndLogitsMatchTransformers() throws {
        for name in Self.names {
            let (model, arena, report) = try Self.model(name)
            defer { withExtendedLifetime(arena) {} }
            XCTAssertEqual(report.ignored, [], name)
            XCTAssertEqual(report.keptInit, [], name)
            let weights = try SafeTensorsFile(path: Self.path(name) + "/model.safetensors")
            XCTAssertEqual(Set(model.checkpointTensors.map(\.0)), Set(weights.names), "\(name): what save_pretrained writes")

            let batch = try SafeTensorsFile(path: Self.path("\(name)-batch.safetensors"))
            let sourceShape = try batch.info("input_ids").shape, targetShape = try batch.info("labels").shape
            let B = sourceShape[0], S = sourceShape[1], T = targetShape[1]
            for smoothing: Float in [0, 0.1] {
                let tape = Tape()
                tape.training = false
                let graph = model.record(on: tape, batch: B, sourceLength: S, targetLength: T, labelSmoothing: smoothing)
                graph.sourceIDs.update(from: try batch.int64s("input_ids").map { Int32($0) }, count: B * S)
                graph.sourceLengths.update(from: try Seq2SeqModel.sourceLengths(attentionMask: try batch.int64s("attention_mask"),
                                                                                batch: B, length: S), count: B)
                graph.decoderInputIDs.update(from: try batch.int64s("decoder_input_ids").map { Int32($0) }, count: B * T)
                graph.targetLengths.update(from: try Seq2SeqModel.sourceLengths(attentionMask: try batch.int64s("decoder_attention_mask"),
                                                                                batch: B, length: T), count: B)
                graph.labels.update(from: try batch.int64s("labels").map { Int32($0) }, count: B * T)
                arena.zeroGrads()
                tape.forward()
                let forward = try SafeTensorsFile(path: Self.path("\(name)-forward.safetensors"))
                if smoothing > 0 {
                    let expected = try forward.floats("loss_label_smoothing")[0]
                    XCTAssertLessThanOrEqual(abs(graph.loss.data[0] - expected) / expected, 1e-5, "\(name) label-smoothed loss")
                    continue
                }
                tape.backward(from: graph.loss)
                assertClose(Array(graph.logits.values), try forward.floats("logits"), atol: 1e-5, rtol: 1e-4, "\(name) logits")
                assertClose(Array(graph.encoderOutput.values), try forward.floats("encoder_last_hidden_state"), atol: 1e-5, rtol: 1e-4,
                            "\(name) encoder output")

                // final_logits_bias is a buffer in HF: no gradient there, and none here.
                XCTAssertEqual(l2Norm(Array(model.finalLogitsBias.grads)), 0, name)
                let trained = model.parameters.filter { $0 !== model.finalLogitsBias }
                let keyBiases = Set(trained.map(\.name).filter { $0.hasSuffix("k_proj.bias") })
                let reference = try SafeTensorsFile(path: Self.path("\(name)-grads.safetensors"))
                let (lossError, worst) = try assertParameterGradientsMatch(loss: graph.loss.data[0], parameters: trained,
                                                                           reference: reference, zeroGradientNames: keyBiases, name)
                print("marian \(name) parity: loss relative error \(lossError), worst gradient \(worst.error) on \(worst.name)")
            }
        }
    }

    /// The positions' table equals HF's `MarianSinusoidalPositionalEmbedding` weight for an odd width: the
    /// first ⌈C/2⌉ columns sines, the rest cosines.
    func testSinusoidalTableLayout() {
        let C = 5, table = sinusoidalPositions(count: 3, dimensions: C)
        for p in 0..<3 {
            let x = Double(p)
            let expected = [sin(x), sin(x / pow(10000, 2.0 / 5)), sin(x / pow(10000, 4.0 / 5)), cos(x), cos(x / pow(10000, 2.0 / 5))]
            assertClose(Array(table[p * C..<(p + 1) * C]), expected.map { Float($0) }, atol: 1e-7, rtol: 1e-6, "position \(p)")
        }
    }

    func testConfigErrorsNameTheField() {
        let cases = [
            (#"{"d_model": 10, "encoder_attention_heads": 3}"#, "encoder_attention_heads"),
            (#"{"activation_function": "tanh"}"#, "activation_function"),
            (#"{"vocab_size": 10, "decoder_vocab_size": 12, "pad_token_id": 0, "decoder_start_token_id": 0, "eos_token_id": 1}"#, "decoder_vocab_size"),
            (#"{"share_encoder_decoder_embeddings": false}"#, "share_encoder_decoder_embeddings"),
            (#"{"encoder_layerdrop": 0.1}"#, "encoder_layerdrop"),
            (#"{"vocab_size": 10, "pad_token_id": 10}"#, "pad_token_id"),
            (#"{"dropout": 1.5}"#, "dropout"),
            (#"{"model_type": "bart"}"#, "model_type"),
        ]
        for (json, field) in cases {
            XCTAssertThrowsError(try JSONDecoder().decode(MarianConfig.self, from: Data(json.utf8)), json) { error in
                XCTAssertTrue("\(error)".contains(field), "\(error) does not name \(field)")
            }
        }
    }

    func testConfigRoundTripsThroughJSON() throws {
        let config = MarianConfig(vocabSize: 100, dModel: 32, encoderLayers: 2, decoderLayers: 3, encoderAttentionHeads: 4,
                                  decoderAttentionHeads: 2, encoderFfnDim: 64, decoderFfnDim: 48, maxPositionEmbeddings: 64,
                                  dropout: 0.2, activationDropout: 0.1, activationFunction: "swish", scaleEmbedding: true,
                                  padTokenId: 0, decoderStartTokenId: 2, eosTokenId: 3)
        let data = try JSONEncoder().encode(config)
        XCTAssertEqual(try JSONDecoder().decode(MarianConfig.self, from: data), config)
        let fields = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(fields["architectures"] as? [String], ["MarianMTModel"])
        XCTAssertEqual(fields["model_type"] as? String, "marian")
    }
}

/// `tandem debug forward|grads` on the directories transformers wrote for the parity fixtures: the
/// outputs, the loss and every trainable parameter's gradient under HF's names (final_logits_bias, a
/// buffer, has none) match transformers'.
final class MarianDebugCommandTests: XCTestCase {
    func testDebugForwardAndGradsMatchTransformers() throws {
        let dir = NSTemporaryDirectory() + "tandem-marian-debug-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in MarianParityTests.names {
            let model = MarianParityTests.path(name), batch = MarianParityTests.path("\(name)-batch.safetensors")
            try DebugCommands.forward(model: model, batch: batch, out: dir + "/forward.safetensors", log: { _ in })
            let ours = try SafeTensorsFile(path: dir + "/forward.safetensors")
            let reference = try SafeTensorsFile(path: MarianParityTests.path("\(name)-forward.safetensors"))
            for output in ["logits", "encoder_last_hidden_state"] {
                XCTAssertEqual(try ours.info(output).shape, try reference.info(output).shape, output)
                assertClose(try ours.floats(output), try reference.floats(output), atol: 1e-5, rtol: 1e-4, "\(name) \(output)")
            }
            try DebugCommands.grads(model: model, batch: batch, out: dir + "/grads.safetensors", log: { _ in })
            let (lossError, worst) = try assertGradientsMatch(try SafeTensorsFile(path: dir + "/grads.safetensors"),
                                                              try SafeTensorsFile(path: MarianParityTests.path("\(name)-grads.safetensors")),
                                                              zeroGradientSuffix: "k_proj.bias")
            print("marian \(name) debug grads: loss relative difference \(lossError), worst gradient \(worst.error) on \(worst.name)")
        }
    }
}
