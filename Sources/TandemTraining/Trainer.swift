import Foundation
import Logging
import TandemAutograd
import TandemCollectives
import TandemData
import TandemKernels

/// The settings of a run, read from a validated `Config` and checked against the rank count.
public struct RunSettings {
    public let steps: Int
    public let globalBatch: Int
    public let microBatch: Int
    /// Micro-batches each rank runs per step before reducing.
    public let accumulation: Int
    public let sequenceLength: Int
    public let seed: UInt64
    public let schedule: LRSchedule
    public let optimizer: Optimizer.Kind
    public let optimizerSettings: OptimizerSettings
    public let clipGradNorm: Float
    public let logEvery: Int
    public let threads: Int
    /// The arithmetic of the matrix products (`train.precision`); everything else is fp32 either way.
    public let precision: MatmulPrecision
    public let bucketBytes: Int
    public let reduceMode: ReduceMode
    public let deterministic: Bool
    public let checkEvery: Int
    /// `distributed.shard_optimizer`: each rank of a node updates only its share of the parameters
    /// (AdamW, hierarchical reduction, every node with as many ranks; otherwise every rank updates all).
    public let shardOptimizer: Bool
    /// `distributed.compress` and `distributed.error_feedback`: the inter-node step of the hierarchical
    /// reduction.
    public let compression: GradientCompression
    public let errorFeedback: Bool
    /// `distributed.overlap`: where the sums between nodes run.
    public let overlap: CrossNodeOverlap

    public init(_ c: TrainingConfig, worldSize: Int) throws {
        func required<T>(_ value: T?, _ key: String) throws -> T {
            guard let value else { throw ConfigError("\(c.file): \(key) is required") }
            return value
        }
        _ = try required(c.data.train, "data.train")
        steps = try required(c.train.steps, "train.steps")
        globalBatch = try required(c.train.globalBatch, "train.global_batch")
        microBatch = try required(c.train.microBatch, "train.micro_batch")
        let lr = try required(c.train.lr, "train.lr")
        let perRank = microBatch * worldSize
        guard globalBatch % perRank == 0 else {
            throw ConfigError("\(c.file): train.global_batch = \(globalBatch) is not micro_batch (\(microBatch)) x accumulation x ranks (\(worldSize)): it must be a multiple of \(perRank)")
        }
        accumulation = globalBatch / perRank
        sequenceLength = c.data.seqLen
        seed = UInt64(c.train.seed)
        schedule = LRSchedule(peak: Float(lr), warmup: c.train.warmup, total: steps, decay: c.train.schedule)
        optimizer = c.train.optimizer
        var o = OptimizerSettings()
        o.beta1 = Float(c.train.beta1); o.beta2 = Float(c.train.beta2)
        o.eps = Float(c.train.eps); o.weightDecay = Float(c.train.weightDecay)
        optimizerSettings = o
        clipGradNorm = Float(c.train.clipGradNorm)
        logEvery = c.train.logEvery
        threads = c.train.threads
        precision = c.train.precision
        if precision == .bf16 && !MatmulPrecision.bf16Supported {
            throw ConfigError("\(c.file): train.precision = bf16 needs a CPU with AVX512_BF16 (and AVX-512 F/BW/VL), which this one lacks: use train.precision = fp32")
        }
        bucketBytes = Int(c.distributed.bucketMB * 1_000_000)
        reduceMode = c.distributed.reduce
        deterministic = c.distributed.deterministic
        checkEvery = c.distributed.checkEvery
        shardOptimizer = c.distributed.shardOptimizer
        compression = c.distributed.compress
        errorFeedback = c.distributed.errorFeedback
        overlap = c.distributed.overlap
        if compression != .none && (deterministic || reduceMode != .hierarchical) {
            throw ConfigError("\(c.file): distributed.compress = \(compression.rawValue) compresses the hierarchical reduction's step between nodes: it needs distributed.reduce = hierarchical and distributed.deterministic = false")
        }
        if errorFeedback && compression == .none {
            throw ConfigError("\(c.file): distributed.error_feedback needs distributed.compress = bf16")
        }
    }
}

/// Seconds spent in each phase of a step, for the metrics file and stragglers.
public struct StepTimes: Sendable {
    public var data = 0.0, forward = 0.0, backward = 0.0, gradientWait = 0.0, optimizer = 0.0, checkpoint = 0.0
    public init(data: Double = 0, forward: Double = 0, backward: Double = 0, gradientWait: Double = 0,
                optimizer: Double = 0, checkpoint: Double = 0) {
        self.data = data; self.forward = forward; self.backward = backward
        self.gradientWait = gradientWait; self.optimizer = optimizer; self.checkpoint = checkpoint
    }
    public var total: Double { data + forward + backward + gradientWait + optimizer + checkpoint }
}

/// What one optimizer step produced.
public struct StepResult: Sendable {
    public var step = 0
    /// Mean training loss over the global batch.
    public var loss = 0.0
    public var learningRate: Float = 0
    /// Global gradient norm before clipping (after the all-reduce).
    public var gradientNorm: Float = 0
    /// True when some rank received SIGTERM or SIGUSR1 before this step's reduction, or passed
    /// `stopDeadline`: every rank sees the same value (it travels with the loss all-reduce), so all stop
    /// after the same step.
    public var stopRequested = false
    public var times = StepTimes()
}

/// Runs data-parallel training: every rank holds a replica, runs its part of each global batch, reduces
/// gradients through `GradientBuckets`, and applies the same optimizer update.
public final class Trainer {
    public let settings: RunSettings
    public let communicator: any Communicator
    public let task: TrainingTask
    public let tape: Tape
    public let optimizer: Optimizer
    public let sampler: Sampler
    /// The loss of the graph on the tape (re-recorded with the tape for tasks whose graph depends on
    /// the batch, `TrainingTask.graphShape`).
    public private(set) var loss: Tensor
    /// The shape the tape's graph was recorded for, when the task's graph depends on the batch.
    private var recordedShape: [Int]?
    /// The next optimizer step to run (0-based); a resumed run starts past 0.
    public var step = 0
    /// Where every micro-batch is written as an HF batch file (`train.dump_batches`); nil in training.
    public var batchDumpDirectory: String?
    /// Monotonic time (`monotonicSeconds()`) after which the step in progress is the last
    /// (`train.time_limit`); infinity for none.
    public var stopDeadline = Double.infinity
    /// Overlapped, averaged reduction (the default mode); nil in deterministic mode.
    private let buckets: GradientBuckets?
    /// The node's gradient (and, sharded, parameter) arenas mapped into each other for the hierarchical
    /// reduction and the sharded optimizer; nil when not shared.
    private let nodeArenas: NodeSharedArenas?
    /// This rank's share of a node-sharded optimizer (`RunSettings.shardOptimizer`, granted on one node
    /// of several ranks whose arenas are shared); nil when every rank updates every parameter.
    private let nodeShard: NodeOptimizerShard?
    /// Fixed-order reduction over global micro-batch index (`distributed.deterministic`); nil otherwise.
    private let deterministic: DeterministicReducer?
    /// `nodeShard`'s elements and publication, as the optimizer takes them.
    private let shard: Optimizer.Shard?
    private let indices: UnsafeMutableBufferPointer<Int>
    private let lossBuffer: UnsafeMutableBufferPointer<Double>

    /// `TANDEM_CHECK_GRADIENT_PLAN=1`: the tape fills its shared activation-gradient memory with NaN before
    /// every backward pass (`Tape.poisonsGradientMemory`), so a run whose gradients read memory outside their
    /// planned lives ends in NaN; a correct plan gives the same bits as without it (scripts/refactor/same-bits).
    static let poisonsGradientMemory = ProcessInfo.processInfo.environment["TANDEM_CHECK_GRADIENT_PLAN"] == "1"

    public init(settings: RunSettings, task: TrainingTask, communicator: any Communicator) throws {
        self.settings = settings
        self.task = task
        self.communicator = communicator
        BLAS.threads = settings.threads
        guard task.sampleCount >= settings.globalBatch else {
            throw ConfigError("data.train: \(task.sampleCount) samples are fewer than one global batch of \(settings.globalBatch)")
        }
        let tape = Tape(rng: Philox(seed: settings.seed ^ 0x5eed_d80f))
        tape.precision = settings.precision
        tape.poisonsGradientMemory = Trainer.poisonsGradientMemory
        self.tape = tape
        loss = tape.recordGraph { task.record(on: tape, microBatch: settings.microBatch) }
        optimizer = Optimizer(settings.optimizer, settings: settings.optimizerSettings, arena: task.arena)
        sampler = Sampler(count: task.sampleCount, globalBatch: settings.globalBatch, seed: settings.seed, lastBatch: .drop,
                          order: task.sampleOrder)
        var arenas: NodeSharedArenas? = nil, nodeShard: NodeOptimizerShard? = nil
        if settings.deterministic {
            buckets = nil
            deterministic = DeterministicReducer(communicator: communicator, count: task.arena.grads.count,
                                                 microBatches: settings.globalBatch / settings.microBatch)
        } else {
            let hierarchical = settings.reduceMode == .hierarchical
            let sharding = hierarchical && settings.shardOptimizer && settings.optimizer == .adamw
            arenas = hierarchical ? NodeSharedArenas.make(arena: task.arena, communicator: communicator,
                                                          values: sharding) : nil
            if sharding {
                nodeShard = NodeOptimizerShard(layout: BucketLayout(arena: task.arena, bucketBytes: settings.bucketBytes),
                                               arenas: arenas)
            }
            let b = GradientBuckets(arena: task.arena, communicator: communicator, bucketBytes: settings.bucketBytes,
                                    mode: settings.reduceMode, arenas: arenas, shard: nodeShard,
                                    compression: settings.compression, errorFeedback: settings.errorFeedback,
                                    overlap: settings.overlap)
            buckets = b
            deterministic = nil
            tape.onGradientFinal = { p in b.markReady(p) }
        }
        nodeArenas = arenas
        self.nodeShard = nodeShard
        shard = nodeShard.map { s in Optimizer.Shard(ranges: s.ranges, publish: { [unowned s] in s.publish($0) }) }
        indices = .allocate(capacity: settings.microBatch)
        lossBuffer = .allocate(capacity: 3)
    }

    /// Re-records the tape when the task needs another graph shape for `indices` (nothing for tasks with
    /// one graph). Allocates only when the shape is larger than any recorded so far.
    private func prepareGraph(evaluation: Bool) {
        guard let shape = task.graphShape(samples: UnsafeBufferPointer(indices), evaluation: evaluation),
              shape != recordedShape else { return }
        tape.reset()
        loss = tape.recordGraph(key: shape) { task.record(on: tape, microBatch: settings.microBatch) }
        recordedShape = shape
    }

    /// Whether each rank updates only its share of the parameters (see `RunSettings.shardOptimizer`).
    public var optimizerIsSharded: Bool { shard != nil }

    /// How the log names what crosses between nodes: "sums between nodes in bf16 (error feedback), on
    /// their own thread"; nil on one node or in deterministic mode.
    public var betweenNodesDescription: String? {
        guard communicator.nodeCount > 1, let buckets, buckets.mode == .hierarchical else { return nil }
        let wire = settings.compression == .bf16 ? "bf16\(settings.errorFeedback ? " with error feedback" : "")" : "fp32"
        return "sums between nodes in \(wire), \(buckets.overlapsBetweenNodes ? "on their own thread" : "inline")"
    }

    /// How the log names the sharding: "optimizer sharded over N ranks" (one node), or "... over the N
    /// ranks of each of M nodes"; nil when every rank updates everything.
    public var shardingDescription: String? {
        guard shard != nil else { return nil }
        return communicator.nodeCount == 1 ? "optimizer sharded over \(communicator.size) ranks"
            : "optimizer sharded over the \(communicator.localSize) ranks of each of \(communicator.nodeCount) nodes"
    }

    /// With a sharded optimizer, hands the pages of the moments this rank does not own back to the
    /// system (they read as zeros again): after a resume broadcast whole moments to every rank, and on
    /// rank 0 after a checkpoint gathered them. Nothing otherwise.
    public func releaseUnownedOptimizerState() {
        guard let shard else { return }
        optimizer.releaseMoments(outside: shard.ranges)
    }

    /// Before rank 0 checkpoints: with a sharded optimizer, rank 0 collects the moments the other ranks
    /// own, so its `optimizer.m` and `v` are whole. Collective (call on every rank); nothing otherwise.
    public func gatherOptimizerState() {
        if let nodeShard {
            nodeShard.gatherOwned(into: optimizer.m)
            nodeShard.gatherOwned(into: optimizer.v)
        }
        gatherCarriedState()
    }

    /// Makes the task's carried state whole on every rank: rank q's samples are the global-batch slots
    /// [q G/W, (q+1) G/W), so each rank in turn broadcasts its slots' state (bits as they are). Collective;
    /// nothing without carried state.
    func gatherCarriedState() {
        guard let state = task.carriedState else { return }
        let part = settings.globalBatch / communicator.size * state.perSlot
        for q in 0..<communicator.size {
            communicator.broadcast(UnsafeMutableBufferPointer(rebasing: state.values[q * part..<(q + 1) * part]), root: q)
        }
    }

    deinit {
        indices.deallocate()
        lossBuffer.deallocate()
    }

    /// Frees the reduction's and the shard's MPI resources and unmaps the other ranks' arenas. Collective.
    public func close() {
        buckets?.close()
        nodeShard?.close()
        nodeArenas?.close()
    }

    /// Runs one optimizer step: `accumulation` micro-batches forward and backward, the gradient
    /// all-reduce overlapped with the last backward pass, clipping and the update. Allocates nothing, except
    /// the closures of a re-recorded graph for tasks whose graph depends on the batch.
    @discardableResult
    public func trainStep() -> StepResult {
        var r = StepResult()
        r.step = step
        let s = settings
        let rank = communicator.rank, size = communicator.size
        let perRank = s.globalBatch / size
        let microPerStep = s.globalBatch / s.microBatch
        var lossSum = 0.0
        for j in 0..<s.accumulation {
            var t = monotonicSeconds()
            let first = rank * perRank + j * s.microBatch
            for b in 0..<s.microBatch {
                indices[b] = sampler.sample(atCursor: step * s.globalBatch + first + b)
            }
            prepareGraph(evaluation: false)
            task.fill(samples: UnsafeBufferPointer(indices), epoch: sampler.epoch(ofCursor: step * s.globalBatch),
                      microBatchIndex: step * microPerStep + first / s.microBatch)
            if let dir = batchDumpDirectory, let writer = task as? BatchWriting {
                do {
                    try writer.writeBatch(to: dir + String(format: "/step-%06d-rank-%d-micro-%d.safetensors", step, rank, j))
                } catch {
                    FileHandle.standardError.write(Data("train.dump_batches: \(error); no more batches are written\n".utf8))
                    batchDumpDirectory = nil
                }
            }
            r.times.data += monotonicSeconds() - t
            t = monotonicSeconds()
            tape.step = UInt64(step * microPerStep + first / s.microBatch)
            tape.forward()
            task.finishedForward()
            lossSum += Double(loss.data[0])
            r.times.forward += monotonicSeconds() - t
            t = monotonicSeconds()
            if let deterministic {
                // Each micro-batch's own gradient, folded later in global micro-batch order.
                task.arena.zeroGrads()
                tape.backward(from: loss)
                deterministic.store(UnsafeBufferPointer(task.arena.grads), microBatch: first / s.microBatch)
            } else {
                buckets!.skipSync = j != s.accumulation - 1
                // Seeding with 1/accumulation makes the accumulated gradient the mean over micro-batches.
                tape.backward(from: loss, seed: 1 / Float(s.accumulation))
            }
            r.times.backward += monotonicSeconds() - t
        }
        var t = monotonicSeconds()
        if let deterministic {
            deterministic.reduce(into: task.arena.grads)
        } else {
            buckets!.finish()
        }
        lossBuffer[0] = lossSum / Double(s.accumulation)
        lossBuffer[1] = Preemption.requested || monotonicSeconds() >= stopDeadline ? 1 : 0
        // Sharded: each rank's share of the squared gradient norm travels with the loss.
        lossBuffer[2] = nodeShard?.takeOwnedGradientSquares() ?? 0
        communicator.allReduce(lossBuffer, op: .sum)
        r.loss = lossBuffer[0] / Double(size)
        r.stopRequested = lossBuffer[1] > 0
        r.times.gradientWait = monotonicSeconds() - t
        t = monotonicSeconds()
        // Clipping's factor, the update and the zeroing of the gradients in one pass over the arena (over
        // this rank's share of it when sharded, followed by the exchange of the updated shares).
        let (norm, factor) = shard == nil ? gradientClipFactor(task.arena, maxNorm: s.clipGradNorm)
            : gradientClipFactor(squares: lossBuffer[2], maxNorm: s.clipGradNorm)
        r.gradientNorm = norm
        r.learningRate = s.schedule(step)
        // Sharded, each rank writes its updated slices into the others' parameters: safe because no rank
        // gets past the loss all-reduce above until every rank has finished this step's backward, and
        // none starts the next forward before the barrier of `endPublishing`.
        optimizer.update(lr: r.learningRate, gradScale: factor, zeroingGrads: true, shard: shard)
        nodeShard?.endPublishing()
        r.times.optimizer = monotonicSeconds() - t
        step += 1
        return r
    }
}

extension Trainer {
    /// Mean metrics over `batches` micro-batches per rank of held-out data (dropout off); nil when the
    /// task has no evaluation data. Collective. Uses the training graph's buffers, so it must run between
    /// steps; it changes no parameter and no random stream.
    /// `batches` 0 means the whole held-out set: enough batches to cover it, the last one padded when
    /// the task can pad (`padsEvaluation`), else wrapping around to its start.
    public func evaluate(batches requested: Int) -> [(String, Double)]? {
        guard let task = task as? EvaluatingTask, task.evalSampleCount > 0 else { return nil }
        let m = settings.microBatch, rank = communicator.rank, size = communicator.size
        let count = task.evalSampleCount
        let batches = requested > 0 ? requested : (count + m * size - 1) / (m * size)
        let pad = requested == 0 && task.padsEvaluation
        let sums = UnsafeMutableBufferPointer<Double>.allocate(capacity: task.evalStatisticsCount)
        defer { sums.deallocate() }
        sums.update(repeating: 0)
        tape.training = false
        tape.evaluation = true
        defer { tape.training = true; tape.evaluation = false }
        for k in 0..<batches {
            for b in 0..<m {
                let i = (k * size + rank) * m + b
                indices[b] = pad && i >= count ? -1 : i % count
            }
            prepareGraph(evaluation: true)
            task.fill(evalSamples: UnsafeBufferPointer(indices))
            tape.forward()
            task.accumulateEvalStatistics(into: sums.baseAddress!)
        }
        communicator.allReduce(sums, op: .sum)
        return task.describeEval(Array(sums))
    }
}

