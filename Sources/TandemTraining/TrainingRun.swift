import Foundation
import Logging
import TandemCollectives
import TandemKernels
import TandemModels

/// `tandem train`: validates the config on every rank before any collective, builds the task, and runs
/// the training loop with progress on rank 0 and JSONL metrics on every rank.
public enum TrainingRun {
    /// The version every rank checks against rank 0's.
    public static let version = "0.1.0"

    public static func run(configPath: String, overrides: [String], communicator comm: any Communicator) throws {
        var log = Logger(label: "tandem")
        log.logLevel = comm.rank == 0 ? .info : .warning
        let config = try Config(file: configPath, overrides: overrides)
        let settings = try RunSettings(config, worldSize: comm.size)
        let task = try makeTask(config, settings: settings)
        try comm.verifyConsistency(configHash: config.hash, parameterCount: task.arena.parameterCount, version: version)
        comm.broadcastParameters(arena: task.arena)
        let trainer = try Trainer(settings: settings, task: task, communicator: comm)
        defer { trainer.close() }
        let watchdog = (comm as? MPICommunicator)?.startWatchdog(
            Watchdog.Configuration(minimumSeconds: config.double("distributed.watchdog_s")))

        let peak = comm.rank == 0 ? measureSgemmPeak() : 0
        let perCorePeak = comm.broadcast(peak, root: 0)
        let cores = Double(comm.size * settings.threads)
        if comm.rank == 0 {
            log.info("\(task.modelDescription); \(comm.size) rank(s) x \(settings.threads) thread(s); global batch \(settings.globalBatch) = \(settings.microBatch) x \(settings.accumulation) x \(comm.size); \(task.sampleCount) samples")
            log.info("\(String(format: "sgemm peak %.1f GFLOP/s per core (MFU denominator)", perCorePeak / 1e9))")
        }
        let metrics = try MetricsWriter(path: metricsPath(config, rank: comm.rank))
        let progress = Progress(total: settings.steps, enabled: comm.rank == 0)
        var window = [StepResult]()
        window.reserveCapacity(settings.logEvery)
        let started = monotonicSeconds()
        while trainer.step < settings.steps {
            let r = trainer.trainStep()
            watchdog?.recordStep(seconds: r.times.total)
            window.append(r)
            guard r.loss.isFinite else {
                throw ConfigError("step \(r.step + 1): the loss is \(r.loss); lower train.lr or check the data")
            }
            if settings.checkEvery > 0 && trainer.step % settings.checkEvery == 0 {
                try comm.checkReplicasAgree(arena: task.arena, step: trainer.step)
            }
            if trainer.step % settings.logEvery == 0 || trainer.step == settings.steps {
                let seconds = window.reduce(0) { $0 + $1.times.total }
                let samples = Double(window.count * settings.globalBatch)
                let rate = samples / max(seconds, 1e-9)
                let mfu = rate * task.trainingFLOPsPerSample / (cores * perCorePeak)
                try metrics.write(window, rank: comm.rank, samplesPerSecond: rate,
                                  tokensPerSecond: rate * Double(task.tokensPerSample), mfu: mfu)
                progress.report(step: trainer.step, loss: window.map(\.loss).reduce(0, +) / Double(window.count),
                                lr: r.learningRate, gradNorm: r.gradientNorm, samplesPerSecond: rate,
                                tokensPerSecond: rate * Double(task.tokensPerSample), mfu: mfu,
                                elapsed: monotonicSeconds() - started)
                window.removeAll(keepingCapacity: true)
            }
        }
        progress.finish()
        comm.barrier()
    }

    static func makeTask(_ config: Config, settings: RunSettings) throws -> TrainingTask {
        let preset = config.string("model.preset")!
        switch try ModelPresets.family(of: preset, file: config.file) {
        case .gpt:
            let gpt = try ModelPresets.gptConfig(preset, overrides: config.modelFields, file: config.file)
            let source = try ByteTokens(path: config.string("data.train")!)
            return try CausalLanguageModelTask(config: gpt, source: source, sequenceLength: settings.sequenceLength,
                                               seed: settings.seed)
        }
    }

    static func metricsPath(_ config: Config, rank: Int) -> String {
        let base = config.string("train.metrics") ?? ((config.string("checkpoint.dir") ?? "runs/default") + "/metrics.jsonl")
        return rank == 0 ? base : base.replacingOccurrences(of: ".jsonl", with: "") + ".rank\(rank).jsonl"
    }

    /// Best-of-five single-thread sgemm at a transformer shape, in FLOP/s: DESIGN.md's MFU denominator.
    public static func measureSgemmPeak() -> Double {
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        let m = 512, n = 768, k = 768
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        for _ in 0..<5 {
            let t = monotonicSeconds()
            BLAS.sgemm(.none, .transpose, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
            best = min(best, monotonicSeconds() - t)
        }
        return 2.0 * Double(m * n * k) / best
    }
}
