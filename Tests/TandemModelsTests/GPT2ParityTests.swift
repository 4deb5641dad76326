import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport

/// GPT-2 against transformers' GPT2LMHeadModel, on the fixtures of scripts/fixtures/make_gpt2_fixtures.py:
/// a checkpoint written by `save_pretrained` loads with nothing missing or left over, logits and loss
/// (labels shifted by the model, -100 ignored) within 1e-5, every gradient within 1e-4 relative, for
/// gelu_new with the default inner width and for erf GELU with an odd one; and documents packed into one
/// row under block-diagonal causal masks give the logits of each document run on its own.
final class GPT2ParityTests: XCTestCase {
    static func path(_ name: String) -> String { ModelFixtures.path("gpt2/" + name) }

    /// The fixture model `name`, loaded from its save_pretrained directory.
    static func model(_ name: String) throws -> (GPT, ParameterArena) {
        let directory = path(name)
        let config = try JSONDecoder().decode(GPTConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
        let arena = ParameterArena()
        let model = GPT(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) { try weights.copyFloats($0, into: $1) }
        XCTAssertEqual(report.ignored, [], name)
        XCTAssertEqual(report.keptInit, [], name)
        XCTAssertEqual(Set(arena.parameters.map(\.name)), Set(weights.names), name)
        return (model, arena)
    }

    func testLogitsLossAndGradientsMatchTransformers() throws {
        for name in ["small", "wide"] {
            let (model, arena) = try Self.model(name)
            let batch = try SafeTensorsFile(path: Self.path("\(name)-batch.safetensors"))
            let shape = try batch.info("input_ids").shape
            let B = shape[0], T = shape[1]
            let tape = Tape()
            tape.training = false
            let g = model.record(on: tape, batch: B, sequence: T)
            let ids = try batch.int64s("input_ids"), labels = try batch.int64s("labels")
            for b in 0..<B {
                for t in 0..<T {
                    g.inputIDs[b * T + t] = Int32(ids[b * T + t])
                    // transformers shifts: position t predicts labels[t + 1].
                    g.targets[b * T + t] = t + 1 < T ? Int32(labels[b * T + t + 1]) : -100
                }
            }
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: g.loss)
            let reference = try SafeTensorsFile(path: Self.path("\(name)-grads.safetensors"))
            let logitsError = relativeError(Array(g.logits.values), try reference.floats("logits"))
            XCTAssertLessThanOrEqual(logitsError, 1e-5, name)
            let (lossError, worst) = try assertParameterGradientsMatch(
                loss: g.loss.data[0], parameters: model.parameters, reference: reference, ignoring: ["logits"], name)
            print("gpt2 \(name) parity: logits \(logitsError), loss \(lossError), worst gradient \(worst.error) on \(worst.name)")
        }
    }

    func testPackedDocumentsMatchEachDocumentOnItsOwn() throws {
        for name in ["small", "wide"] {
            let (model, arena) = try Self.model(name)
            defer { withExtendedLifetime(arena) {} }
            let file = try SafeTensorsFile(path: Self.path("\(name)-packed.safetensors"))
            let shape = try file.info("input_ids").shape
            let B = shape[0], T = shape[1]
            let separator = Int32(try file.int64s("separator")[0])
            let tape = Tape()
            tape.training = false
            let g = model.record(on: tape, batch: B, sequence: T, documents: true)
            g.inputIDs.update(from: try file.int64s("input_ids").map { Int32($0) }, count: B * T)
            g.targets.update(repeating: -100, count: B * T)
            GPT.fillDocuments(inputIDs: g.inputIDs, positions: g.positions, firstKeys: g.firstKeys!, batch: B, sequence: T,
                              separator: separator)
            tape.forward()
            let error = relativeError(Array(g.logits.values), try file.floats("logits"))
            XCTAssertLessThanOrEqual(error, 1e-5, name)
            print("gpt2 \(name) packed documents: logits relative error \(error)")
        }
    }
}

/// Generation with the key/value cache gives the logits of the full forward pass at every position:
/// a prompt prefilled at once, then one token at a time.
final class GPTGeneratorTests: XCTestCase {
    func testCachedLogitsEqualTheFullForwardPass() throws {
        let (model, arena) = try GPT2ParityTests.model("small")
        defer { withExtendedLifetime(arena) {} }
        let V = model.config.vocabSize, T = 13
        let tokens: [Int32] = (0..<T).map { Int32(($0 * 7 + 3) % V) }
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: 1, sequence: T)
        g.inputIDs.update(from: tokens, count: T)
        g.targets.update(repeating: -100, count: T)
        tape.forward()
        let full = Array(g.logits.values)
        let generator = GPTGenerator(model: model, capacity: T)
        for prompt in [1, 5] {
            generator.reset()
            var got = Array(generator.append(Array(tokens[0..<prompt])))
            assertClose(got, Array(full[(prompt - 1) * V..<prompt * V]), atol: 1e-5, rtol: 1e-4, "prefill \(prompt)")
            for t in prompt..<T {
                got = Array(generator.append([tokens[t]]))
                assertClose(got, Array(full[t * V..<(t + 1) * V]), atol: 1e-5, rtol: 1e-4, "position \(t) after a prompt of \(prompt)")
            }
            XCTAssertEqual(generator.length, T)
        }
    }

    func testSamplingIsGreedyAtZeroTemperatureAndRespectsTopK() {
        let logits: [Float] = [0.1, 3, -1, 2.9, 0]
        logits.withUnsafeBufferPointer { l in
            XCTAssertEqual(SamplingOptions(temperature: 0).pick(l, step: 0), 1)
            for step in 0..<200 {
                let t = SamplingOptions(temperature: 1, topK: 2, seed: 7).pick(l, step: step)
                XCTAssertTrue(t == 1 || t == 3, "top-k 2 drew \(t)")
                XCTAssertEqual(SamplingOptions(temperature: 1, topP: 0.01, seed: 7).pick(l, step: step), 1, "top-p keeps the best")
            }
            let draws = (0..<400).map { SamplingOptions(temperature: 1, seed: 3).pick(l, step: $0) }
            XCTAssertEqual(draws, (0..<400).map { SamplingOptions(temperature: 1, seed: 3).pick(l, step: $0) }, "seeded")
            XCTAssertTrue(Set(draws).count >= 4, "temperature 1 samples beyond the top two: \(Set(draws))")
        }
    }
}
