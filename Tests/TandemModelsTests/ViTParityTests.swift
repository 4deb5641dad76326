import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` against transformers' ViTForImageClassification and
/// ViTForMaskedImageModeling on the fixtures written by scripts/fixtures/make_vit_fixtures.py (random
/// models of 20 px images, patch 5, hidden 36 = 3 heads of 12, 2 layers, 7 labels, batch 3).
final class ViTParityTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    func testClassificationForwardMatchesTransformers() throws {
        try checkForward("classification", outputs: ["last_hidden_state", "logits"])
    }

    func testMaskedImageModelingForwardMatchesTransformers() throws {
        try checkForward("mim", outputs: ["last_hidden_state", "reconstruction"])
    }

    func testDeiTForwardMatchesTransformers() throws {
        try checkForward("deit", outputs: ["last_hidden_state", "logits", "cls_logits", "distillation_logits"])
    }

    func testDeiTDistillationGradsMatchTransformers() throws {
        try checkGrads("deit")
    }

    func testClassificationGradsMatchTransformers() throws {
        try checkGrads("classification")
    }

    func testMaskedImageModelingGradsMatchTransformers() throws {
        try checkGrads("mim")
    }

    private func checkForward(_ name: String, outputs: [String]) throws {
        let path = out("\(name)-forward.safetensors")
        try DebugCommands.forward(model: ViTFixtures.path(name), batch: ViTFixtures.path("\(name)-batch.safetensors"),
                                     out: path, log: { _ in })
        let ours = try SafeTensorsFile(path: path)
        let reference = try SafeTensorsFile(path: ViTFixtures.path("\(name)-forward.safetensors"))
        XCTAssertEqual(Set(ours.names), Set(reference.names))
        for output in outputs {
            XCTAssertEqual(try ours.info(output).shape, try reference.info(output).shape, output)
            let difference = maxAbsDifference(try ours.floats(output), try reference.floats(output))
            print("ViT \(name) forward parity: \(output) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, output)
        }
        let loss = try ours.floats("loss")[0], expected = try reference.floats("loss")[0]
        XCTAssertEqual(try ours.info("loss").shape, [])
        print("ViT \(name) forward parity: loss \(loss) vs \(expected), relative difference \(abs(loss - expected) / abs(expected))")
        XCTAssertLessThanOrEqual(abs(loss - expected) / abs(expected), 1e-5, "loss \(loss) vs \(expected)")
    }

    private func checkGrads(_ name: String) throws {
        let path = out("\(name)-grads.safetensors")
        try DebugCommands.grads(model: ViTFixtures.path(name), batch: ViTFixtures.path("\(name)-batch.safetensors"),
                                   out: path, log: { _ in })
        let (lossError, worst) = try assertGradientsMatch(try SafeTensorsFile(path: path),
                                                          try SafeTensorsFile(path: ViTFixtures.path("\(name)-grads.safetensors")),
                                                          zeroGradientSuffix: "attention.attention.key.bias")
        print("ViT \(name) gradient parity: loss relative difference \(lossError), "
              + "worst relative gradient error \(worst.error) on \(worst.name)")
    }
}

enum ViTFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("vit")
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}
