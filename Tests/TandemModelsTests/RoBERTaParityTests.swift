import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` against transformers' RobertaForMaskedLM on the fixtures written by
/// scripts/fixtures/make_roberta_fixtures.py: a random model with shapes that are not powers of two and a
/// batch padded with <pad> = 1, so the position ids (counted from pad + 1 over the tokens) matter.
final class RoBERTaParityTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    private let model = ModelFixtures.path("roberta/model"), batch = ModelFixtures.path("roberta/batch.safetensors")

    func testDebugForwardMatchesTransformers() throws {
        let path = out("forward.safetensors")
        try DebugCommands.forward(model: model, batch: batch, out: path, log: { _ in })
        let ours = try SafeTensorsFile(path: path)
        let reference = try SafeTensorsFile(path: ModelFixtures.path("roberta/forward.safetensors"))
        XCTAssertEqual(Set(ours.names), Set(reference.names))
        for name in ["last_hidden_state", "logits"] {
            XCTAssertEqual(try ours.info(name).shape, try reference.info(name).shape, name)
            let difference = maxAbsDifference(try ours.floats(name), try reference.floats(name))
            print("RoBERTa forward parity: \(name) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, name)
        }
        let loss = try ours.floats("loss")[0], expected = try reference.floats("loss")[0]
        print("RoBERTa forward parity: loss \(loss) vs \(expected)")
        XCTAssertLessThanOrEqual(abs(loss - expected) / abs(expected), 1e-5, "loss \(loss) vs \(expected)")
    }

    func testDebugGradsMatchTransformers() throws {
        let path = out("grads.safetensors")
        try DebugCommands.grads(model: model, batch: batch, out: path, log: { _ in })
        let (_, worst) = try assertGradientsMatch(try SafeTensorsFile(path: path),
                                                  try SafeTensorsFile(path: ModelFixtures.path("roberta/grads.safetensors")),
                                                  zeroGradientSuffix: "attention.self.key.bias")
        print("RoBERTa gradient parity: worst relative error \(worst.error) on \(worst.name)")
    }

    /// The position table's padding row gets no gradient, and padding takes position pad_token_id.
    func testPositionIDsCountFromThePaddingIDOverTheTokens() throws {
        let config = BertConfig.roberta(vocabSize: 11, hiddenSize: 8, numHiddenLayers: 1, numAttentionHeads: 2,
                                        intermediateSize: 16, maxPositionEmbeddings: 12)
        let arena = ParameterArena()
        let model = RoBERTa(config, arena: arena, rng: Philox(seed: 3))
        arena.seal()
        XCTAssertEqual(model.maxSequence, 10)
        let tape = Tape()
        let B = 2, T = 5
        let ids = tape.intInput(count: B * T)
        let positions = tape.paddedPositions(ids, batch: B, sequence: T, paddingIndex: 1)
        ids.update(from: [0, 5, 6, 2, 1, 0, 1, 1, 1, 1], count: B * T)
        tape.forward()
        XCTAssertEqual(Array(UnsafeBufferPointer(start: positions, count: B * T)), [2, 3, 4, 5, 1, 2, 1, 1, 1, 1])
    }
}
