import Foundation
import XCTest
import TandemCheckpoint
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` on the BEiT fixtures of scripts/fixtures/make_beit_fixtures.py (see
/// `BEiTParityTests`): the directories save_pretrained wrote and their batch files in, the outputs, the
/// loss and every parameter's gradient out, against transformers' (the fixtures' `-grads` files, which
/// hold the outputs beside the gradients).
final class BEiTDebugTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    private static let outputs: [String: [String]] = [
        "mim": ["last_hidden_state", "logits"],
        "classification": ["last_hidden_state", "pooler_output", "logits"],
        "classification-cls": ["last_hidden_state", "pooler_output", "logits"],
    ]

    func testMaskedImageModelingDebugMatchesTransformers() throws { try check("mim") }

    func testMeanPoolingClassificationDebugMatchesTransformers() throws { try check("classification") }

    func testClassTokenClassificationDebugMatchesTransformers() throws { try check("classification-cls") }

    private func check(_ name: String) throws {
        let outputs = try XCTUnwrap(Self.outputs[name])
        let reference = try SafeTensorsFile(path: BEiTParityTests.path("\(name)-grads.safetensors"))
        let model = BEiTParityTests.path(name), batch = BEiTParityTests.path("\(name)-batch.safetensors")

        try DebugCommands.forward(model: model, batch: batch, out: out("\(name)-forward.safetensors"), log: { _ in })
        let forward = try SafeTensorsFile(path: out("\(name)-forward.safetensors"))
        XCTAssertEqual(Set(forward.names), Set(outputs + ["loss"]), name)
        for output in outputs {
            XCTAssertEqual(try forward.info(output).shape, try reference.info(output).shape, "\(name) \(output)")
            let difference = maxAbsDifference(try forward.floats(output), try reference.floats(output))
            print("BEiT \(name) debug forward: \(output) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, "\(name) \(output)")
        }

        try DebugCommands.grads(model: model, batch: batch, out: out("\(name)-grads.safetensors"), log: { _ in })
        let grads = try SafeTensorsFile(path: out("\(name)-grads.safetensors"))
        XCTAssertEqual(Set(grads.names), Set(reference.names).subtracting(outputs), "\(name): loss and one gradient per parameter")
        let loss = try grads.floats("loss")[0], expected = try reference.floats("loss")[0]
        XCTAssertEqual(try forward.floats("loss")[0], loss, "\(name): forward and grads give the same loss")
        let lossError = abs(loss - expected) / abs(expected)
        XCTAssertLessThanOrEqual(lossError, 1e-5, "\(name) loss \(loss) vs \(expected)")
        var worst = (name: "", error: 0.0)
        for tensor in grads.names where tensor != "loss" {
            XCTAssertEqual(try grads.info(tensor).shape, try reference.info(tensor).shape, tensor)
            let theirs = try reference.floats(tensor)
            XCTAssertGreaterThan(l2Norm(theirs), 1e-6, "\(name) \(tensor): a gradient that tests something")
            let error = relativeError(try grads.floats(tensor), theirs)
            XCTAssertLessThanOrEqual(error, 1e-4, "\(name) \(tensor)")
            if error > worst.error { worst = (tensor, error) }
        }
        print("BEiT \(name) debug grads: loss relative difference \(lossError), worst relative gradient error \(worst.error) on \(worst.name)")
    }

    /// A batch whose tensors do not fit the model is an error naming the file and the tensor.
    func testBadBatchesNameTheTensor() throws {
        let model = BEiTParityTests.path("classification")
        func message(_ tensors: (inout SafeTensorsWriter) -> Void) -> String {
            var w = SafeTensorsWriter()
            tensors(&w)
            let path = out("bad.safetensors")
            do {
                try w.write(toPath: path)
                try DebugCommands.grads(model: model, batch: path, out: out("bad-grads.safetensors"), log: { _ in })
                return "no error"
            } catch { return "\(error)" }
        }
        let pixels = [Float](repeating: 0, count: 2 * 3 * 20 * 20)
        XCTAssertTrue(message { $0.add("pixel_values", shape: [2, 3, 20, 20], floats: pixels) }.contains("no labels tensor"))
        XCTAssertTrue(message {
            $0.add("pixel_values", shape: [2, 3, 20, 20], floats: pixels)
            $0.add("labels", shape: [2], int64s: [0, 7])
        }.contains("labels"))
        XCTAssertTrue(message { $0.add("pixel_values", shape: [2, 3, 16, 16], floats: [Float](repeating: 0, count: 2 * 3 * 256)) }
            .contains("expected (batch, 3, 20, 20)"))
        XCTAssertTrue(message {
            $0.add("pixel_values", shape: [2, 3, 20, 20], floats: pixels)
            $0.add("input_ids", shape: [2], int64s: [0, 1])
        }.contains("input_ids is not an input of a beit model"))
    }
}
