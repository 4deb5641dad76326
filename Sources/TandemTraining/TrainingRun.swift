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
        let config = try TrainingConfig(file: configPath, overrides: overrides)
        let settings = try RunSettings(config, worldSize: comm.size)
        let tensorBoardDirectory = try tensorBoardDirectory(config)
        let task = try ModelFamilies.makeTask(config, settings: settings, initFrom: initFrom)
        if let initFrom, comm.rank == 0 {
            try task.loadPretrained(directory: initFrom) { log.warning("\($0)") }
            log.info("initialised from \(initFrom)")
        }
        try comm.verifyConsistency(configHash: config.hash, parameterCount: task.arena.parameterCount, version: version)
        comm.broadcastParameters(arena: task.arena)
        let trainer = try Trainer(settings: settings, task: task, communicator: comm)
        defer { trainer.close() }
        let checkpointRoot = config.checkpoint.dir
        if let resume {
            if let dir = try Resumer.resume(resume, root: checkpointRoot, trainer: trainer, log: { log.warning("\($0)") }) {
                log.info("resumed from \(dir) at step \(trainer.step)")
            }
        }
        if let dump = config.train.dumpBatches {
            try FileManager.default.createDirectory(atPath: dump, withIntermediateDirectories: true)
            trainer.batchDumpDirectory = dump
            if comm.rank == 0 {
                var w = SafeTensorsWriter()
                for (name, p) in task.everyCheckpointTensor { w.add(name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(p.values)) }
                try w.write(toPath: dump + "/initial.safetensors")
                try task.hfConfigJSON.write(toFile: dump + "/config.json", atomically: true, encoding: .utf8)
            }
        }
        let checkpointer = comm.rank == 0 ? checkpointRoot.map {
            Checkpointer(root: $0, keep: config.checkpoint.keep, keepEvery: config.checkpoint.keepEvery)
        } : nil
        let checkpointEvery = config.checkpoint.every
        let stopAt = config.train.stopAt
        let evalEvery = config.eval.every, evalBatches = config.eval.batches
        let watchdog = (comm as? MPICommunicator)?.startWatchdog(
            Watchdog.Configuration(minimumSeconds: config.distributed.watchdogSeconds))
        Preemption.install()

        let perCorePeak = measurePeak(settings.precision, communicator: comm)
        let cores = Double(comm.size * settings.threads)
        if comm.rank == 0 {
            log.info("\(task.modelDescription); \(comm.size) rank(s) x \(settings.threads) thread(s) on \(comm.nodeCount) node(s); \(settings.precision.rawValue) matrix products (OpenBLAS kernels \(BLAS.coreName)); global batch \(settings.globalBatch) = \(settings.microBatch) x \(settings.accumulation) x \(comm.size); \(task.sampleCount) samples\(trainer.shardingDescription.map { "; " + $0 } ?? "")\(trainer.betweenNodesDescription.map { "; " + $0 } ?? "")")
            log.info("\(String(format: "%@ peak %.1f GFLOP/s per core (MFU denominator)", settings.precision == .bf16 ? "bf16 GEMM" : "sgemm", perCorePeak / 1e9))")
        }
        // A resumed run starts a new event file whose steps begin after the checkpoint's.
        let tensorBoard = comm.rank == 0 ? try tensorBoardDirectory.map { try TensorBoardWriter(directory: $0, firstStep: trainer.step + 1) } : nil
        let metrics = try MetricsWriter(path: metricsPath(config, rank: comm.rank), append: trainer.step > 0, tensorBoard: tensorBoard)
        let progress = Progress(total: settings.steps, enabled: comm.rank == 0)
        var window = [StepResult]()
        window.reserveCapacity(settings.logEvery)
        let started = monotonicSeconds(), firstStep = trainer.step
        if config.train.timeLimit > 0 { trainer.stopDeadline = started + config.train.timeLimit }
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
                let why = !r.stopRequested ? "train.stop_at reached"
                    : Preemption.requested || config.train.timeLimit <= 0 ? "stop signal received"
                    : "train.time_limit of \(config.train.timeLimit) s reached (or a stop signal received)"
                if comm.rank == 0 { log.warning("\(why): stopped after step \(trainer.step) with a checkpoint") }
                break
            }
        }
        try checkpointer?.wait()
        progress.finish()
        comm.barrier()
    }

    static func metricsPath(_ config: TrainingConfig, rank: Int) -> String {
        let base = config.train.metrics ?? ((config.checkpoint.dir ?? "runs/default") + "/metrics.jsonl")
        return rank == 0 ? base : base.replacingOccurrences(of: ".jsonl", with: "") + ".rank\(rank).jsonl"
    }

    /// Where rank 0 writes TensorBoard event files (`train.tensorboard`): nil when off.
    static func tensorBoardDirectory(_ config: TrainingConfig) throws -> String? {
        let value = config.train.tensorboard ?? "true"
        switch value.lowercased() {
        case "true", "yes", "on": return (config.checkpoint.dir ?? "runs/default") + "/tensorboard"
        case "false", "no", "off": return nil
        case "": throw ConfigError("\(config.file): train.tensorboard is empty: expected true, false or a directory")
        default: return value
        }
    }

    /// Single-thread sgemm FLOP/s at a transformer shape, DESIGN.md's MFU denominator: the best of
    /// repeated products over about half a second on every rank at once, then the best over ranks, so a
    /// moment of load from other processes does not lower it (which would inflate MFU). Collective.
    public static func measureSgemmPeak(communicator comm: any Communicator) -> Double {
        measurePeak(.fp32, communicator: comm)
    }

    /// The single-thread peak of `precision`'s matrix products, measured as `measureSgemmPeak` measures
    /// sgemm's: for bf16, `bf16Gemm` from fp32 operands as the trainer calls it (rounding both inputs to
    /// bf16 on every call is part of the product's cost). The MFU denominator of a run in that precision.
    /// Collective.
    public static func measurePeak(_ precision: MatmulPrecision, communicator comm: any Communicator) -> Double {
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
            if precision == .bf16 {
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        c.withUnsafeMutableBufferPointer { c in
                            bf16Gemm(.none, .transpose, m: m, n: n, k: k, alpha: 1, a: a.baseAddress!, lda: k,
                                     b: b.baseAddress!, ldb: k, beta: 0, c: c.baseAddress!, ldc: n)
                        }
                    }
                }
            } else {
                BLAS.sgemm(.none, .transpose, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
            }
            best = min(best, monotonicSeconds() - t)
            runs += 1
        }
        return comm.allReduce(2.0 * Double(m * n * k) / best, op: .max)
    }
}
