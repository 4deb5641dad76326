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
            let c = try TrainingConfig(file: file)
            let settings = try RunSettings(c, worldSize: 1)
            let preset = try XCTUnwrap(c.model.preset, file)
            let family = try ModelFamilies.family(ofPreset: preset, file: file)
            switch family.name {
            case BERTFamily.name:
                // SpanBERT's head sizes are model fields of their own (SpanBertTask.headFields).
                let fields = c.model.fields.filter { c.train.objective != "spanbert" || !SpanBertTask.headFields.contains($0.key) }
                let bert = try BERTFamily.config(preset: preset, overrides: fields, vocabSize: nil, file: file)
                XCTAssertLessThanOrEqual(settings.sequenceLength, bert.maxPositionEmbeddings, file)
                XCTAssertNotNil(c.data.vocab, file)
            case ALBERTFamily.name:
                let albert = try ALBERTFamily.config(preset: preset, overrides: c.model.fields, vocabSize: nil, file: file)
                XCTAssertLessThanOrEqual(settings.sequenceLength, albert.maxPositionEmbeddings, file)
                XCTAssertNotNil(c.data.vocab, file)
            case GPTFamily.name:
                let gpt = try GPTFamily.config(preset: preset, overrides: c.model.fields, file: file)
                XCTAssertLessThanOrEqual(settings.sequenceLength, gpt.nPositions, file)
            case ViTFamily.name:
                let head = ViTFamily.head(objective: c.train.objective)
                let vit = try ViTFamily.config(preset: preset, initFrom: nil, overrides: c.model.fields, head: head,
                                               channels: 3, classes: (0..<10).map(String.init), file: file)
                XCTAssertEqual(vit.head, head, file)
                if head == .distillation { XCTAssertNotNil(c.train.teacher, file) }
            case BEiTFamily.name:
                let mim = c.train.objective == "masked_image_modeling"
                let beit = try BEiTFamily.config(preset: preset, initFrom: nil, overrides: c.model.fields, channels: 3,
                                                 classes: (0..<10).map(String.init), file: file,
                                                 visualTokens: mim ? (c.data.visualTokens ?? "", 8192) : nil)
                XCTAssertEqual(beit.head, mim ? .maskedImageModeling : .imageClassification, file)
                if mim { XCTAssertNotNil(c.data.visualTokens, file) }
            case Wav2Vec2Family.name:
                let w = try Wav2Vec2Family.config(preset: preset, initFrom: nil, overrides: c.model.fields,
                                                  objective: c.train.objective ?? "ctc", vocabSize: 32, file: file)
                XCTAssertEqual(w.head, c.train.objective == "pretraining" ? .preTraining : .ctc, file)
            default:
                break  // a family without checks of its own here gets the generic ones below
            }
            if let objective = c.train.objective { XCTAssertTrue(family.objectives.contains(objective), file) }
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
                let c = try TrainingConfig(file: file)
                XCTAssertEqual(c.model.preset, "bert-\(size)", file)
                XCTAssertEqual(c.data.seqLen, seq, file)
                XCTAssertEqual(c.data.maxPredictions, predictions, file)
                XCTAssertEqual(c.data.train, "data/corpus", file)
                XCTAssertEqual(c.data.eval, "data/corpus-eval", file)
                XCTAssertEqual(c.data.vocab, "data/vocab.txt", file)
                // Both phases must accept several rank counts without editing the file.
                for ranks in [2, 4, 8, 16] { XCTAssertNoThrow(try RunSettings(c, worldSize: ranks), "\(file) on \(ranks) ranks") }
            }
        }
    }
}
