import Foundation
import Logging
import TandemCheckpoint
import TandemCollectives
import TandemKernels
import TandemData
import TandemModels

/// `tandem train`: validates the config on every rank before any collective, builds the task, and runs
/// the training loop with progress on rank 0 and JSONL metrics on every rank.
public enum TrainingRun {
    /// The version every rank checks against rank 0's.
    public static let version = "0.1.0"

    /// `resume`: nil (fresh start), `auto` (the newest valid checkpoint in checkpoint.dir, or a fresh
    /// start when there is none) or a checkpoint directory that must verify.
    /// `initFrom`: a transformers directory whose config.json gives the architecture and whose weights
    /// start the run (continued pretraining or fine-tuning); ignored when a checkpoint is resumed.
    public static func run(configPath: String, overrides: [String], resume: String? = nil, initFrom: String? = nil,
                           communicator comm: any Communicator) throws {
        var log = Logger(label: "tandem")
        log.logLevel = comm.rank == 0 ? .info : .warning
        let config = try Config(file: configPath, overrides: overrides)
        let settings = try RunSettings(config, worldSize: comm.size)
        let task = try makeTask(config, settings: settings, initFrom: initFrom)
        if let initFrom, comm.rank == 0 {
            if let bert = task as? BertPretrainingTask {
                try PretrainedBERT.loadWeights(into: bert.model, directory: initFrom) { log.warning("\($0)") }
            } else if let vision = task as? VisionTask {
                try vision.loadPretrained(directory: initFrom) { log.warning("\($0)") }
            } else {
                throw ConfigError("--init-from \(initFrom): only BERT and ViT models can start from a transformers checkpoint")
            }
            log.info("initialised from \(initFrom)")
        }
        try comm.verifyConsistency(configHash: config.hash, parameterCount: task.arena.parameterCount, version: version)
        comm.broadcastParameters(arena: task.arena)
        let trainer = try Trainer(settings: settings, task: task, communicator: comm)
        defer { trainer.close() }
        let checkpointRoot = config.string("checkpoint.dir")
        if let resume {
            if let dir = try Resumer.resume(resume, root: checkpointRoot, trainer: trainer, log: { log.warning("\($0)") }) {
                log.info("resumed from \(dir) at step \(trainer.step)")
            }
        }
        if let dump = config.string("train.dump_batches") {
            try FileManager.default.createDirectory(atPath: dump, withIntermediateDirectories: true)
            trainer.batchDumpDirectory = dump
            if comm.rank == 0 {
                var w = SafeTensorsWriter()
                for (name, p) in task.checkpointTensors { w.add(name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(p.values)) }
                try w.write(toPath: dump + "/initial.safetensors")
                try task.hfConfigJSON.write(toFile: dump + "/config.json", atomically: true, encoding: .utf8)
            }
        }
        let checkpointer = comm.rank == 0 ? checkpointRoot.map {
            Checkpointer(root: $0, keep: config.int("checkpoint.keep"), keepEvery: config.int("checkpoint.keep_every"))
        } : nil
        let checkpointEvery = config.int("checkpoint.every")
        let stopAt = config.int("train.stop_at")
        let evalEvery = config.int("eval.every"), evalBatches = config.int("eval.batches")
        let watchdog = (comm as? MPICommunicator)?.startWatchdog(
            Watchdog.Configuration(minimumSeconds: config.double("distributed.watchdog_s")))
        Preemption.install()

        let perCorePeak = measureSgemmPeak(communicator: comm)
        let cores = Double(comm.size * settings.threads)
        if comm.rank == 0 {
            log.info("\(task.modelDescription); \(comm.size) rank(s) x \(settings.threads) thread(s); \(settings.precision.rawValue) matrix products (OpenBLAS kernels \(BLAS.coreName)); global batch \(settings.globalBatch) = \(settings.microBatch) x \(settings.accumulation) x \(comm.size); \(task.sampleCount) samples\(trainer.optimizerIsSharded ? "; optimizer sharded over \(comm.size) ranks" : "")")
            log.info("\(String(format: "sgemm peak %.1f GFLOP/s per core (MFU denominator)", perCorePeak / 1e9))")
        }
        let metrics = try MetricsWriter(path: metricsPath(config, rank: comm.rank), append: trainer.step > 0)
        let progress = Progress(total: settings.steps, enabled: comm.rank == 0)
        var window = [StepResult]()
        window.reserveCapacity(settings.logEvery)
        let started = monotonicSeconds(), firstStep = trainer.step
        while trainer.step < settings.steps {
            var r = trainer.trainStep()
            guard r.loss.isFinite else {
                throw ConfigError("step \(r.step + 1): the loss is \(r.loss); lower train.lr or check the data")
            }
            if settings.checkEvery > 0 && trainer.step % settings.checkEvery == 0 {
                try comm.checkReplicasAgree(arena: task.arena, step: trainer.step)
            }
            let last = trainer.step == settings.steps || r.stopRequested || trainer.step == stopAt
            if checkpointRoot != nil && (last || (checkpointEvery > 0 && trainer.step % checkpointEvery == 0)) {
                let started = monotonicSeconds()
                trainer.gatherOptimizerState()  // every rank: a sharded optimizer's moments reach rank 0
                if let checkpointer {
                    try checkpointer.save(trainer: trainer, config: config)  // snapshots before it returns
                    trainer.releaseUnownedOptimizerState()
                    r.times.checkpoint = monotonicSeconds() - started
                }
            }
            watchdog?.recordStep(seconds: r.times.total)
            window.append(r)
            if trainer.step % settings.logEvery == 0 || last {
                let seconds = window.reduce(0) { $0 + $1.times.total }
                let rate = Double(window.count * settings.globalBatch) / max(seconds, 1e-9)
                let mfu = rate * task.trainingFLOPsPerSample / (cores * perCorePeak)
                try metrics.write(window, rank: comm.rank, samplesPerSecond: rate,
                                  tokensPerSecond: rate * Double(task.tokensPerSample), mfu: mfu)
                progress.report(step: trainer.step, loss: window.map(\.loss).reduce(0, +) / Double(window.count),
                                lr: r.learningRate, gradNorm: r.gradientNorm, samplesPerSecond: rate,
                                tokensPerSecond: rate * Double(task.tokensPerSample), mfu: mfu,
                                elapsed: monotonicSeconds() - started, stepsDone: trainer.step - firstStep)
                window.removeAll(keepingCapacity: true)
            }
            if evalEvery > 0 && (trainer.step % evalEvery == 0 || last), let results = trainer.evaluate(batches: evalBatches) {
                try metrics.writeEval(results, step: trainer.step, rank: comm.rank)
                progress.reportEval(step: trainer.step, results)
            }
            if r.stopRequested || trainer.step == stopAt {
                log.warning("\(r.stopRequested ? "stop signal received" : "train.stop_at reached"): stopped after step \(trainer.step) with a checkpoint")
                break
            }
        }
        try checkpointer?.wait()
        progress.finish()
        comm.barrier()
    }

    static func makeTask(_ config: Config, settings: RunSettings, initFrom: String? = nil) throws -> TrainingTask {
        guard let preset = config.string("model.preset") ?? (initFrom == nil ? nil : "") else {
            throw ConfigError("\(config.file): model.preset is required (or start from a transformers checkpoint with --init-from)")
        }
        let family = try initFrom.map { PretrainedViT.isViT(directory: $0) ? .vit : .bert }
            ?? ModelPresets.family(of: preset, file: config.file)
        if family != .vit {
            for key in ["train.objective", "train.teacher"] where config.isSet(key) {
                throw ConfigError("\(config.file): \(key) applies to ViT models only (model.preset = \(preset))")
            }
        }
        switch family {
        case .vit:
            return try makeVisionTask(config, settings: settings, preset: initFrom == nil ? preset : nil, initFrom: initFrom)
        case .gpt:
            let gpt = try ModelPresets.gptConfig(preset, overrides: config.modelFields, file: config.file)
            let source = try ByteTokens(path: config.string("data.train")!)
            return try CausalLanguageModelTask(config: gpt, source: source, sequenceLength: settings.sequenceLength,
                                               seed: settings.seed)
        case .bert:
            guard let vocabPath = config.string("data.vocab") else {
                throw ConfigError("\(config.file): data.vocab is required for BERT (the vocab.txt the shards were made with)")
            }
            let tokenizer: WordPieceTokenizer
            do { tokenizer = try WordPieceTokenizer(path: vocabPath, cased: config.bool("data.cased")) } catch {
                throw ConfigError("data.vocab: \(error)")
            }
            let vocabSize = config.modelFields["vocab_size"] == nil ? tokenizer.vocabSize : nil
            let bert = try initFrom.map { try ModelPresets.bertConfig(initFrom: $0, overrides: config.modelFields, file: config.file) }
                ?? ModelPresets.bertConfig(preset, overrides: config.modelFields, vocabSize: vocabSize, file: config.file)
            let train = try ShardDataset(directory: config.string("data.train")!, tokenizer: tokenizer)
            let eval = try config.string("data.eval").map { try ShardDataset(directory: $0, tokenizer: tokenizer) }
            var options = PretrainingOptions()
            options.maxSequence = settings.sequenceLength
            options.maxPredictions = config.isSet("data.max_predictions") ? config.int("data.max_predictions")
                : Int((Double(settings.sequenceLength) * config.double("data.mask_prob")).rounded(.up))
            options.maskProbability = config.double("data.mask_prob")
            options.shortSequenceProbability = config.double("data.short_seq_prob")
            options.wholeWordMasking = config.bool("data.whole_word_masking")
            return try BertPretrainingTask(config: bert, tokenizer: tokenizer, train: train, eval: eval,
                                           options: options, seed: settings.seed)
        }
    }

    static func makeVisionTask(_ config: Config, settings: RunSettings, preset: String?, initFrom: String?) throws -> VisionTask {
        func dataset(_ key: String) throws -> ImageDataset? {
            guard let path = config.string(key) else { return nil }
            do { return try ImageDataset(directory: path) } catch { throw ConfigError("\(key): \(error)") }
        }
        let train = try dataset("data.train")!
        let eval = try dataset("data.eval")
        let objective = config.string("train.objective") ?? "classification"
        let head: ViTHead = objective == "masked_image_modeling" ? .maskedImageModeling
            : objective == "distillation" ? .distillation : .imageClassification
        var teacher: PretrainedViT? = nil
        if head == .distillation {
            guard let path = config.string("train.teacher") else {
                throw ConfigError("\(config.file): train.objective = distillation needs train.teacher (a ViT classifier checkpoint directory)")
            }
            do { teacher = try PretrainedViT.load(directory: path) { _ in } } catch { throw ConfigError("train.teacher: \(error)") }
        } else if config.isSet("train.teacher") {
            throw ConfigError("\(config.file): train.teacher is only used with train.objective = distillation")
        }
        let vit = try ModelPresets.vitConfig(preset, initFrom: initFrom, overrides: config.modelFields, head: head,
                                             channels: train.channels, classes: train.classNames, file: config.file)
        var options = VisionOptions()
        options.augment = config.bool("data.augment")
        options.cropScale = Float(config.double("data.crop_scale"))
        options.horizontalFlip = config.bool("data.hflip")
        options.mixing = MixingOptions(mixupAlpha: Float(config.double("data.mixup")), cutmixAlpha: Float(config.double("data.cutmix")),
                                       switchProbability: Float(config.double("data.mix_switch_prob")),
                                       labelSmoothing: Float(config.double("train.label_smoothing")))
        options.maskRatio = Float(config.double("data.mask_ratio"))
        options.maskPatchSize = config.isSet("data.mask_patch_size") ? config.int("data.mask_patch_size") : nil
        do {
            return try VisionTask(config: vit, train: train, eval: eval, options: options, teacher: teacher, seed: settings.seed)
        } catch let e as DataError {
            throw ConfigError("\(config.file): \(e)")
        }
    }

    static func metricsPath(_ config: Config, rank: Int) -> String {
        let base = config.string("train.metrics") ?? ((config.string("checkpoint.dir") ?? "runs/default") + "/metrics.jsonl")
        return rank == 0 ? base : base.replacingOccurrences(of: ".jsonl", with: "") + ".rank\(rank).jsonl"
    }

    /// Single-thread sgemm FLOP/s at a transformer shape, DESIGN.md's MFU denominator: the best of
    /// repeated products over about half a second on every rank at once, then the best over ranks, so a
    /// moment of load from other processes does not lower it (which would inflate MFU). Collective.
    public static func measureSgemmPeak(communicator comm: any Communicator) -> Double {
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        let m = 512, n = 768, k = 768
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        let start = monotonicSeconds()
        var runs = 0
        while runs < 5 || monotonicSeconds() - start < 0.5 {
            let t = monotonicSeconds()
            BLAS.sgemm(.none, .transpose, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
            best = min(best, monotonicSeconds() - t)
            runs += 1
        }
        return comm.allReduce(2.0 * Double(m * n * k) / best, op: .max)
    }
}
