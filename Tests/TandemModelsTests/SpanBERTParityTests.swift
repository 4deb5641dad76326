import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
@testable import TandemTraining

/// SpanBERT's model (encoder, MLM head, span-boundary head) against the PyTorch reference of
/// scripts/fixtures/make_spanbert_fixtures.py, which scores spans in SpanBERT's own pair-target layout:
/// the MLM and SBO losses and every gradient, on a padded batch with a span longer than the position table.
final class SpanBERTParityTests: ScratchDirectoryTestCase {
    private let directory = ModelFixtures.path("spanbert/model")

    /// The fixture model loaded through `SpanBertTask.loadWeights` (model.safetensors + span_heads.safetensors)
    /// and the fixture batch in its graph, one scored row per position.
    private func loaded() throws -> (model: SpanBERT, arena: ParameterArena, tape: Tape, graph: SpanBERT.Graph) {
        let config = try PretrainedBERT.readConfig(directory: directory)
        let saved = try ModelFields.read(directory: directory)
        let head = SpanBoundaryHeadConfig(maxTargets: saved["span_boundary_max_targets"] as! Int,
                                          positionSize: saved["span_boundary_position_size"] as! Int)
        let arena = ParameterArena()
        let model = SpanBERT(config, head: head, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        var log: [String] = []
        let report = try SpanBertTask.loadWeights(into: model, directory: directory, log: { log.append($0) })
        XCTAssertEqual(report.keptInit, [], "every parameter comes from the two files")
        let batch = try SafeTensorsFile(path: ModelFixtures.path("spanbert/batch.safetensors"))
        let shape = try batch.info("input_ids").shape, B = shape[0], T = shape[1], N = B * T
        func ints(_ name: String) throws -> [Int32] { try batch.int64s(name).map { Int32($0) } }
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: B, sequence: T, predictions: N)
        g.inputIDs.update(from: try ints("input_ids"), count: N)
        g.tokenTypeIDs.update(from: try ints("token_type_ids"), count: N)
        let mask = try ints("attention_mask"), labels = try ints("labels"), spanLabels = try ints("span_labels")
        let left = try ints("span_left"), right = try ints("span_right"), offset = try ints("span_offset")
        for r in 0..<N {
            let start = Int32(r / T * T)
            g.attentionMask.data[r] = Float(mask[r])
            g.maskedPositions[r] = Int32(r)
            g.mlmLabels[r] = labels[r]
            g.spanLabels[r] = spanLabels[r]
            g.spanLeft[r] = start + left[r]; g.spanRight[r] = start + right[r]; g.spanOffset[r] = offset[r]
        }
        return (model, arena, tape, g)
    }

    func testLossesMatchTheReference() throws {
        let (model, arena, tape, g) = try loaded()
        defer { withExtendedLifetime((model, arena)) {} }  // the tape reads their parameters
        tape.forward()
        let reference = try SafeTensorsFile(path: ModelFixtures.path("spanbert/forward.safetensors"))
        let hidden = maxAbsDifference(Array(g.lastHiddenState.values), try reference.floats("last_hidden_state"))
        XCTAssertLessThanOrEqual(hidden, 1e-4)
        for (name, ours) in [("mlm_loss", g.mlmLoss.data[0]), ("sbo_loss", g.spanLoss.data[0]), ("loss", g.loss.data[0])] {
            let expected = try reference.floats(name)[0]
            print("SpanBERT parity: \(name) \(ours) vs \(expected)")
            XCTAssertLessThanOrEqual(abs(ours - expected) / abs(expected), 1e-5, name)
        }
    }

    func testEveryGradientMatchesTheReference() throws {
        let (model, arena, tape, g) = try loaded()
        arena.zeroGrads()
        tape.forward()
        tape.backward(from: g.loss)
        var writer = SafeTensorsWriter()
        writer.add("loss", shape: [], floats: [g.loss.data[0]])
        for p in model.parameters where !p.name.hasPrefix("bert.pooler.") {
            writer.add(p.name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(p.grads))
        }
        let path = scratch.appendingPathComponent("grads.safetensors").path
        try writer.write(toPath: path)
        let (_, worst) = try assertGradientsMatch(try SafeTensorsFile(path: path),
                                                  try SafeTensorsFile(path: ModelFixtures.path("spanbert/grads.safetensors")),
                                                  zeroGradientSuffix: "attention.self.key.bias")
        print("SpanBERT gradient parity: worst relative error \(worst.error) on \(worst.name)")
        for p in model.parameters where p.name.hasPrefix("bert.pooler.") {
            XCTAssertEqual(l2Norm(Array(p.grads)), 0, "\(p.name): no loss reads the pooler")
        }
    }
}
