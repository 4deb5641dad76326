import Foundation
import XCTest
import TandemCheckpoint
import TandemCollectives
import TandemData
import TandemModels
import TandemTestSupport
@testable import TandemTraining

/// BEiT's masked image modeling (`train.objective: masked_image_modeling` in the beit family): the visual
/// tokens file (`VisualTokens`, written here with SafeTensorsWriter as a tokenizer would), its errors, the
/// training loss against the masked cross-entropy that `tandem debug` computes on the dumped batch,
/// evaluation, exact resume, and fine-tuning a classifier from the checkpoint.
final class BEiTMaskedImageModelingTests: ScratchDirectoryTestCase {
    static let images = 24, size = 16, patch = 4, grid = 4, vocab = 12

    /// 24 random 16 px grey images over 4 classes (a 4x4 grid of 4-pixel patches).
    func imageDirectory(_ name: String = "images", count: Int = images, shardSize: Int = 10) throws -> String {
        let out = scratch.appendingPathComponent(name).path
        let source = RandomImages(count: count, size: Self.size, channels: 1, classes: 4)
        let reports = try writeImageShards(source: source, out: out, shardSize: shardSize)
        try ImageShardManifest.build(directory: out, source: source, reports: reports).write(directory: out)
        return out
    }

    /// Token of image i, patch p: a fixed scramble in 0..<vocab, every image's row a different one.
    static func token(_ i: Int, _ p: Int) -> Int32 { Int32(((i + 1) * 2654435761 + p * 40503 + ((i * p) >> 1) * 97) % 104729 % vocab) }

    /// A visual tokens file for `images` with `count` rows on a `rows` x `cols` grid; `edit` changes the
    /// metadata or the tokens before writing.
    @discardableResult
    func tokensFile(_ name: String, images: String, count: Int = images, rows: Int = grid, cols: Int = grid,
                    dtype64: Bool = false, edit: (inout [String: String], inout [Int32]) -> Void = { _, _ in }) throws -> String {
        let path = scratch.appendingPathComponent(name).path
        var tokens = (0..<count).flatMap { i in (0..<rows * cols).map { Self.token(i, $0) } }
        let manifest = try Data(contentsOf: URL(fileURLWithPath: images + "/manifest.json"))
        var meta = ["format": "tandem-visual-tokens", "vocab_size": String(Self.vocab), "grid": "\(rows)x\(cols)",
                    "images_manifest_sha256": SHA256.hex(SHA256.hash(Array(manifest))), "tokenizer": "test scramble"]
        edit(&meta, &tokens)
        var w = SafeTensorsWriter(metadata: meta)
        if dtype64 {
            w.add("visual_tokens", shape: [count, rows * cols], int64s: tokens.map { Int64($0) })
        } else {
            w.add("visual_tokens", shape: [count, rows * cols], int32s: tokens)
        }
        try w.write(toPath: path)
        return path
    }

    func config(_ images: String, tokens: String?, eval: (String, String)? = nil, _ overrides: [String] = []) throws -> TrainingConfig {
        var data = "train: \(images), augment: false"
        if let tokens { data += ", visual_tokens: \(tokens)" }
        if let (e, t) = eval { data += ", eval: \(e), eval_visual_tokens: \(t)" }
        let yaml = """
        model: {preset: beit-mini-28, image_size: \(Self.size), patch_size: \(Self.patch), num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, drop_path_rate: 0.0}
        data: {\(data)}
        train: {objective: masked_image_modeling, steps: 6, global_batch: 8, micro_batch: 8, lr: 2.0e-3, warmup: 1, log_every: 10}
        checkpoint: {dir: \(scratch.appendingPathComponent("run").path), every: 0}
        eval: {batches: 0}
        """
        return try TrainingConfig(yaml: yaml, file: "beit-mim.yaml", overrides: overrides)
    }

    func makeTask(_ config: TrainingConfig, initFrom: String? = nil) throws -> VisionTask<BEiT> {
        let task = try ModelFamilies.makeTask(config, settings: RunSettings(config, worldSize: 1), initFrom: initFrom)
        return try XCTUnwrap(task as? VisionTask<BEiT>)
    }

    // MARK: - Training

    func testLossIsTheMaskedCrossEntropyOfTheDumpedBatch() throws {
        let images = try imageDirectory()
        let tokens = try tokensFile("tokens.safetensors", images: images)
        let config = try config(images, tokens: tokens, eval: (images, tokens))
        let task = try makeTask(config)
        let c = task.model.config
        XCTAssertEqual(c.head, .maskedImageModeling)
        XCTAssertEqual(c.vocabSize, Self.vocab, "vocab_size from the token file")
        XCTAssertTrue(c.useMaskToken)
        XCTAssertTrue(task.modelDescription.hasPrefix("BeitForMaskedImageModeling layers=2"), task.modelDescription)
        XCTAssertEqual(task.options.augment, false)

        // The initial weights as a transformers directory, for `tandem debug`'s model.
        let initial = scratch.appendingPathComponent("initial").path
        try FileManager.default.createDirectory(atPath: initial, withIntermediateDirectories: true)
        var w = SafeTensorsWriter()
        for (name, p) in task.checkpointTensors { w.add(name, shape: p.shape.dims, floats: Array(p.values)) }
        try w.write(toPath: initial + "/model.safetensors")
        try task.hfConfigJSON.write(toFile: initial + "/config.json", atomically: true, encoding: .utf8)

        let settings = try RunSettings(config, worldSize: 1)
        let trainer = try Trainer(settings: settings, task: task, communicator: LocalCommunicator())
        let dump = scratch.appendingPathComponent("dump").path
        try FileManager.default.createDirectory(atPath: dump, withIntermediateDirectories: true)
        trainer.batchDumpDirectory = dump
        let first = trainer.trainStep().loss
        trainer.batchDumpDirectory = nil
        XCTAssertEqual(first, log(Double(Self.vocab)), accuracy: 0.5, "an untrained head starts near ln(vocab)")

        let batchPath = dump + "/step-000000-rank-0-micro-0.safetensors"
        let batch = try BEiTBatch(path: batchPath, config: c)
        let labels = try XCTUnwrap(batch.labels), mask = try XCTUnwrap(batch.boolMaskedPos)
        let NP = c.numPatches, expectedMasked = Int((0.4 * Double(NP)).rounded())
        let rows = (0..<Self.images).map { i in (0..<NP).map { Self.token(i, $0) } }
        XCTAssertEqual(Set(rows).count, Self.images, "a labels row identifies its image")
        let masking = try BlockMasking(height: Self.grid, width: Self.grid, numMaskingPatches: expectedMasked, minNumPatches: 4,
                                       seed: UInt64(config.train.seed))
        for b in 0..<batch.batch {
            let row = Array(labels[b * NP..<(b + 1) * NP])
            let i = try XCTUnwrap(rows.firstIndex(of: row), "labels row \(b) is the tokens row of an image")
            let m = Array(mask[b * NP..<(b + 1) * NP])
            XCTAssertEqual(m.reduce(0, +), Int32(expectedMasked), "40% of the patches masked")
            XCTAssertEqual(m.map { $0 != 0 }, masking.mask(epoch: 0, sample: i), "BEiT's block mask of (seed, epoch 0, sample \(i))")
        }

        let debug = try BEiTFamily.debugModel(directory: initial, batch: batchPath, forGradients: false) { _ in }
        debug.tape.forward()
        let debugLoss = Double(try XCTUnwrap(debug.loss).data[0])
        XCTAssertEqual(first, debugLoss, accuracy: 1e-6 * debugLoss, "the step's loss is tandem debug's on the dumped batch")
        let logits = try XCTUnwrap(debug.outputs().first { $0.name == "logits" })
        XCTAssertEqual(logits.shape, [batch.batch, NP, Self.vocab])
        var sum = 0.0, n = 0
        for b in 0..<batch.batch {
            for p in 0..<NP where mask[b * NP + p] != 0 {
                let row = logits.values[(b * NP + p) * Self.vocab..<(b * NP + p + 1) * Self.vocab].map(Double.init)
                let top = row.max()!
                sum += top + log(row.map { exp($0 - top) }.reduce(0, +)) - row[Int(labels[b * NP + p])]
                n += 1
            }
        }
        XCTAssertEqual(debugLoss, sum / Double(n), accuracy: 1e-5, "transformers' loss: mean cross-entropy over the masked patches")

        var losses = [first]
        for _ in 1..<settings.steps { losses.append(trainer.trainStep().loss) }
        XCTAssertTrue(losses.allSatisfy(\.isFinite), "\(losses)")
        let metrics = Dictionary(uniqueKeysWithValues: try XCTUnwrap(trainer.evaluate(batches: 0)))
        print("BEiT MIM: losses \(losses), eval \(metrics)")
        let evalLoss = try XCTUnwrap(metrics["eval_mim_loss"]), accuracy = try XCTUnwrap(metrics["eval_mim_accuracy"])
        XCTAssertEqual(evalLoss, log(Double(Self.vocab)), accuracy: 1.5)
        XCTAssertTrue((0...1).contains(accuracy))
        XCTAssertNil(metrics["eval_top1"])

        // The checkpoint is a BeitForMaskedImageModeling directory; a classifier starts from it.
        let checkpointer = Checkpointer(root: config.checkpoint.dir!, keep: 2, keepEvery: 0)
        try checkpointer.save(trainer: trainer, config: config)
        try checkpointer.wait()
        let directory = config.checkpoint.dir! + "/step-00000006"
        let json = try String(contentsOfFile: directory + "/config.json", encoding: .utf8)
        XCTAssertTrue(json.contains("\"BeitForMaskedImageModeling\""), json)
        let hf = try JSONDecoder().decode(BEiTConfig.self, from: Data(json.utf8))
        XCTAssertEqual(hf, c)
        let classify = try TrainingConfig(yaml: """
            data: {train: \(images), eval: \(images), augment: true}
            train: {steps: 2, global_batch: 8, micro_batch: 8, lr: 1.0e-3}
            """, file: "beit-ft.yaml")
        let ft = try makeTask(classify, initFrom: directory)
        XCTAssertEqual(ft.model.config.head, .imageClassification)
        XCTAssertEqual(ft.model.config.numLabels, 4)
        var log: [String] = []
        try ft.loadPretrained(directory: directory) { log.append($0) }
        XCTAssertEqual(log.count, 2, "\(log)")
        XCTAssertTrue(log[0].contains("keep their init: beit.pooler.layernorm.weight, beit.pooler.layernorm.bias, classifier.weight, classifier.bias"), log[0])
        XCTAssertTrue(log[1].contains("ignored layernorm.bias, layernorm.weight, lm_head.bias, lm_head.weight"), log[1])
        let query = try XCTUnwrap(task.model.parameters.first { $0.name == "beit.encoder.layer.1.attention.attention.query.weight" })
        XCTAssertEqual(Array(try XCTUnwrap(ft.model.parameters.first { $0.name == query.name }).values), Array(query.values))
        let ftTrainer = try Trainer(settings: RunSettings(classify, worldSize: 1), task: ft, communicator: LocalCommunicator())
        XCTAssertTrue(ftTrainer.trainStep().loss.isFinite)
    }

    /// Masks and tokens are functions of (seed, epoch, sample): 3 steps, a checkpoint, and 3 more steps
    /// in a new task and trainer resumed from it give the parameters and optimizer state of 6 straight
    /// steps, bit for bit (3 steps of 8 images cross the 24-image epoch boundary).
    func testResumeIsExact() throws {
        let images = try imageDirectory()
        let tokens = try tokensFile("tokens.safetensors", images: images)
        let config = try config(images, tokens: tokens)
        let settings = try RunSettings(config, worldSize: 1)
        let straight = try Trainer(settings: settings, task: try makeTask(config), communicator: LocalCommunicator())
        for _ in 0..<6 { _ = straight.trainStep() }

        let first = try Trainer(settings: settings, task: try makeTask(config), communicator: LocalCommunicator())
        for _ in 0..<3 { _ = first.trainStep() }
        let checkpointer = Checkpointer(root: config.checkpoint.dir!, keep: 2, keepEvery: 0)
        try checkpointer.save(trainer: first, config: config)
        try checkpointer.wait()
        let resumed = try Trainer(settings: settings, task: try makeTask(config), communicator: LocalCommunicator())
        _ = try Resumer.resume("auto", root: config.checkpoint.dir!, trainer: resumed) { _ in }
        XCTAssertEqual(resumed.step, 3)
        for _ in 0..<3 { _ = resumed.trainStep() }
        XCTAssertEqual(Array(resumed.task.arena.values), Array(straight.task.arena.values), "resumed == straight, bit for bit")
    }

    // MARK: - Errors

    func message(_ config: () throws -> TrainingConfig) -> String {
        do { _ = try makeTask(try config()); return "no error" } catch { return "\(error)" }
    }

    func testTokenFileErrorsNameTheKeyAndTheFile() throws {
        let images = try imageDirectory()
        let other = try imageDirectory("other", shardSize: 12)  // the same images in other shards: another manifest
        func check(_ path: String, _ expected: String, key: String = "data.visual_tokens", line: UInt = #line) {
            let m = message { try config(images, tokens: path) }
            XCTAssertTrue(m.contains(expected), "\(m) lacks \(expected)", line: line)
            XCTAssertTrue(m.contains(key) && m.contains(path), "\(m) names neither \(key) nor \(path)", line: line)
        }
        check(scratch.appendingPathComponent("absent.safetensors").path, "no such file")
        check(try tokensFile("format.safetensors", images: images) { meta, _ in meta["format"] = "pt" },
              "not a visual tokens file: __metadata__ format is \"pt\", not \"tandem-visual-tokens\"")
        check(try tokensFile("novocab.safetensors", images: images) { meta, _ in meta["vocab_size"] = nil }, "vocab_size is missing")
        check(try tokensFile("badgrid.safetensors", images: images) { meta, _ in meta["grid"] = "16" }, "grid is \"16\", not <rows>x<cols>")
        check(try tokensFile("i64.safetensors", images: images, dtype64: true), "visual_tokens has dtype I64, not I32")
        check(try tokensFile("count.safetensors", images: images, count: 23),
              "holds the tokens of 23 images, but data.train (\(images)) has 24")
        check(try tokensFile("grid.safetensors", images: images, rows: 2, cols: 2),
              "tokens on a 2x2 grid, but the model's patch grid (image_size / patch_size) is 4x4")
        check(try tokensFile("large.safetensors", images: images) { _, t in t[37] = 12 },
              "token 12 of image 2, patch 5 is outside 0..<12")
        check(try tokensFile("negative.safetensors", images: images) { _, t in t[0] = -1 }, "token -1 of image 0, patch 0 is outside 0..<12")
        check(try tokensFile("other.safetensors", images: other),
              "visual tokens were computed for another image set")
        // Eval tokens are checked against data.eval the same way.
        let good = try tokensFile("good.safetensors", images: images)
        let m = message { try config(images, tokens: good, eval: (other, good)) }
        XCTAssertTrue(m.contains("data.eval_visual_tokens") && m.contains("visual tokens were computed for another image set")
                      && m.contains("data.eval"), m)
    }

    func testConfigErrors() throws {
        let images = try imageDirectory()
        let tokens = try tokensFile("tokens.safetensors", images: images)
        func check(tokens path: String? = tokens, eval: (String, String)? = nil, _ overrides: [String], _ expected: String,
                   line: UInt = #line) {
            let m = message { try config(images, tokens: path, eval: eval, overrides) }
            XCTAssertTrue(m.contains(expected), "\(m) lacks \(expected)", line: line)
        }
        check(tokens: nil, [], "train.objective = masked_image_modeling needs data.visual_tokens")
        check(["data.eval=\(images)"], "data.eval_visual_tokens is required with data.eval")
        check(["data.eval_visual_tokens=\(tokens)"], "data.eval_visual_tokens is set but data.eval is not")
        check(["data.augment=true"], "data.augment must be false for masked_image_modeling: the visual tokens in data.visual_tokens were computed on the unaugmented images, so random crops and flips would desynchronise")
        check(["data.mixup=0.8"], "data.mixup and data.cutmix must be 0 for masked_image_modeling")
        check(["data.cutmix=1.0"], "data.mixup and data.cutmix must be 0 for masked_image_modeling")
        check(["data.mask_patch_size=8"], "data.mask_patch_size is SimMIM's")
        check(["train.label_smoothing=0.1"], "train.label_smoothing applies to classification")
        check(["model.vocab_size=8192"], "model.vocab_size = 8192 disagrees with data.visual_tokens (\(tokens))")
        check(["data.mask_ratio=0.7", "data.min_mask_patches=10"],
              "data.mask_ratio (0.7: 11 of 16 patches) and data.min_mask_patches (10): block masking would mask nothing")
        check(["train.objective=classification"], "data.visual_tokens is read by train.objective = masked_image_modeling only")
        XCTAssertEqual(message { try config(images, tokens: tokens, ["model.vocab_size=12", "data.mask_ratio=0.5"]) }, "no error")
        // ViT's SimMIM has no visual tokens.
        let vit = message {
            try TrainingConfig(yaml: """
                model: {preset: vit-mini-28}
                data: {train: \(images), visual_tokens: \(tokens)}
                train: {objective: masked_image_modeling, steps: 1, global_batch: 8, micro_batch: 8, lr: 1.0e-3}
                """, file: "vit.yaml")
        }
        XCTAssertTrue(vit.contains("data.visual_tokens is BEiT's masked image modeling"), vit)
    }
}
