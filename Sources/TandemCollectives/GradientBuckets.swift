import Foundation

/// How a bucket is averaged over ranks.
public enum ReduceMode: String, Sendable, CaseIterable {
    /// Shared-memory window inside each node, `MPI_Allreduce` among node leaders (the default).
    case hierarchical
    /// Plain `MPI_Allreduce` per bucket: the reference path.
    case mpi
}

/// Where bucket reductions run while backward continues.
///
/// `inline` is the default. Measured with `AllReduceBenchmark.runOverlap` on the 2-core machine
/// (BERT-base-shaped gradients, 2 ranks, one per core): over 512 tokens `inline` added 0.4% to the step
/// and `thread` 9.5%; over 128 tokens 0.8% and 9.0% for `inline`, 5.3% and 10.1% for `thread`. Only
/// under heavy load from other processes (load 6-7) did `thread` come out ahead, in figures that moved
/// by 2x from run to run. Why `thread` gains nothing when a rank owns one core: a bucket needs the
/// communication threads of all ranks running at once to pass its barriers, which time-slicing against
/// backward rarely gives, so most buckets wait for `finish()`; inline, each bucket is summed while it is
/// still in the L3 cache.
public enum OverlapMode: String, Sendable, CaseIterable {
    /// `markReady` reduces a completed bucket (and any completed ones after it, in order) on the
    /// caller's thread before returning.
    case inline
    /// A communication thread reduces each bucket as soon as it is complete (`MPI_THREAD_MULTIPLE`);
    /// worth trying when a rank has more cores than BLAS threads.
    case thread
}

/// Averages the gradient arena over all ranks in buckets of about `bucketBytes` (25 MB by default),
/// overlapping the reductions with backward (`OverlapMode`).
///
/// Use, on every rank, with the same arena layout:
///
///     let buckets = GradientBuckets(arena: arena, communicator: comm)      // collective
///     for micro in 0..<accumulation {
///         buckets.skipSync = micro != accumulation - 1   // only the last micro-step reduces
///         forward(...); backward(...)    // the tape's hook calls buckets.markReady(p) when p.grad is final
///         buckets.finish()               // returns at once when skipSync
///     }
///     optimizer.step(arena)              // every gradient is now the average over ranks
///
/// `markReady` may be skipped for any parameter (one that got no gradient, or all of them when no hook
/// is installed): `finish` reduces every bucket that is still waiting. Call `close()` on every rank
/// before `MPICommunicator.shutdown()`.
public final class GradientBuckets {
    public let layout: BucketLayout
    public let mode: ReduceMode
    public let overlap: OverlapMode
    /// With gradient accumulation: true for every micro-step but the last, so that `markReady` and
    /// `finish` do nothing and gradients keep accumulating locally. Change it only between steps.
    public var skipSync = false {
        willSet { precondition(nextToReduce == 0 && !bucketReady.contains(true), "skipSync changed mid-backward") }
    }
    /// True when the hierarchical reduction works on the ranks' gradient arenas in place (shared memory,
    /// sealed `ParameterArena`s, or buffers of 34 MB and more) rather than through copies in the window.
    public var reducesInPlace: Bool { (reducer as? SharedWindowReducer)?.sharesArenas ?? false }
    /// Seconds the last `finish()` took: the reductions backward did not hide.
    public private(set) var lastWaitSeconds = 0.0
    /// True when the optimizer is sharded over the node's ranks (ZeRO stage 1; asked for with
    /// `shardOptimizer`, granted on a single node whose ranks share their arenas in place): after
    /// `finish()` this rank's gradients hold the averages only in `ownedRanges` (zeros elsewhere), it
    /// updates only those elements, `publish`es them to the other ranks and calls `endPublishing()`.
    public var shardsOptimizer: Bool { (reducer as? SharedWindowReducer)?.shardsOptimizer ?? false }
    /// The arena elements this rank owns when sharded (sorted, disjoint, 16-element aligned; together
    /// the node's ranks own every bucket's elements once); empty otherwise.
    public let ownedRanges: [Range<Int>]

    private let arena: ParameterArena
    private let reducer: BucketReducer
    private let condition = NSCondition()
    private var pending: [Int]
    private var parameterReady: [Bool]
    private var bucketReady: [Bool]
    private var nextToReduce = 0
    private var closing = false
    private var worker: Thread?

    /// Lays out buckets over a sealed arena and sets up the reduction. Collective when `communicator` is
    /// an `MPICommunicator` (it allocates a window and duplicates communicators).
    /// `shareInPlace` false keeps the hierarchical path copying through the window even where the
    /// arenas could be shared (to test that path); `shardOptimizer` asks for `shardsOptimizer`.
    public init(arena: ParameterArena, communicator: any Communicator, bucketBytes: Int = 25 << 20,
                mode: ReduceMode = .hierarchical, overlap: OverlapMode = .inline, shareInPlace: Bool = true,
                shardOptimizer: Bool = false) {
        precondition(arena.isSealed, "GradientBuckets needs a sealed arena (its buffers must not move)")
        self.arena = arena
        self.mode = mode
        self.overlap = overlap
        layout = BucketLayout(arena: arena, bucketBytes: bucketBytes)
        pending = layout.buckets.map(\.parameters.count)
        parameterReady = [Bool](repeating: false, count: arena.parameters.count)
        bucketReady = [Bool](repeating: false, count: layout.buckets.count)
        if communicator.size == 1 {
            reducer = IdentityReducer()
        } else if let mpi = communicator as? MPICommunicator {
            switch mode {
            case .hierarchical:
                reducer = SharedWindowReducer(mpi: mpi, capacity: layout.maxElements, grads: arena.grads,
                                              ownsPages: arena.buffersOwnPages, shareInPlace: shareInPlace,
                                              values: shardOptimizer ? arena.values : nil)
            case .mpi: reducer = PlainMPIReducer(mpi: mpi)
            }
        } else {
            fatalError("GradientBuckets: a \(type(of: communicator)) of \(communicator.size) ranks has no reduction")
        }
        if let r = reducer as? SharedWindowReducer, r.shardsOptimizer, let mpi = communicator as? MPICommunicator {
            ownedRanges = layout.buckets.map { b in
                let s = SharedWindowReducer.slice(mpi.localRank, of: mpi.localSize, count: b.elements.count)
                return (b.elements.lowerBound + s.lowerBound)..<(b.elements.lowerBound + s.upperBound)
            }.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        } else {
            ownedRanges = []
        }
        if overlap == .thread && communicator.size > 1 {
            let t = Thread { [unowned self] in self.work() }
            t.name = "tandem-gradients"
            worker = t
            t.start()
        }
    }

    deinit { close() }

    /// Stops the communication thread and frees MPI resources. Collective; idempotent.
    public func close() {
        condition.lock()
        guard !closing else { condition.unlock(); return }
        closing = true
        condition.broadcast()
        condition.unlock()
        while worker?.isFinished == false { usleep(100) }
        reducer.close()
    }

    /// Says that `parameter`'s gradient is final for this backward pass. When it completes its bucket, the
    /// bucket's reduction starts (after every earlier bucket's, so all ranks reduce in the same order).
    public func markReady(_ parameter: Parameter) {
        markReady(parameterIndex: parameter.index)
    }

    /// Sharded: Σ of the squares of this rank's owned averaged gradients in the last reduction (the
    /// gradient norm's share; sum it over ranks). Resets it. 0 when not sharded.
    public func takeOwnedGradientSquares() -> Double {
        (reducer as? SharedWindowReducer)?.takeOwnedSquares() ?? 0
    }

    /// Sharded: copies this rank's updated parameter values of `range` (within `ownedRanges`) into the
    /// other ranks' replicas.
    public func publish(_ range: Range<Int>) {
        (reducer as? SharedWindowReducer)?.publish(range)
    }

    /// Sharded: returns once every rank of the node has published its update. Collective over the node.
    public func endPublishing() {
        (reducer as? SharedWindowReducer)?.endPublishing()
    }

    /// Sharded: rank 0 of the node receives into `buffer` (laid out like the arena, e.g. an optimizer
    /// moment) the other ranks' owned ranges of theirs. Collective over the node; nothing when not sharded.
    public func gatherOwned(into buffer: UnsafeMutableBufferPointer<Float>) {
        guard shardsOptimizer, let r = reducer as? SharedWindowReducer else { return }
        precondition(buffer.count == arena.count, "gatherOwned: a buffer of \(buffer.count) floats for an arena of \(arena.count)")
        r.gatherOwned(buffer.baseAddress!, buckets: layout.buckets.map(\.elements))
    }

    /// `markReady` by registration index.
    public func markReady(parameterIndex p: Int) {
        guard !skipSync else { return }
        condition.lock()
        guard !parameterReady[p] else { condition.unlock(); return }
        parameterReady[p] = true
        let b = layout.bucketOfParameter[p]
        pending[b] -= 1
        if pending[b] == 0 {
            bucketReady[b] = true
            condition.broadcast()
        }
        condition.unlock()
        if worker == nil { reduceReadyBuckets() }
    }

    /// Waits until every bucket is reduced (reducing those never marked ready); afterwards every gradient
    /// is the average over ranks (sharded: only in `ownedRanges`, zeros elsewhere) and the buckets are
    /// ready for the next backward pass.
    public func finish() {
        guard !skipSync else { return }
        let start = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        for b in bucketReady.indices { bucketReady[b] = true }
        condition.broadcast()
        if worker != nil {
            while nextToReduce < layout.buckets.count { condition.wait() }
            condition.unlock()
        } else {
            condition.unlock()
            reduceReadyBuckets()
        }
        condition.lock()
        nextToReduce = 0
        for b in bucketReady.indices { bucketReady[b] = false }
        for p in parameterReady.indices { parameterReady[p] = false }
        // Reset in place: a new array here would be the only heap allocation of a training step.
        for b in pending.indices { pending[b] = layout.buckets[b].parameters.count }
        condition.unlock()
        lastWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    private func slice(_ b: Int) -> UnsafeMutableBufferPointer<Float> {
        let e = layout.buckets[b].elements
        return UnsafeMutableBufferPointer(start: arena.grads.baseAddress! + e.lowerBound, count: e.count)
    }

    /// Inline mode: reduces, on this thread, the ready buckets that come next in order.
    private func reduceReadyBuckets() {
        while true {
            condition.lock()
            let k = nextToReduce
            guard k < layout.buckets.count && bucketReady[k] else { condition.unlock(); return }
            condition.unlock()
            reducer.reduce(slice(k), offset: layout.buckets[k].elements.lowerBound, bucket: k)
            condition.lock()
            nextToReduce += 1
            condition.unlock()
        }
    }

    /// The communication thread: reduces buckets in order as they become ready.
    private func work() {
        condition.lock()
        while true {
            while !closing && !(nextToReduce < layout.buckets.count && bucketReady[nextToReduce]) { condition.wait() }
            if closing { break }
            let k = nextToReduce
            condition.unlock()
            reducer.reduce(slice(k), offset: layout.buckets[k].elements.lowerBound, bucket: k)
            condition.lock()
            nextToReduce += 1
            condition.broadcast()
        }
        condition.unlock()
    }
}
