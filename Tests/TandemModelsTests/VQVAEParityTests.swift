import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport

/// The VQ-VAE image tokenizer against an independent PyTorch implementation (torch.nn.Conv2d, Upsample,
/// F.normalize, argmax and the straight-through estimator written as zn + (q - zn).detach()), on the
/// fixtures of scripts/fixtures/make_vqvae_fixtures.py: the same codes, the reconstruction within 1e-5,
/// the loss within 1e-5 relative and every gradient within 1e-4 relative.
final class VQVAEParityTests: XCTestCase {
    static func path(_ name: String) -> String { ModelFixtures.path("vqvae/" + name) }

    func testTokenizerMatchesPyTorch() throws { try check("tokenizer") }

    func testSmallTokenizerWithoutResidualBlocksMatchesPyTorch() throws { try check("tokenizer-small") }

    private func check(_ name: String) throws {
        let directory = Self.path(name)
        let config = try JSONDecoder().decode(VQVAEConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
        let arena = ParameterArena()
        let model = try VQVAE(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) { try weights.copyFloats($0, into: $1) }
        XCTAssertEqual(report.ignored, [], name)
        XCTAssertEqual(Set(arena.parameters.map(\.name)), Set(weights.names), "\(name): state dict keys")

        let batch = try SafeTensorsFile(path: Self.path("\(name)-batch.safetensors"))
        let B = try batch.info("pixel_values").shape[0]
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: B)
        _ = g.pixelValues.values.update(fromContentsOf: try batch.floats("pixel_values"))
        arena.zeroGrads()
        tape.forward()
        tape.backward(from: g.loss)

        let reference = try SafeTensorsFile(path: Self.path("\(name)-grads.safetensors"))
        let codes = try reference.int64s("codes").map { Int32($0) }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.codes, count: codes.count)), codes, "\(name) codes")
        XCTAssertGreaterThan(Set(codes).count, 1, "\(name): the fixture uses several codes")
        let difference = maxAbsDifference(Array(g.reconstruction.values), try reference.floats("reconstruction"))
        XCTAssertLessThanOrEqual(difference, 1e-5, "\(name) reconstruction")
        for (output, tensor) in [("reconstruction_loss", g.reconstructionLoss), ("quantization_loss", g.quantizationLoss)] {
            let expected = try reference.floats(output)[0]
            XCTAssertEqual(tensor.data[0], expected, accuracy: 1e-5 * abs(expected), "\(name) \(output)")
        }
        let (lossError, worst) = try assertParameterGradientsMatch(
            loss: g.loss.data[0], parameters: model.parameters, reference: reference,
            ignoring: ["reconstruction", "codes", "reconstruction_loss", "quantization_loss"], name)
        print("VQ-VAE \(name) parity: reconstruction max abs difference \(difference), loss relative difference \(lossError), worst relative gradient error \(worst.error) on \(worst.name)")
    }
}
