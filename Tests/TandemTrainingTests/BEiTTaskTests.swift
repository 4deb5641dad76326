import Foundation
import XCTest
import TandemCheckpoint
import TandemCollectives
import TandemData
import TandemModels
import TandemTestSupport
@testable import TandemTraining

/// The beit family: BeitForImageClassification trained through `VisionTask` on real Fashion-MNIST shards
/// (Debian dataset-fashion-mnist), the checkpoint it writes read back by `BEiT.load`, and its config
/// errors.
final class BEiTTaskTests: ScratchDirectoryTestCase {
    /// Fashion-MNIST's test set as image shards in the scratch directory; skips where it is missing.
    func shards() throws -> String {
        let images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
        guard FileManager.default.fileExists(atPath: images) else { throw XCTSkip("dataset-fashion-mnist is not installed") }
        let out = scratch.appendingPathComponent("fmnist").path
        _ = try prepareImages(input: images, out: out)
        return out
    }

    func config(_ shards: String, _ overrides: [String] = []) throws -> TrainingConfig {
        let yaml = """
        model: {preset: beit-tiny-28, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, intermediate_size: 128}
        data: {train: \(shards), eval: \(shards), augment: false}
        train: {steps: 40, global_batch: 32, micro_batch: 16, lr: 5.0e-3, warmup: 3, log_every: 10}
        checkpoint: {dir: \(scratch.appendingPathComponent("run").path), every: 0}
        """
        return try TrainingConfig(yaml: yaml, file: "beit.yaml", overrides: overrides)
    }

    func testTrainsOnFashionMNISTAndWritesACheckpointBEiTLoads() throws {
        let config = try config(try shards())
        let comm = LocalCommunicator()
        let settings = try RunSettings(config, worldSize: comm.size)
        let task = try ModelFamilies.makeTask(config, settings: settings, initFrom: nil)
        let vision = try XCTUnwrap(task as? VisionTask<BEiT>)
        XCTAssertEqual(vision.model.config.head, .imageClassification)
        XCTAssertTrue(vision.model.config.useRelativePositionBias && vision.model.config.useMeanPooling)
        XCTAssertEqual(vision.model.config.numChannels, 1, "channels from the shards")
        XCTAssertEqual(vision.model.config.id2label[0], "T-shirt/top", "class names from the shards")
        XCTAssertTrue(task.modelDescription.hasPrefix("BeitForImageClassification layers=2"), task.modelDescription)
        XCTAssertGreaterThan(task.trainingFLOPsPerSample, 6 * Double(task.arena.parameterCount))
        let trainer = try Trainer(settings: settings, task: task, communicator: comm)
        let losses = (0..<settings.steps).map { _ in trainer.trainStep().loss }
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        print("BEiT on Fashion-MNIST: mean loss of steps 1-5 \(first), of steps 36-40 \(last)")
        XCTAssertEqual(losses[0], log(10), accuracy: 0.3, "an untrained 10-class classifier starts near ln 10")
        XCTAssertLessThan(last, first - 0.25, "losses \(losses)")
        let metrics = Dictionary(uniqueKeysWithValues: try XCTUnwrap(trainer.evaluate(batches: 8)))
        print("BEiT on Fashion-MNIST after 40 steps: \(metrics)")
        XCTAssertGreaterThan(try XCTUnwrap(metrics["eval_top1"]), 0.25, "\(metrics) (chance is 0.1)")

        let checkpointer = Checkpointer(root: config.checkpoint.dir!, keep: 2, keepEvery: 0)
        try checkpointer.save(trainer: trainer, config: config)
        try checkpointer.wait()
        let directory = config.checkpoint.dir! + "/step-00000040"
        let hf = try JSONDecoder().decode(BEiTConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
        XCTAssertEqual(hf, vision.model.config)
        let weights = try SafeTensorsFile(path: directory + "/model.safetensors")
        let arena = ParameterArena()
        let model = try BEiT(hf, arena: arena, rng: Philox(seed: 7))
        arena.seal()
        let report = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: directory) { try weights.copyFloats($0, into: $1) }
        XCTAssertEqual(report.keptInit, [], "missing keys")
        XCTAssertEqual(report.ignored, [], "unexpected keys")
        XCTAssertEqual(Set(weights.names), Set(model.parameters.map(\.name)))
        XCTAssertEqual(Array(arena.values), Array(task.arena.values), "the checkpoint holds the trained parameters")

        // --init-from the checkpoint: the same architecture, every tensor used.
        let again = try ModelFamilies.makeTask(config, settings: settings, initFrom: directory)
        var log: [String] = []
        try again.loadPretrained(directory: directory) { log.append($0) }
        XCTAssertEqual(log, [])
        XCTAssertEqual(Array(again.arena.values), Array(task.arena.values))
    }

    /// --init-from a pre-trained BeitForMaskedImageModeling directory (the transformers fixture: 20 px,
    /// 3 channels, patch 5, per-layer tables, absolute positions, a mask token, [CLS] pooling): a
    /// classifier of the fixture's encoder with the shards' classes, the encoder's tensors (its final
    /// LayerNorm included) loaded, the classifier at its init, the visual-token head (`layernorm`,
    /// `lm_head`) ignored; then a training step.
    func testInitFromAMaskedImageModelingCheckpoint() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TandemModelsTests/Fixtures/beit/mim").path
        let shards = scratch.appendingPathComponent("rgb20").path
        let source = RandomImages(count: 24, size: 20, channels: 3, classes: 4)
        let reports = try writeImageShards(source: source, out: shards, shardSize: 12)
        try ImageShardManifest.build(directory: shards, source: source, reports: reports).write(directory: shards)
        let config = try TrainingConfig(yaml: """
            data: {train: \(shards), augment: false}
            train: {steps: 2, global_batch: 8, micro_batch: 8, lr: 1.0e-3}
            """, file: "beit-init.yaml")
        let settings = try RunSettings(config, worldSize: 1)
        let task = try XCTUnwrap(ModelFamilies.makeTask(config, settings: settings, initFrom: fixture) as? VisionTask<BEiT>)
        let c = task.model.config
        XCTAssertEqual([c.imageSize, c.patchSize, c.hiddenSize, c.numLabels], [20, 5, 36, 4])
        XCTAssertEqual(c.head, .imageClassification)
        XCTAssertTrue(c.useMaskToken && c.useAbsolutePositionEmbeddings && c.useRelativePositionBias)
        var log: [String] = []
        try task.loadPretrained(directory: fixture) { log.append($0) }
        XCTAssertEqual(log.count, 2, "\(log)")
        XCTAssertTrue(log[0].contains("2 parameters keep their init: classifier.weight, classifier.bias"), log[0])
        XCTAssertTrue(log[1].contains("ignored layernorm.bias, layernorm.weight, lm_head.bias, lm_head.weight"), log[1])
        let weights = try SafeTensorsFile(path: fixture + "/model.safetensors")
        let query = try XCTUnwrap(task.model.parameters.first { $0.name == "beit.encoder.layer.1.attention.attention.query.weight" })
        XCTAssertEqual(Array(query.values), try weights.floats(query.name))
        let trainer = try Trainer(settings: settings, task: task, communicator: LocalCommunicator())
        XCTAssertTrue(trainer.trainStep().loss.isFinite)
    }

    func testConfigErrorsNameTheKey() throws {
        let shards = try shards()
        func message(_ overrides: [String]) -> String {
            do {
                let c = try config(shards, overrides)
                _ = try ModelFamilies.makeTask(c, settings: RunSettings(c, worldSize: 1), initFrom: nil)
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(message(["train.objective=masked_image_modeling"]).contains("train.objective = masked_image_modeling needs data.visual_tokens"))
        XCTAssertTrue(message(["train.objective=contrastive"]).contains("its objectives are classification, masked_image_modeling"))
        XCTAssertTrue(message(["model.vocab_size=10"]).contains("unknown model field model.vocab_size"))
        XCTAssertTrue(message(["model.patch_size=5"]).contains("image_size 28 is not a multiple of patch_size 5"))
        XCTAssertTrue(message(["model.num_channels=3"]).contains("holds 1-channel images but model.num_channels is 3"))
        XCTAssertTrue(message(["model.drop_path_rate=1.5"]).contains("drop_path_rate = 1.5"))
    }
}

/// Random pixels over `classes` classes, label i % classes.
final class RandomImages: ImageSource {
    let kind = "memory", resize = "none"
    let count: Int, height: Int, width: Int, channels: Int
    let classes: [String]
    init(count: Int, size: Int, channels: Int, classes: Int) {
        self.count = count; height = size; width = size; self.channels = channels
        self.classes = (0..<classes).map { "class\($0)" }
    }
    func label(_ i: Int) -> Int32 { Int32(i % classes.count) }
    func read(_ i: Int, into pixels: UnsafeMutablePointer<UInt8>) throws {
        var rng = SplitMix(seed: UInt64(i))
        for p in 0..<(height * width * channels) { pixels[p] = UInt8(truncatingIfNeeded: rng.next()) }
    }
}

private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
