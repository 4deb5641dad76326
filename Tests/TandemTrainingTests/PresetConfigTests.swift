import Foundation
import XCTest
import TandemModels
@testable import TandemTraining

/// Every YAML file in configs/ must stay a valid training config, so a preset cannot rot when a key or a
/// model preset changes.
final class PresetConfigTests: XCTestCase {
    static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("configs").path

    func presetFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Self.configs).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { Self.configs + "/" + $0 }
    }

    func testEveryPresetParsesAndBuildsItsModel() throws {
        let files = try presetFiles()
        XCTAssertGreaterThanOrEqual(files.count, 14)
        for file in files {
            let c = try Config(file: file)
            let settings = try RunSettings(c, worldSize: 1)
            let preset = try XCTUnwrap(c.string("model.preset"), file)
            switch try ModelPresets.family(of: preset, file: file) {
            case .bert:
                let bert = try ModelPresets.bertConfig(preset, overrides: c.modelFields, vocabSize: nil, file: file)
                XCTAssertLessThanOrEqual(settings.sequenceLength, bert.maxPositionEmbeddings, file)
                XCTAssertNotNil(c.string("data.vocab"), file)
            case .gpt:
                let gpt = try ModelPresets.gptConfig(preset, overrides: c.modelFields, file: file)
                XCTAssertLessThanOrEqual(settings.sequenceLength, gpt.nPositions, file)
            case .vit:
                let objective = c.string("train.objective") ?? "classification"
                let head: ViTHead = objective == "masked_image_modeling" ? .maskedImageModeling
                    : objective == "distillation" ? .distillation : .imageClassification
                let vit = try ModelPresets.vitConfig(preset, initFrom: nil, overrides: c.modelFields, head: head,
                                                     channels: 3, classes: (0..<10).map(String.init), file: file)
                XCTAssertEqual(vit.head, head, file)
                if head == .distillation { XCTAssertNotNil(c.string("train.teacher"), file) }
            }
            // The header comment names the batch and learning rate the preset was tuned for.
            let header = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
                .prefix { $0.hasPrefix("#") }.joined(separator: " ").lowercased()
            XCTAssertTrue(header.contains("global batch"), "\(file): the header comment names no global batch")
            XCTAssertNotNil(header.range(of: "[0-9]e-[0-9]", options: .regularExpression),
                            "\(file): the header comment names no learning rate (as 1e-4)")
        }
    }

    func testBertPhasePresetsFollowTheRecipe() throws {
        for size in ["tiny", "mini", "small", "medium", "base", "large"] {
            for (seq, predictions) in [(128, 20), (512, 80)] {
                let file = Self.configs + "/bert-\(size)-\(seq).yaml"
                let c = try Config(file: file)
                XCTAssertEqual(c.string("model.preset"), "bert-\(size)", file)
                XCTAssertEqual(c.int("data.seq_len"), seq, file)
                XCTAssertEqual(c.int("data.max_predictions"), predictions, file)
                XCTAssertEqual(c.string("data.train"), "data/corpus", file)
                XCTAssertEqual(c.string("data.eval"), "data/corpus-eval", file)
                XCTAssertEqual(c.string("data.vocab"), "data/vocab.txt", file)
                // Both phases must accept several rank counts without editing the file.
                for ranks in [2, 4, 8, 16] { XCTAssertNoThrow(try RunSettings(c, worldSize: ranks), "\(file) on \(ranks) ranks") }
            }
        }
    }
}
