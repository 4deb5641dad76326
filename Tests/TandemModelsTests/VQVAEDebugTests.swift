import Foundation
import XCTest
import TandemCheckpoint
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` on the VQ-VAE fixtures of scripts/fixtures/make_vqvae_fixtures.py (see
/// `VQVAEParityTests`): the reconstruction, the codes, the loss and every parameter's gradient against the
/// PyTorch implementation's.
final class VQVAEDebugTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    func testDebugMatchesPyTorch() throws {
        let name = "tokenizer"
        let reference = try SafeTensorsFile(path: VQVAEParityTests.path("\(name)-grads.safetensors"))
        let model = VQVAEParityTests.path(name), batch = VQVAEParityTests.path("\(name)-batch.safetensors")
        try DebugCommands.forward(model: model, batch: batch, out: out("forward.safetensors"), log: { _ in })
        let forward = try SafeTensorsFile(path: out("forward.safetensors"))
        XCTAssertEqual(Set(forward.names), ["reconstruction", "codes", "loss"])
        XCTAssertLessThanOrEqual(maxAbsDifference(try forward.floats("reconstruction"), try reference.floats("reconstruction")), 1e-5)
        XCTAssertEqual(try forward.floats("codes").map { Int64($0) }, try reference.int64s("codes"))
        try DebugCommands.grads(model: model, batch: batch, out: out("grads.safetensors"), log: { _ in })
        let grads = try SafeTensorsFile(path: out("grads.safetensors"))
        let outputs: Set<String> = ["reconstruction", "codes", "reconstruction_loss", "quantization_loss"]
        XCTAssertEqual(Set(grads.names), Set(reference.names).subtracting(outputs))
        let loss = try grads.floats("loss")[0], expected = try reference.floats("loss")[0]
        XCTAssertLessThanOrEqual(abs(loss - expected) / abs(expected), 1e-5)
        for tensor in grads.names where tensor != "loss" {
            XCTAssertLessThanOrEqual(relativeError(try grads.floats(tensor), try reference.floats(tensor)), 1e-4, tensor)
        }
    }

    func testBatchOfAnotherImageSizeNamesTheTensor() throws {
        var w = SafeTensorsWriter()
        w.add("pixel_values", shape: [1, 2, 8, 8], floats: [Float](repeating: 0, count: 128))
        try w.write(toPath: out("bad.safetensors"))
        XCTAssertThrowsError(try DebugCommands.forward(model: VQVAEParityTests.path("tokenizer"), batch: out("bad.safetensors"),
                                                       out: out("x.safetensors"), log: { _ in })) {
            XCTAssertTrue("\($0)".contains("pixel_values has shape [1, 2, 8, 8], expected (batch, 2, 12, 12)"), "\($0)")
        }
    }
}
