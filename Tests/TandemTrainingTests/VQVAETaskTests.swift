import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels
import TandemTestSupport
@testable import TandemTraining
@testable import TandemTools

/// The VQ-VAE tokenizer's training task (family vqvae): the codebook's data initialisation and dead-code
/// restarts, config errors, and `tandem tokenize-images` writing a visual tokens file that BEiT's reader
/// (`VisualTokens`) accepts for the same images.
final class VQVAETaskTests: ScratchDirectoryTestCase {
    static let size = 16

    func imageDirectory(_ name: String = "images", count: Int = 24) throws -> String {
        let out = scratch.appendingPathComponent(name).path
        let source = RandomImages(count: count, size: Self.size, channels: 1, classes: 4)
        let reports = try writeImageShards(source: source, out: out, shardSize: 10)
        try ImageShardManifest.build(directory: out, source: source, reports: reports).write(directory: out)
        return out
    }

    func config(_ images: String, _ overrides: [String] = []) throws -> TrainingConfig {
        let yaml = """
        model: {preset: vqvae-28, image_size: \(Self.size), base_channels: 4, hidden_channels: 6, residual_channels: 3, num_residual_blocks: 1, codebook_size: 10, codebook_dim: 3}
        data: {train: \(images), eval: \(images)}
        train: {steps: 4, global_batch: 8, micro_batch: 4, lr: 1.0e-3, warmup: 1, log_every: 10}
        checkpoint: {dir: \(scratch.appendingPathComponent("run").path), every: 0}
        eval: {batches: 0}
        """
        return try TrainingConfig(yaml: yaml, file: "vqvae.yaml", overrides: overrides)
    }

    func makeTask(_ config: TrainingConfig) throws -> ImageTokenizerTask {
        try XCTUnwrap(try ModelFamilies.makeTask(config, settings: RunSettings(config, worldSize: 1), initFrom: nil) as? ImageTokenizerTask)
    }

    /// The encoder's rows for every image of `data` (eval view), as sets of D floats.
    func encoderRows(_ task: ImageTokenizerTask) -> Set<[Float]> {
        let c = task.model.config, n = c.numChannels * c.imageSize * c.imageSize, D = c.codebookDim
        let tape = Tape()
        tape.training = false
        let (pixels, _, z) = task.model.recordEncoder(on: tape, batch: task.train.count)
        tape.seal()
        let augmenter = ImageAugmenter(options: AugmentationOptions(outputSize: c.imageSize, randomResizedCrop: false, horizontalFlip: false,
                                                                    mean: task.train.mean, std: task.train.std),
                                       inputHeight: task.train.height, inputWidth: task.train.width, channels: 1, seed: 0)
        for i in 0..<task.train.count { augmenter.eval(task.train.pixels(i), into: pixels.data + i * n) }
        tape.forward()
        return Set((0..<(z.count / D)).map { Array(UnsafeBufferPointer(start: z.data + $0 * D, count: D)) })
    }

    func codes(_ task: ImageTokenizerTask) -> [[Float]] {
        let D = task.model.config.codebookDim
        return (0..<task.model.config.codebookSize).map { Array(UnsafeBufferPointer(start: task.model.codebook.value + $0 * D, count: D)) }
    }

    func testCodebookStartsAtDistinctEncoderOutputs() throws {
        let images = try imageDirectory()
        let task = try makeTask(try config(images))
        let rows = encoderRows(task), start = codes(task)
        for (k, code) in start.enumerated() { XCTAssertTrue(rows.contains(code), "code \(k) is not an encoder output") }
        XCTAssertEqual(Set(start).count, start.count, "the codes start at distinct rows")
        // Deterministic: the same seed gives the same codebook; without the data initialisation it differs.
        XCTAssertEqual(codes(try makeTask(try config(images))), start)
        let random = try makeTask(try config(images, ["model.init_codebook_from_data=false"]))
        XCTAssertFalse(codes(random).contains { rows.contains($0) })
    }

    func testOnlyUnusedCodesRestart() throws {
        let images = try imageDirectory()
        let task = try makeTask(try config(images))
        let D = task.model.config.codebookDim, K = task.model.config.codebookSize
        // Every code the same direction: ties go to code 0, so the other codes are unused.
        let first = codes(task)[0]
        for k in 0..<K { (task.model.codebook.value + k * D).update(from: first, count: D) }
        task.resetCodes(step: 100, onlyUnused: true)
        let after = codes(task), rows = encoderRows(task)
        XCTAssertEqual(after[0], first, "the used code stays")
        XCTAssertEqual(task.restartedCodes, K - 1)
        for k in 1..<K { XCTAssertTrue(rows.contains(after[k]), "code \(k) restarted at an encoder output") }
        XCTAssertEqual(Set(after[1...]).count, K - 1)
    }

    func testConfigErrors() throws {
        let images = try imageDirectory()
        func makeTask(_ config: TrainingConfig) throws -> TrainingTask {
            try ModelFamilies.makeTask(config, settings: RunSettings(config, worldSize: 1), initFrom: nil)
        }
        XCTAssertThrowsError(try makeTask(try config(images, ["model.downsample_factor=3"]))) {
            XCTAssertTrue("\($0)".contains("downsample_factor 3 must be a power of two"), "\($0)")
        }
        XCTAssertThrowsError(try makeTask(try config(images, ["model.image_size=18"]))) {
            XCTAssertTrue("\($0)".contains("image_size 18 is not a multiple of downsample_factor 4"), "\($0)")
        }
        XCTAssertThrowsError(try makeTask(try config(images, ["data.mixup=0.8"]))) {
            XCTAssertTrue("\($0)".contains("data.mixup and data.cutmix do not apply"), "\($0)")
        }
        XCTAssertThrowsError(try makeTask(try config(images, ["model.num_hidden_layers=2"]))) {
            XCTAssertTrue("\($0)".contains("unknown model field model.num_hidden_layers"), "\($0)")
        }
    }

    /// A checkpoint directory of `task` as the trainer writes one: config.json and model.safetensors.
    func checkpoint(_ task: ImageTokenizerTask) throws -> String {
        let dir = scratch.appendingPathComponent("tokenizer").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try task.hfConfigJSON.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        var w = SafeTensorsWriter()
        for (name, p) in task.checkpointTensors { w.add(name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(p.values)) }
        try w.write(toPath: dir + "/model.safetensors")
        return dir
    }

    func testTokenizeImagesWritesWhatBEiTReads() throws {
        let images = try imageDirectory()
        let task = try makeTask(try config(images))
        let dir = try checkpoint(task)
        let out = scratch.appendingPathComponent("tokens.safetensors").path
        let picture = scratch.appendingPathComponent("picture.png").path
        var lines: [String] = []
        let summary = try ImageTokenization.run(tokenizerDirectory: dir, images: images, output: out, picture: picture,
                                                pictureCount: 6, batch: 5) { lines.append($0) }
        XCTAssertEqual(summary.images, 24)
        XCTAssertTrue(lines.contains { $0.contains("codebook perplexity") }, "\(lines)")
        // BEiT's reader accepts the file for these images and a 4x4 grid, and its rows are the model's codes.
        let tokens = try VisualTokens(path: out, key: "data.visual_tokens")
        try tokens.check(images: try ImageDataset(directory: images), imagesKey: "data.train", grid: 4)
        XCTAssertEqual(tokens.count, 24)
        XCTAssertEqual(tokens.vocabSize, 10)
        XCTAssertEqual(Set((0..<24).flatMap { tokens.row($0) }).count, summary.codesUsed)
        let c = task.model.config
        let tape = Tape()
        tape.training = false
        let g = task.model.record(on: tape, batch: 1)
        tape.seal()
        let augmenter = ImageAugmenter(options: AugmentationOptions(outputSize: c.imageSize, randomResizedCrop: false, horizontalFlip: false,
                                                                    mean: task.train.mean, std: task.train.std),
                                       inputHeight: Self.size, inputWidth: Self.size, channels: 1, seed: 0)
        for i in [0, 7, 23] {
            augmenter.eval(task.train.pixels(i), into: g.pixelValues.data)
            tape.forward()
            XCTAssertEqual(tokens.row(i), Array(UnsafeBufferPointer(start: g.codes, count: 16)), "image \(i)")
        }
        // A PNG of 6 originals above their reconstructions: 6 x (48 + 2) + 2 wide, 2 x 50 + 2 high.
        let png = try Data(contentsOf: URL(fileURLWithPath: picture))
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let decoded = try decodeImage(path: picture)
        XCTAssertEqual(decoded.width, 6 * 50 + 2)
        XCTAssertEqual(decoded.height, 2 * 50 + 2)
    }

    func testTokenizeImagesRefusesOtherCheckpoints() throws {
        let images = try imageDirectory()
        let dir = scratch.appendingPathComponent("notvq").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try #"{"model_type": "beit"}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ImageTokenization.run(tokenizerDirectory: dir, images: images, output: dir + "/t", picture: nil) { _ in }) {
            XCTAssertTrue("\($0)".contains("model_type beit is not vqvae"), "\($0)")
        }
    }
}
