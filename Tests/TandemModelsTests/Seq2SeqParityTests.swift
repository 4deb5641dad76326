import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemKernels
import TandemModels
import TandemNN
import TandemTestSupport

/// The seq2seq model against PyTorch, on the fixtures written by scripts/fixtures/make_seq2seq_fixtures.py:
/// every attention with a GRU, Bahdanau and Luong general with an LSTM, bidirectional encoders in some and
/// 2 layers in some, the source and the target padded. Loss within 1e-5 relative, every gradient within
/// 1e-4 relative; logits and attention probabilities within 1e-5.
final class Seq2SeqParityTests: XCTestCase {
    static let names = ["gru-none", "gru-bahdanau", "gru-luong_dot", "gru-luong_general", "lstm-bahdanau", "lstm-luong_general"]
    /// Bahdanau's score bias adds the same amount to every score, which softmax ignores: its exact gradient
    /// is zero and both sides hold only rounding noise, so both norms must be below 1e-6 instead.
    static let zeroGradientName = "decoder.attention.Va.bias"

    static func path(_ name: String) -> String { ModelFixtures.path("seq2seq/" + name) }

    func testLossGradientsAndAttentionMatchPyTorch() throws {
        for name in Self.names {
            let directory = Self.path(name)
            let config = try JSONDecoder().decode(Seq2SeqConfig.self,
                                                  from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
            let arena = ParameterArena()
            let model = Seq2SeqModel(config, arena: arena, rng: Philox(seed: 0))
            arena.seal()
            defer { withExtendedLifetime(arena) {} }
            let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
            let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) {
                try weights.copyFloats($0, into: $1)
            }
            XCTAssertEqual(report.ignored, [], name)
            XCTAssertEqual(Set(model.checkpointTensors.map(\.0)), Set(weights.names), name)

            let batch = try SafeTensorsFile(path: Self.path("\(name)-batch.safetensors"))
            let sourceShape = try batch.info("input_ids").shape, targetShape = try batch.info("labels").shape
            let B = sourceShape[0], S = sourceShape[1], T = targetShape[1]
            let tape = Tape()
            tape.training = false
            let graph = model.record(on: tape, batch: B, sourceLength: S, targetLength: T)
            let sourceIDs = try batch.int64s("input_ids").map { Int32($0) }
            let lengths = try Seq2SeqModel.sourceLengths(attentionMask: try batch.int64s("attention_mask"), batch: B, length: S)
            XCTAssertEqual(model.sourceLengths(ids: sourceIDs, batch: B, length: S), lengths, name)
            graph.sourceIDs.update(from: sourceIDs, count: B * S)
            graph.sourceLengths.update(from: lengths, count: B)
            graph.decoderInputIDs.update(from: try batch.int64s("decoder_input_ids").map { Int32($0) }, count: B * T)
            graph.labels.update(from: try batch.int64s("labels").map { Int32($0) }, count: B * T)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: graph.loss)

            let forward = try SafeTensorsFile(path: Self.path("\(name)-forward.safetensors"))
            assertClose(Array(graph.logits.values), try forward.floats("logits"), atol: 1e-5, rtol: 1e-4, "\(name) logits")
            XCTAssertEqual(graph.attention == nil, !forward.names.contains("attention"), name)
            if let attention = graph.attention {
                XCTAssertEqual(attention.shape.dims, [B, T, S])
                assertClose(Array(attention.values), try forward.floats("attention"), atol: 1e-5, rtol: 1e-4, "\(name) attention")
            }

            let reference = try SafeTensorsFile(path: Self.path("\(name)-grads.safetensors"))
            let (lossError, worst) = try assertParameterGradientsMatch(loss: graph.loss.data[0], parameters: model.parameters,
                                                                       reference: reference,
                                                                       zeroGradientNames: [Self.zeroGradientName], name)
            print("seq2seq \(name) parity: loss relative error \(lossError), worst gradient \(worst.error) on \(worst.name)")
        }
    }
}

/// Seq2SeqConfig's config.json handling, the parameter names and the source lengths.
final class Seq2SeqModelTests: XCTestCase {
    private func decode(_ json: String) throws -> Seq2SeqConfig {
        try JSONDecoder().decode(Seq2SeqConfig.self, from: Data(json.utf8))
    }

    func testConfigErrorsNameTheField() {
        let vocabs = #""source_vocab_size": 10, "target_vocab_size": 12"#
        let cases = [
            (#"{"target_vocab_size": 12}"#, "source_vocab_size"),
            (#"{"source_vocab_size": 10}"#, "target_vocab_size"),
            ("{\(vocabs), \"rnn_type\": \"RNN_TANH\"}", "rnn_type"),
            ("{\(vocabs), \"attention\": \"luong_concat\"}", "attention"),
            ("{\(vocabs), \"hidden_size\": 0}", "hidden_size"),
            ("{\(vocabs), \"embedding_size\": -3}", "embedding_size"),
            ("{\(vocabs), \"num_layers\": 0}", "num_layers"),
            ("{\(vocabs), \"dropout\": 1}", "dropout"),
            ("{\(vocabs), \"bidirectional_encoder\": 3}", "bidirectional_encoder"),
            ("{\(vocabs), \"source_pad_token_id\": 10}", "source_pad_token_id"),
            ("{\(vocabs), \"target_pad_token_id\": -1}", "target_pad_token_id"),
            ("{\(vocabs), \"bos_token_id\": 12}", "bos_token_id"),
            ("{\(vocabs), \"eos_token_id\": 40}", "eos_token_id"),
            ("{\"model_type\": \"rnn_lm\", \(vocabs)}", "model_type"),
        ]
        for (json, field) in cases {
            XCTAssertThrowsError(try decode(json), json) { error in
                XCTAssertTrue("\(error)".contains(field), "\(error) does not name \(field)")
            }
        }
    }

    func testConfigRoundTripsThroughJSON() throws {
        let config = try decode(#"{"model_type": "seq2seq", "rnn_type": "LSTM", "attention": "luong_general","#
                                + #" "source_vocab_size": 8000, "target_vocab_size": 9000, "embedding_size": 128,"#
                                + #" "hidden_size": 256, "num_layers": 2, "bidirectional_encoder": true, "dropout": 0.2,"#
                                + #" "source_pad_token_id": 3, "target_pad_token_id": 4, "bos_token_id": 5, "eos_token_id": 6}"#)
        XCTAssertEqual(config, Seq2SeqConfig(rnnType: .lstm, attention: .luongGeneral, sourceVocabSize: 8000,
                                             targetVocabSize: 9000, embeddingSize: 128, hiddenSize: 256, numLayers: 2,
                                             bidirectionalEncoder: true, dropout: 0.2, sourcePadTokenId: 3,
                                             targetPadTokenId: 4, bosTokenId: 5, eosTokenId: 6))
        XCTAssertEqual(try JSONDecoder().decode(Seq2SeqConfig.self, from: JSONEncoder().encode(config)), config)
    }

    func testParameterNamesPerAttention() {
        func names(_ attention: Seq2SeqConfig.Attention) -> [String] {
            let arena = ParameterArena()
            let model = Seq2SeqModel(Seq2SeqConfig(attention: attention, sourceVocabSize: 5, targetVocabSize: 6,
                                                   embeddingSize: 3, hiddenSize: 4),
                                     arena: arena, rng: Philox(seed: 0))
            return model.parameters.map(\.name)
        }
        let rnn = { (prefix: String) in ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"].map { prefix + $0 } }
        let encoder = ["encoder.embedding.weight"] + rnn("encoder.rnn."), out = ["decoder.out.weight", "decoder.out.bias"]
        XCTAssertEqual(names(.none), encoder + ["decoder.embedding.weight"] + rnn("decoder.rnn.") + out)
        XCTAssertEqual(names(.bahdanau), encoder + ["decoder.embedding.weight"]
                       + ["Wa", "Ua", "Va"].flatMap { ["decoder.attention.\($0).weight", "decoder.attention.\($0).bias"] }
                       + rnn("decoder.rnn.") + out)
        XCTAssertEqual(names(.luongDot), encoder + ["decoder.embedding.weight"] + rnn("decoder.rnn.")
                       + ["decoder.concat.weight"] + out)
        XCTAssertEqual(names(.luongGeneral), encoder + ["decoder.embedding.weight", "decoder.attention.attn.weight"]
                       + rnn("decoder.rnn.") + ["decoder.concat.weight"] + out)
    }

    /// With dropout on (training) every attention trains: the loss and all gradients are finite, and the
    /// replay of the same step gives the same loss (dropout masks are a function of the step).
    func testTrainingWithDropoutIsFiniteAndReplayable() {
        for attention in Seq2SeqConfig.Attention.allCases {
            let config = Seq2SeqConfig(rnnType: .lstm, attention: attention, sourceVocabSize: 13, targetVocabSize: 11,
                                       embeddingSize: 6, hiddenSize: 8, numLayers: 2, bidirectionalEncoder: true, dropout: 0.3)
            let arena = ParameterArena()
            let model = Seq2SeqModel(config, arena: arena, rng: Philox(seed: 3))
            arena.seal()
            defer { withExtendedLifetime(arena) {} }
            let B = 2, S = 5, T = 4
            let tape = Tape()
            let graph = model.record(on: tape, batch: B, sourceLength: S, targetLength: T)
            graph.sourceIDs.update(from: [3, 4, 5, 6, 7, 8, 9, 0, 0, 0], count: B * S)
            graph.sourceLengths.update(from: [5, 2], count: B)
            graph.decoderInputIDs.update(from: [1, 4, 5, 6, 1, 7, 0, 0], count: B * T)
            graph.labels.update(from: [4, 5, 6, 2, 7, 2, -100, -100], count: B * T)
            var losses: [Float] = []
            for _ in 0..<2 {
                arena.zeroGrads()
                tape.step = 7
                tape.forward()
                tape.backward(from: graph.loss)
                losses.append(graph.loss.data[0])
            }
            XCTAssertTrue(losses[0].isFinite, attention.rawValue)
            XCTAssertEqual(losses[0], losses[1], attention.rawValue)
            XCTAssertTrue(arena.grads.allSatisfy(\.isFinite), attention.rawValue)
            tape.training = false
            tape.forward()
            XCTAssertNotEqual(graph.loss.data[0], losses[0], "\(attention.rawValue): dropout changed nothing")
        }
    }

    func testSourceLengthsFromTheMask() throws {
        XCTAssertEqual(try Seq2SeqModel.sourceLengths(attentionMask: [1, 1, 0, 1, 1, 1, 0, 0, 0], batch: 3, length: 3), [2, 3, 0])
        XCTAssertThrowsError(try Seq2SeqModel.sourceLengths(attentionMask: [1, 0, 1], batch: 1, length: 3)) { error in
            XCTAssertTrue("\(error)".contains("sequence 0"), "\(error)")
        }
    }
}
