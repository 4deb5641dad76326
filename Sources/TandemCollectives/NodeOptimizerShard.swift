import CMPI

/// This rank's share of a node-sharded optimizer (ZeRO stage 1 within a node): the ranks of the node
/// split every gradient bucket as the hierarchical reduction does (`SharedWindowReducer.slice`), each
/// owns its slices, updates only those elements and publishes them into the other ranks' replicas.
///
/// Use, on every rank, beside `GradientBuckets` built with the same layout and shared arenas:
///
///     let arenas = NodeSharedArenas.make(arena: arena, communicator: comm, values: true)  // collective
///     let shard = NodeOptimizerShard(layout: layout, arenas: arenas)     // nil: every rank updates all
///     let buckets = GradientBuckets(arena: arena, communicator: comm, arenas: arenas, shard: shard)
///     ... buckets.finish()   // this rank's gradients hold the averages in `ranges`, zeros elsewhere
///     let squares = comm.allReduce(shard.takeOwnedGradientSquares(), op: .sum)
///     for r in shard.ranges { update(r); shard.publish(r) }
///     shard.endPublishing()
///
/// Granted on a single node whose ranks share their gradient and parameter arenas in place: each owner
/// writes the averages of its slice and the zeros of everyone else's into the shared gradients, and its
/// updated values into the others' replicas; across nodes every rank would read whole buckets back
/// anyway. Call `close()` on every rank before `MPICommunicator.shutdown()`.
public final class NodeOptimizerShard {
    /// The arena elements this rank owns (sorted, disjoint, 16-element aligned; together the node's
    /// ranks own every bucket's elements once).
    public let ranges: [Range<Int>]
    /// The bucket layout the ownership follows (the reduction's).
    public let layout: BucketLayout
    private let arenas: NodeSharedArenas
    private var window: MPI_Win?
    private let barrier: NodeBarrier
    /// Σ of the squared averaged gradients of the slices this rank owns, added by the reduction since
    /// `takeOwnedGradientSquares()`.
    var ownedSquares = 0.0

    /// Collective over the node when granted: nil on every rank of the node unless `arenas` shares the
    /// parameter values (one node of several ranks, see `NodeSharedArenas.make`).
    public init?(layout: BucketLayout, arenas: NodeSharedArenas?) {
        guard let arenas, arenas.sharesValues else { return nil }
        let mpi = arenas.mpi
        self.layout = layout
        self.arenas = arenas
        ranges = layout.buckets.map { b in
            let s = SharedWindowReducer.slice(mpi.localRank, of: mpi.localSize, count: b.elements.count)
            return (b.elements.lowerBound + s.lowerBound)..<(b.elements.lowerBound + s.upperBound)
        }.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        (window, barrier) = NodeBarrier.allocate(mpi: mpi)
    }

    /// Frees the barrier's window. Collective over the node; idempotent.
    public func close() {
        if window != nil { MPI_Win_free(&window) }
    }

    /// Returns and resets Σ of the squares of this rank's owned averaged gradients in the reductions
    /// since the last call (the gradient norm's share; sum it over ranks).
    public func takeOwnedGradientSquares() -> Double {
        defer { ownedSquares = 0 }
        return ownedSquares
    }

    /// Copies this rank's parameter values of `range` (within `ranges`) into the other local ranks'
    /// replicas.
    public func publish(_ range: Range<Int>) {
        let me = arenas.mpi.localRank
        let mine = arenas.values[me] + range.lowerBound
        for (q, peer) in arenas.values.enumerated() where q != me {
            (peer + range.lowerBound).update(from: mine, count: range.count)
        }
    }

    /// Returns once every rank of the node has published its update (a counter in a shared window, no
    /// MPI call). Collective over the node.
    public func endPublishing() {
        arenas.mpi.tracked(.parameterPublish) { barrier.wait() }
    }

    /// Collective over the node: local rank 0 receives into `buffer` (laid out like the arena, e.g. an
    /// optimizer moment) the slices the other local ranks own of theirs; theirs is unchanged. For
    /// checkpoints of state only owners keep current.
    public func gatherOwned(into buffer: UnsafeMutableBufferPointer<Float>) {
        precondition(buffer.count == arenas.count, "gatherOwned: a buffer of \(buffer.count) floats for an arena of \(arenas.count)")
        let mpi = arenas.mpi
        let me = mpi.localRank, local = mpi.localSize
        let base = buffer.baseAddress!
        mpi.tracked(.optimizerGather) {
            for q in 1..<local where me == 0 || me == q {
                for b in layout.buckets {
                    let e = b.elements
                    let s = SharedWindowReducer.slice(q, of: local, count: e.count)
                    guard !s.isEmpty else { continue }
                    let p = base + e.lowerBound + s.lowerBound
                    if me == 0 {
                        mpi.check(MPI_Recv(p, Int32(s.count), cmpi_float(), Int32(q), Int32(b.index), mpi.nodeComm,
                                           cmpi_status_ignore()), "MPI_Recv(optimizer state from local rank \(q))")
                    } else {
                        mpi.check(MPI_Send(p, Int32(s.count), cmpi_float(), 0, Int32(b.index), mpi.nodeComm),
                                  "MPI_Send(optimizer state to local rank 0)")
                    }
                }
            }
        }
    }
}
