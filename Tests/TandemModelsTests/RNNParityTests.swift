import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemKernels
import TandemModels
import TandemNN
import TandemTestSupport

/// The recurrent language model and the Recurrent layer against PyTorch, on the fixtures written by
/// scripts/fixtures/make_rnn_fixtures.py: the example's RNNModel (each rnn_type, 2 layers, tied and
/// untied, padding through -100 labels) and bidirectional 2-layer nn.LSTM / nn.GRU on packed sequences
/// with given initial states. Loss within 1e-5 relative, every gradient within 1e-4 relative.
final class RNNParityTests: XCTestCase {
    static func path(_ name: String) -> String { ModelFixtures.path("rnn/" + name) }

    func testLanguageModelLossAndGradientsMatchPyTorch() throws {
        for name in ["lstm-tied", "gru-untied", "rnn_tanh-untied", "rnn_relu-tied"] {
            let directory = Self.path("lm-" + name)
            let config = try JSONDecoder().decode(RNNLMConfig.self,
                                                  from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
            let arena = ParameterArena()
            let model = RNNLanguageModel(config, arena: arena, rng: Philox(seed: 0))
            arena.seal()
            let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
            let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) {
                try weights.copyFloats($0, into: $1)
            }
            XCTAssertEqual(report.ignored, [], name)
            XCTAssertEqual(Set(model.checkpointTensors.map(\.0)), Set(weights.names), name)

            let batch = try SafeTensorsFile(path: Self.path("lm-\(name)-batch.safetensors"))
            let shape = try batch.info("input_ids").shape
            let B = shape[0], T = shape[1]
            let tape = Tape()
            tape.training = false
            let graph = model.record(on: tape, batch: B, sequence: T, carriesState: false)
            graph.inputIDs.update(from: try batch.int64s("input_ids").map { Int32($0) }, count: B * T)
            graph.labels.update(from: try batch.int64s("labels").map { Int32($0) }, count: B * T)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: graph.loss)

            let reference = try SafeTensorsFile(path: Self.path("lm-\(name)-grads.safetensors"))
            let (lossError, worst) = try assertParameterGradientsMatch(loss: graph.loss.data[0], parameters: model.parameters,
                                                                       reference: reference, name)
            print("rnn_lm \(name) parity: loss relative error \(lossError), worst gradient \(worst.error) on \(worst.name)")
        }
    }

    func testBidirectionalLayersOnPackedSequencesMatchPyTorch() throws {
        for (name, cell) in [("lstm", RecurrentCell.lstm), ("gru", .gru)] {
            let file = try SafeTensorsFile(path: Self.path("layer-\(name).safetensors"))
            let xShape = try file.info("x").shape, hShape = try file.info("h0").shape
            let B = xShape[0], T = xShape[1], I = xShape[2], H = hShape[2], L = hShape[0] / 2
            let arena = ParameterArena()
            let layer = Recurrent(ParameterScope(arena: arena, rng: Philox(seed: 0)), cell: cell, inputSize: I, hiddenSize: H,
                                  layers: L, bidirectional: true, dropout: 0.5)
            arena.seal()
            for p in arena.parameters { try file.copyFloats(p.name, into: p.values) }

            let tape = Tape()
            tape.training = false
            func filled(_ tensorName: String) throws -> Tensor {
                let t = tape.tensor(Shape(try file.info(tensorName).shape))
                t.values.update(from: try file.floats(tensorName)).0
                return t
            }
            let x = try filled("x"), h0 = try filled("h0")
            let c0 = cell == .lstm ? try filled("c0") : nil
            let lengths = tape.intInput(count: B)
            lengths.update(from: try file.int64s("lengths").map { Int32($0) }, count: B)
            let (output, final) = layer(x, lengths: lengths, initial: RecurrentState(hidden: h0, cell: c0), on: tape)
            var terms = [(dot(output, try file.floats("r_output"), on: tape), Float(1)),
                         (dot(final.hidden, try file.floats("r_h_n"), on: tape), 1)]
            if let cN = final.cell { terms.append((dot(cN, try file.floats("r_c_n"), on: tape), 1)) }
            let objective = tape.weightedSum(terms)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: objective)

            XCTAssertEqual(output.shape, Shape(B, T, 2 * H))
            var outputs = [("output", output), ("h_n", final.hidden)]
            if let cN = final.cell { outputs.append(("c_n", cN)) }
            for (tensorName, t) in outputs {
                XCTAssertEqual(t.shape.dims, try file.info(tensorName).shape, tensorName)
                assertClose(Array(t.values), try file.floats(tensorName), atol: 1e-5, rtol: 1e-4, "\(name) \(tensorName)")
            }
            var gradients = [("x", x), ("h0", h0)]
            if let c0 { gradients.append(("c0", c0)) }
            gradients += arena.parameters.map { ($0.name, Tensor($0)) }
            var worst = (name: "", error: 0.0)
            for (tensorName, t) in gradients {
                let ours = Array(UnsafeBufferPointer(start: t.grad!, count: t.count))
                let error = relativeError(ours, try file.floats("grad." + tensorName))
                XCTAssertLessThanOrEqual(error, 1e-4, "\(name) grad.\(tensorName)")
                if error > worst.error { worst = (tensorName, error) }
            }
            print("bidirectional \(L)-layer \(cell.rawValue) parity: worst gradient \(worst.error) on \(worst.name)")
        }
    }

    /// Σ t r as a scalar on the tape (the random projection the fixture's objective uses).
    private func dot(_ t: Tensor, _ r: [Float], on tape: Tape) -> Tensor {
        precondition(r.count == t.count)
        let y = tape.tensor(Shape(1))
        tape.record(inputs: [t], forward: {
            var acc = 0.0
            for i in 0..<r.count { acc += Double(t.data[i]) * Double(r[i]) }
            y.data[0] = Float(acc)
        }, backward: {
            for i in 0..<r.count { t.grad![i] += r[i] * y.grad![0] }
        })
        return y
    }
}

/// RNNLMConfig's config.json handling and the model's checkpoint names.
final class RNNLanguageModelTests: XCTestCase {
    private func decode(_ json: String) throws -> RNNLMConfig {
        try JSONDecoder().decode(RNNLMConfig.self, from: Data(json.utf8))
    }

    func testConfigErrorsNameTheField() {
        let cases = [
            (#"{"rnn_type": "LSTM"}"#, "vocab_size"),
            (#"{"vocab_size": 10, "rnn_type": "SRU"}"#, "rnn_type"),
            (#"{"vocab_size": 10, "hidden_size": 0}"#, "hidden_size"),
            (#"{"vocab_size": 10, "num_layers": -1}"#, "num_layers"),
            (#"{"vocab_size": 10, "dropout": 1.5}"#, "dropout"),
            (#"{"vocab_size": 10, "embedding_size": 8, "hidden_size": 9, "tie_weights": true}"#, "tie_weights"),
            (#"{"model_type": "bert", "vocab_size": 10}"#, "model_type"),
        ]
        for (json, field) in cases {
            XCTAssertThrowsError(try decode(json), json) { error in
                XCTAssertTrue("\(error)".contains(field), "\(error) does not name \(field)")
            }
        }
    }

    func testConfigRoundTripsThroughJSON() throws {
        let config = try decode(#"{"model_type": "rnn_lm", "rnn_type": "GRU", "vocab_size": 10000, "embedding_size": 650,"#
                                + #" "hidden_size": 650, "num_layers": 2, "dropout": 0.5, "tie_weights": true}"#)
        XCTAssertEqual(config, RNNLMConfig(rnnType: .gru, vocabSize: 10000, embeddingSize: 650, hiddenSize: 650,
                                           numLayers: 2, dropout: 0.5, tieWeights: true))
        XCTAssertEqual(try JSONDecoder().decode(RNNLMConfig.self, from: JSONEncoder().encode(config)), config)
    }

    func testTiedModelSavesTheDecoderUnderBothNames() {
        let arena = ParameterArena()
        let model = RNNLanguageModel(RNNLMConfig(vocabSize: 11, embeddingSize: 4, hiddenSize: 4, numLayers: 1, tieWeights: true),
                                     arena: arena, rng: Philox(seed: 0))
        XCTAssertEqual(model.parameters.map(\.name), ["encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                                                      "rnn.bias_ih_l0", "rnn.bias_hh_l0", "decoder.bias"])
        XCTAssertEqual(model.checkpointTensors.map(\.0), ["encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                                                          "rnn.bias_ih_l0", "rnn.bias_hh_l0", "decoder.weight", "decoder.bias"])
        XCTAssertTrue(model.checkpointTensors[5].1 === model.encoder.weight)
        withExtendedLifetime(arena) {}
    }

    /// Carrying the state: two graphs of T/2 steps, the second starting from the first's final state,
    /// give the logits of one graph of T steps.
    func testCarriedStateContinuesTheSequence() {
        let config = RNNLMConfig(rnnType: .lstm, vocabSize: 13, embeddingSize: 6, hiddenSize: 5, numLayers: 2, dropout: 0)
        let arena = ParameterArena()
        let model = RNNLanguageModel(config, arena: arena, rng: Philox(seed: 4))
        arena.seal()
        defer { withExtendedLifetime(arena) {} }
        let B = 2, T = 6, V = 13
        let ids = (0..<B * T).map { Int32(($0 * 7 + 3) % V) }
        let fullTape = Tape()
        let full = model.record(on: fullTape, batch: B, sequence: T, carriesState: false)
        full.inputIDs.update(from: ids, count: B * T)
        fullTape.forward()
        let halfTape = Tape()
        let half = model.record(on: halfTape, batch: B, sequence: T / 2, carriesState: true)
        var logits: [Float] = []
        for part in 0..<2 {
            for b in 0..<B {
                for t in 0..<T / 2 { half.inputIDs[b * T / 2 + t] = ids[b * T + part * T / 2 + t] }
            }
            if part == 1 {
                half.initialState!.hidden.values.update(from: Array(half.finalState.hidden.values)).0
                half.initialState!.cell!.values.update(from: Array(half.finalState.cell!.values)).0
            }
            halfTape.forward()
            logits.append(contentsOf: half.logits.values)
        }
        // Reorder the full run's (B, T, V) logits into the two halves' (B, T/2, V) order.
        var expected: [Float] = []
        for part in 0..<2 {
            for b in 0..<B {
                let start = (b * T + part * T / 2) * V
                expected += Array(full.logits.values[start..<start + T / 2 * V])
            }
        }
        assertClose(logits, expected, atol: 1e-6, rtol: 1e-5)
    }
}
