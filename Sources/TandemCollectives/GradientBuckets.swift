import Foundation

/// How a bucket is averaged over ranks.
public enum ReduceMode: String, Sendable, CaseIterable {
    /// Shared-memory window inside each node, `MPI_Allreduce` among node leaders (the default).
    case hierarchical
    /// Plain `MPI_Allreduce` per bucket: the reference path.
    case mpi
}

/// What crosses the network between nodes in the hierarchical reduction (`distributed.compress`).
public enum GradientCompression: String, Sendable, CaseIterable {
    /// fp32, as everywhere else.
    case none
    /// The node leaders' all-reduce sends bf16 (rounded to nearest even) and sums in fp32, rounding each
    /// sum back to bf16: half the bytes, as Horovod's fp16 compression. Within a node, in the optimizer
    /// and in checkpoints everything stays fp32.
    case bf16
}

/// Averages the gradient arena over all ranks in buckets of about `bucketBytes` (25 MB by default),
/// overlapping the reductions with backward: `markReady` reduces a completed bucket (and any completed
/// ones after it, in order) on the caller's thread before returning, while the bucket is still in the
/// L3 cache.
///
/// Why not a communication thread (`MPI_THREAD_MULTIPLE`): measured with `AllReduceBenchmark.runOverlap`
/// on the 2-core machine (BERT-base-shaped gradients, 2 ranks, one per core), over 512 tokens reducing
/// inline added 0.4% to the step and a thread 9.5%; over 128 tokens 0.8% and 9.0% inline, 5.3% and
/// 10.1% threaded. Only under heavy load from other processes (load 6-7) did the thread come out ahead,
/// in figures that moved by 2x from run to run. When a rank owns one core, a bucket needs the
/// communication threads of all ranks running at once to pass its barriers, which time-slicing against
/// backward rarely gives, so most buckets waited for `finish()`. The thread was removed for that.
/// Between nodes it is another matter: the bytes cross a network link, not memory, and a thread of its
/// own (`CrossNodeOverlap.thread`, the default) sums each bucket with the other nodes' while backward
/// goes on, then `finish()` waits for what is left.
///
/// Use, on every rank, with the same arena layout:
///
///     let arenas = NodeSharedArenas.make(arena: arena, communicator: comm)  // collective; nil: copies
///     let buckets = GradientBuckets(arena: arena, communicator: comm, arenas: arenas)   // collective
///     for micro in 0..<accumulation {
///         buckets.skipSync = micro != accumulation - 1   // only the last micro-step reduces
///         forward(...); backward(...)    // the tape's hook calls buckets.markReady(p) when p.grad is final
///         buckets.finish()               // returns at once when skipSync
///     }
///     optimizer.step(arena)              // every gradient is now the average over ranks
///
/// `markReady` may be skipped for any parameter (one that got no gradient, or all of them when no hook
/// is installed): `finish` reduces every bucket that is still waiting. Call `close()` on every rank
/// before `MPICommunicator.shutdown()`, and close the shared arenas after it.
public final class GradientBuckets {
    public let layout: BucketLayout
    public let mode: ReduceMode
    /// With gradient accumulation: true for every micro-step but the last, so that `markReady` and
    /// `finish` do nothing and gradients keep accumulating locally. Change it only between steps.
    public var skipSync = false {
        willSet { precondition(nextToReduce == 0 && !bucketReady.contains(true), "skipSync changed mid-backward") }
    }
    /// True when the hierarchical reduction works on the ranks' gradient arenas in place (shared
    /// `NodeSharedArenas` on a node of several ranks) rather than through copies in the window.
    public let reducesInPlace: Bool
    /// Whether the sums between nodes run on a thread of their own (`distributed.overlap: thread`, where
    /// it applies: one rank per node, or a sharded optimizer across nodes).
    public var overlapsBetweenNodes: Bool { (reducer as? SharedWindowReducer)?.overlapsBetweenNodes ?? false }
    /// Seconds the last `finish()` took: the reductions backward did not hide.
    public private(set) var lastWaitSeconds = 0.0

    private let arena: ParameterArena
    private let reducer: BucketReducer
    private var pending: [Int]
    private var parameterReady: [Bool]
    private var bucketReady: [Bool]
    private var nextToReduce = 0
    private var closed = false

    /// Lays out buckets over a sealed arena and sets up the reduction. Collective when `communicator` is
    /// an `MPICommunicator` (it allocates a window and duplicates communicators).
    /// `arenas`: the node's shared arenas (`NodeSharedArenas.make` over the same arena), for the
    /// hierarchical reduction to work in place; nil makes it copy through the window. `shard`: with a
    /// node-sharded optimizer (made over `arenas` with this layout's `bucketBytes`), the reduction leaves
    /// this rank's gradients holding the averages only in `shard.ranges` (zeros elsewhere) and adds their
    /// squares to the shard's share of the norm.
    public init(arena: ParameterArena, communicator: any Communicator, bucketBytes: Int = 25 << 20,
                mode: ReduceMode = .hierarchical, arenas: NodeSharedArenas? = nil, shard: NodeOptimizerShard? = nil,
                compression: GradientCompression = .none, errorFeedback: Bool = false,
                overlap: CrossNodeOverlap = .thread) {
        precondition(arena.isSealed, "GradientBuckets needs a sealed arena (its buffers must not move)")
        self.arena = arena
        self.mode = mode
        layout = BucketLayout(arena: arena, bucketBytes: bucketBytes)
        precondition(shard == nil || (shard!.layout == layout && mode == .hierarchical),
                     "a NodeOptimizerShard must follow the hierarchical reduction's bucket layout")
        precondition(arenas == nil || arenas!.count == arena.count, "NodeSharedArenas of another arena")
        pending = layout.buckets.map(\.parameters.count)
        parameterReady = [Bool](repeating: false, count: arena.parameters.count)
        bucketReady = [Bool](repeating: false, count: layout.buckets.count)
        if communicator.size == 1 {
            reducer = IdentityReducer()
            reducesInPlace = false
        } else if let mpi = communicator as? MPICommunicator {
            switch mode {
            case .hierarchical:
                let r = SharedWindowReducer(mpi: mpi, capacity: layout.maxElements, grads: arena.grads, arenas: arenas,
                                            shard: shard, compression: compression, errorFeedback: errorFeedback,
                                            overlap: overlap)
                reducer = r
                reducesInPlace = r.sharesArenas
            case .mpi:
                reducer = PlainMPIReducer(mpi: mpi)
                reducesInPlace = false
            }
        } else {
            fatalError("GradientBuckets: a \(type(of: communicator)) of \(communicator.size) ranks has no reduction")
        }
    }

    deinit { close() }

    /// Frees the reduction's MPI resources. Collective; idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        reducer.close()
    }

    /// Says that `parameter`'s gradient is final for this backward pass. When it completes its bucket, the
    /// bucket's reduction runs (after every earlier bucket's, so all ranks reduce in the same order).
    public func markReady(_ parameter: Parameter) {
        markReady(parameterIndex: parameter.index)
    }

    /// `markReady` by registration index.
    public func markReady(parameterIndex p: Int) {
        guard !skipSync, !parameterReady[p] else { return }
        parameterReady[p] = true
        let b = layout.bucketOfParameter[p]
        pending[b] -= 1
        if pending[b] == 0 { bucketReady[b] = true }
        reduceReadyBuckets()
    }

    /// Reduces every bucket not reduced yet (those never marked ready); afterwards every gradient is the
    /// average over ranks (with a shard: only in its ranges, zeros elsewhere) and the buckets are ready
    /// for the next backward pass.
    public func finish() {
        guard !skipSync else { return }
        let start = DispatchTime.now().uptimeNanoseconds
        for b in bucketReady.indices { bucketReady[b] = true }
        reduceReadyBuckets()
        reducer.drain()
        nextToReduce = 0
        for b in bucketReady.indices { bucketReady[b] = false }
        for p in parameterReady.indices { parameterReady[p] = false }
        // Reset in place: a new array here would be the only heap allocation of a training step.
        for b in pending.indices { pending[b] = layout.buckets[b].parameters.count }
        lastWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Reduces the ready buckets that come next in order.
    private func reduceReadyBuckets() {
        while nextToReduce < layout.buckets.count && bucketReady[nextToReduce] {
            let e = layout.buckets[nextToReduce].elements
            let slice = UnsafeMutableBufferPointer(start: arena.grads.baseAddress! + e.lowerBound, count: e.count)
            reducer.reduce(slice, offset: e.lowerBound, bucket: nextToReduce)
            nextToReduce += 1
        }
    }
}
