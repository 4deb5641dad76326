import Foundation
import TandemCollectives
import TandemKernels
import TandemTraining

/// `tandem bench kernels|allreduce|step` (`tandem bench images` is `ImageBenchmark`).
public enum Benchmarks {
    /// Matrix products next to raw `cblas_sgemm` (and the bf16 GEMM where the CPU has AVX512_BF16) and
    /// memory-bound kernels next to memcpy.
    public static func kernels(repeats: Int, sections: Set<KernelBenchmark.Section> = Set(KernelBenchmark.Section.allCases),
                               log: (String) -> Void) {
        KernelBenchmark.run(repeats: repeats, sections: sections, log: log)
    }

    /// Builds the training job of a config (no checkpoints, no evaluation), runs `warmup` steps, then
    /// `steps` timed ones, and prints the median step of the slowest rank as samples/s, tokens/s and MFU,
    /// the median time breakdown, and the peak resident memory of the largest rank. Collective.
    /// With `profile`, rank 0's tape times every op of the timed steps and a table by operation follows
    /// (`Tape.opProfile`).
    public static func step(configPath: String, overrides: [String], warmup: Int, steps: Int, profile: Bool = false,
                            communicator comm: any Communicator, log: (String) -> Void) throws {
        let config = try TrainingConfig(file: configPath, overrides: overrides)
        let settings = try RunSettings(config, worldSize: comm.size)
        let task = try ModelFamilies.makeTask(config, settings: settings, initFrom: nil)
        try comm.verifyConsistency(configHash: config.hash, parameterCount: task.arena.parameterCount,
                                   version: TrainingRun.version)
        comm.broadcastParameters(arena: task.arena)
        let trainer = try Trainer(settings: settings, task: task, communicator: comm)
        defer { trainer.close() }
        // MFU is over the measured peak of the run's own products: bf16 steps against the bf16 GEMM's
        // peak (about 2x sgemm's), so that a bf16 MFU says how close the step is to what bf16 can do.
        let bf16 = settings.precision == .bf16
        let peak = TrainingRun.measurePeak(settings.precision, communicator: comm)
        let sgemmPeak = bf16 ? TrainingRun.measureSgemmPeak(communicator: comm) : peak
        for _ in 0..<warmup { trainer.trainStep() }
        trainer.tape.profiling = profile && comm.rank == 0
        trainer.tape.resetProfile()
        GemmProfile.enabled = profile && comm.rank == 0
        GemmProfile.reset()
        var results: [StepResult] = []
        let slowest = UnsafeMutableBufferPointer<Double>.allocate(capacity: 7)
        defer { slowest.deallocate() }
        for _ in 0..<steps {
            var r = trainer.trainStep()
            let t = r.times
            for (i, v) in [t.total, t.data, t.forward, t.backward, t.gradientWait, t.optimizer, 0].enumerated() { slowest[i] = v }
            comm.allReduce(slowest, op: .max)
            r.times = StepTimes(data: slowest[1], forward: slowest[2], backward: slowest[3], gradientWait: slowest[4],
                                optimizer: slowest[5], checkpoint: 0)
            results.append(r)
        }
        GemmProfile.enabled = false
        let rss = comm.allReduce(peakResidentBytes(), op: .max)
        guard comm.rank == 0 else { return }
        func median(_ f: (StepTimes) -> Double) -> Double {
            let v = results.map { f($0.times) }.sorted()
            return v[v.count / 2]
        }
        let stepTime = median(\.total)
        let rate = Double(settings.globalBatch) / stepTime
        let cores = Double(comm.size * settings.threads)
        let mfu = rate * task.trainingFLOPsPerSample / (cores * peak)
        log("\(task.modelDescription)")
        log("precision \(settings.precision.rawValue) (matrix products; MFU is over the measured peak of \(bf16 ? "the bf16 GEMM" : "sgemm")); OpenBLAS kernels \(BLAS.coreName)")
        log(trainer.shardingDescription.map { $0 + " (distributed.shard_optimizer)" } ?? "optimizer replicated on every rank")
        log("\(comm.size) rank(s) x \(settings.threads) thread(s), global batch \(settings.globalBatch) (micro \(settings.microBatch) x \(settings.accumulation) accumulation), \(task.tokensPerSample) tokens per sample; median of \(steps) steps after \(warmup) warm-up")
        log(String(format: "%.2f samples/s", rate))
        log(String(format: "%.0f tokens/s", rate * Double(task.tokensPerSample)))
        log(String(format: "MFU %.3f (%.1f GFLOP/s model FLOPs over %d core(s) x %.1f GFLOP/s measured %@)",
                   mfu, rate * task.trainingFLOPsPerSample / 1e9, Int(cores), peak / 1e9, bf16 ? "bf16 GEMM" : "sgemm"))
        if bf16 {
            log(String(format: "MFU over the fp32 sgemm peak %.3f (%d core(s) x %.1f GFLOP/s measured sgemm)",
                       rate * task.trainingFLOPsPerSample / (cores * sgemmPeak), Int(cores), sgemmPeak / 1e9))
        }
        log(String(format: "step %.1f ms: data %.1f, forward %.1f, backward %.1f, gradient wait %.1f, optimizer %.1f",
                   stepTime * 1e3, median(\.data) * 1e3, median(\.forward) * 1e3, median(\.backward) * 1e3,
                   median(\.gradientWait) * 1e3, median(\.optimizer) * 1e3))
        log(String(format: "peak resident memory %.1f MB (largest rank); rank 0: parameters %.1f MB (values and gradients), activations %.1f MB, ops' workspace %.1f MB, activation gradients %.1f MB (%.1f MB unshared)",
                   Double(rss) / 1e6, Double(task.arena.parameterCount * 8) / 1e6, Double(trainer.tape.values.bytesInUse) / 1e6,
                   Double(trainer.tape.workspaceBytes) / 1e6,
                   Double(trainer.tape.gradientBytes) / 1e6, Double(trainer.tape.unsharedGradientBytes) / 1e6))
        if profile {
            logOpProfile(trainer.tape.opProfile(), stepSeconds: stepTime, microBatches: settings.accumulation, log: log)
            logProductProfile(GemmProfile.byKernel(), steps: steps, stepSeconds: stepTime, peak: peak * Double(settings.threads),
                              modelFLOPs: Double(settings.globalBatch) * task.trainingFLOPsPerSample / Double(comm.size), log: log)
        }
    }

    /// The products' lines of `bench step --profile`: per kernel, rank 0's calls, GFLOP and milliseconds
    /// per step, their rate as a fraction of the MFU peak (`peak`, over the rank's threads) and their share
    /// of the step; then the MFU the step would have if it were its products alone (`modelFLOPs` per rank
    /// and step over the products' time), the ceiling that the rest of the step can only lower.
    static func logProductProfile(_ rows: [(kernel: GemmProfile.Kernel, totals: GemmProfile.Totals)], steps: Int,
                                  stepSeconds: Double, peak: Double, modelFLOPs: Double, log: (String) -> Void) {
        let all = rows.reduce(GemmProfile.Totals()) { $0 + $1.totals }
        guard all.calls > 0, steps > 0 else { return }
        let per = 1 / Double(steps)
        log("rank 0's matrix products per step (gemm and panelGemm calls, timed around each):")
        log("kernel                 calls     GFLOP        ms   GFLOP/s  of peak    share")
        func line(_ name: String, _ t: GemmProfile.Totals) {
            let rate = t.seconds > 0 ? t.flops / t.seconds : 0
            log(String(format: "%@ %7.0f %9.2f %9.2f %9.1f %8.3f   %5.1f%%", name.padding(toLength: 20, withPad: " ", startingAt: 0),
                       Double(t.calls) * per, t.flops * per / 1e9, t.seconds * per * 1e3, rate / 1e9, rate / peak,
                       100 * t.seconds * per / stepSeconds))
        }
        for (kernel, totals) in rows where totals.calls > 0 { line(kernel.name, totals) }
        line("all products", all)
        log(String(format: "MFU if the step were its products alone: %.3f (model FLOPs %.1f GFLOP per rank and step over the products' %.1f ms)",
                   modelFLOPs / (all.seconds * per) / peak, modelFLOPs / 1e9, all.seconds * per * 1e3))
    }

    /// The table of `bench step --profile`: per op name, its ops, forward and backward milliseconds per
    /// step and their share of the (median) step; the rest of the step (optimizer, gradient wait, data)
    /// is the last line.
    static func logOpProfile(_ rows: [(name: String, ops: Int, forward: Double, backward: Double)], stepSeconds: Double,
                             microBatches: Int, log: (String) -> Void) {
        guard !rows.isEmpty else { log("no op profile (the tape was re-recorded during the timed steps)"); return }
        let m = Double(microBatches)
        log("rank 0's step by operation (\(microBatches) micro-batch(es) per step; forward and backward closures of the tape, ms per step):")
        log("op                               ops   forward  backward    share")
        var total = 0.0
        for r in rows {
            let f = r.forward * m, b = r.backward * m
            total += f + b
            log(String(format: "%@ %5d %9.2f %9.2f   %5.1f%%", r.name.padding(toLength: 30, withPad: " ", startingAt: 0), r.ops,
                       f * 1e3, b * 1e3, 100 * (f + b) / stepSeconds))
        }
        log(String(format: "%@       %19.2f   %5.1f%%", "rest of the step".padding(toLength: 30, withPad: " ", startingAt: 0),
                   (stepSeconds - total) * 1e3, 100 * (stepSeconds - total) / stepSeconds))
    }

    /// The all-reduce sweep (hierarchical next to plain MPI_Allreduce) and the gradient-wait fraction of
    /// a BERT-base-sized backward pass over `tokens` tokens per rank. Collective.
    public static func allReduce(sizesMB: [Int], tokens: Int, communicator comm: any Communicator,
                                 log: @escaping (String) -> Void) {
        AllReduceBenchmark.run(communicator: comm, sizesMB: sizesMB, log: log)
        AllReduceBenchmark.runOverlap(communicator: comm, tokens: tokens, log: log)
    }
}
