import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Averages one bucket of gradients over all ranks, in place. Called for buckets in the same order on
/// every rank, from one thread at a time.
protocol BucketReducer: AnyObject {
    /// `grads` is the bucket's slice of the gradient arena, starting at element `offset`.
    func reduce(_ grads: UnsafeMutableBufferPointer<Float>, offset: Int, bucket: Int)
    /// Frees MPI resources (collective).
    func close()
    /// Returns when every reduction started so far is complete (they may run on a thread of their own).
    func drain()
}

extension BucketReducer {
    func drain() {}
}

/// One rank: the average over one rank is the gradient itself.
final class IdentityReducer: BucketReducer {
    func reduce(_ grads: UnsafeMutableBufferPointer<Float>, offset: Int, bucket: Int) {}
    func close() {}
}

/// The reference path: `MPI_Allreduce(SUM)` of the bucket on a private duplicate of the world
/// communicator (so the gradient thread never interleaves with main-thread collectives), then x 1/size.
final class PlainMPIReducer: BucketReducer {
    private let mpi: MPICommunicator
    private var comm: MPI_Comm?

    init(mpi: MPICommunicator) {
        self.mpi = mpi
        MPICommunicator.check(MPI_Comm_dup(mpi.comm, &comm), "MPI_Comm_dup(gradients)", rank: mpi.rank)
    }

    func reduce(_ grads: UnsafeMutableBufferPointer<Float>, offset: Int, bucket: Int) {
        mpi.tracked(.gradientBucket(bucket), channel: .gradients) {
            var start = 0
            while start < grads.count {
                let n = min(1 << 30, grads.count - start)
                mpi.check(MPI_Allreduce(cmpi_in_place(), grads.baseAddress! + start, Int32(n), cmpi_float(),
                                        cmpi_op_sum(), comm), "MPI_Allreduce(gradient bucket \(bucket))")
                start += n
            }
        }
        scale(grads, by: 1 / Float(mpi.size))
    }

    func close() {
        if comm != nil { MPI_Comm_free(&comm) }
    }
}

/// The hierarchical path. The ranks of a node share one MPI-3 window (`MPI_Win_allocate_shared` on the
/// node communicator): a control block, a result area and, unless the gradient arenas themselves are
/// shared (`NodeSharedArenas`: sealed arenas, or buffers of 34 MB and more), a slot per rank. For one bucket of n floats
/// on a node of L ranks, local rank r owns the slice S_r (about n/L floats, 16-float aligned):
///
/// 1. copying path only: copy the bucket into my slot, except S_r (I read S_r from my own gradients);
/// 2. node barrier: every rank's bucket is final;
/// 3. sum S_r over the node's ranks in local-rank order, ((g_0 + g_1) + g_2) + ..., reading the other
///    ranks' slots or, when shared, their gradients. On a single node the sum x 1/size is the answer:
///    it goes into every rank's gradients (shared) or into mine and the result area (copying). With
///    several nodes the raw sum goes into the result area;
/// 4. node barrier; with several nodes the node leader now `MPI_Allreduce`s the result area across
///    leaders, a third barrier follows, and every rank reads the whole bucket back x 1/size;
/// 5. copying path on a single node: copy the other ranks' slices back from the result area.
///
/// With a `NodeOptimizerShard`, step 3 leaves the averages of S_r in rank r's gradients only (zeroing
/// that slice in the others', ready for the next backward pass) and adds their squares to the shard's
/// share of the gradient norm, while the block is still in L1.
///
/// A node of one rank skips all this: the leaders' all-reduce runs on its gradients directly.
///
/// Memory traffic per rank for a bucket of B bytes on one node: about B read and B written when the
/// arenas are shared (one memcpy's worth), 2B and 2B with the copies. The node barriers are a counter and
/// a generation word in the window, updated with atomics and waited on by spinning then yielding: an
/// MPI barrier would busy-poll and steal the core from backward.
final class SharedWindowReducer: BucketReducer {
    private let mpi: MPICommunicator
    private let capacity: Int
    private var window: MPI_Win?
    private var leaderComm: MPI_Comm?
    private let control: UnsafeMutablePointer<UInt64>
    private let result: UnsafeMutablePointer<Float>
    private let slots: [UnsafeMutablePointer<Float>]
    private let barrier: NodeBarrier
    /// The node's gradient arenas, when shared in place.
    private let shared: NodeSharedArenas?
    /// Where the averages go when the optimizer is sharded.
    private let shard: NodeOptimizerShard?
    /// (1024): the running sum of one block, private and in L1.
    private let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 1024)
    /// (localSize): where each local rank's bucket is read from in the current reduction.
    private let sources: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>
    /// (localSize + 1): where the sums go in the current reduction.
    private let targets: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>
    private static let controlBytes = 4096
    /// `distributed.compress` for the leaders' all-reduce, and its buffers on a node leader: the bf16
    /// bucket, and with error feedback the rounding error of this node's last contribution to every
    /// gradient element (added to the next one before it is rounded, as in 1-bit SGD's error feedback).
    private let compression: GradientCompression
    private let packed: UnsafeMutablePointer<UInt16>?
    private let residual: UnsafeMutableBufferPointer<Float>?
    /// Sharded across nodes: local rank r of every node, which owns the same slices of every bucket
    /// (nodes are even); each rank sums its node's share of its slices with the other nodes' over it.
    private var sliceComm: MPI_Comm?
    /// The communicator of the sum between nodes: the slices' (sharded) or the leaders'; nil on a rank
    /// that takes no part in it (a non-leader, unsharded) or on a single node.
    private var crossComm: MPI_Comm? { sliceComm ?? leaderComm }
    /// `distributed.overlap: thread`: the sums between nodes run here, on a thread of their own, while
    /// backward goes on; nil: on the caller's thread, as each bucket completes.
    private var worker: CrossNodeWorker?

    /// Whether the gradient arenas are shared in place (no copies).
    var sharesArenas: Bool { shared != nil }

    /// Collective over the node: room for buckets of up to `capacity` floats of the arena gradients
    /// `grads`. `arenas`: the node's gradient arenas shared in place, nil for the copying path (ignored
    /// on a node of one rank). `shard`: this rank's share of a sharded optimizer (made over `arenas`),
    /// nil when every rank updates every parameter.
    init(mpi: MPICommunicator, capacity: Int, grads: UnsafeMutableBufferPointer<Float>, arenas: NodeSharedArenas?,
         shard: NodeOptimizerShard?, compression: GradientCompression = .none, errorFeedback: Bool = false,
         overlap: CrossNodeOverlap = .thread) {
        self.mpi = mpi
        let slicing = shard != nil && mpi.nodeCount > 1
        let compressing = compression == .bf16 && (mpi.leaderComm != nil || slicing) && mpi.nodeCount > 1
        self.compression = compressing ? .bf16 : .none
        packed = compressing ? .allocate(capacity: max(16, (capacity + 15) / 16 * 16)) : nil
        residual = compressing && errorFeedback ? .allocate(capacity: grads.count) : nil
        residual?.initialize(repeating: 0)
        if compressing { _ = cmpi_op_bf16_sum() }  // created here, on the main thread
        let capacity = max(16, (capacity + 15) / 16 * 16)
        self.capacity = capacity
        sources = .allocate(capacity: mpi.localSize)
        targets = .allocate(capacity: mpi.localSize + 1)
        let alone = mpi.localSize == 1
        shared = alone ? nil : arenas
        precondition(shard == nil || shared != nil, "a sharded optimizer needs the gradient arenas shared")
        self.shard = shard
        let resultBytes = alone ? 0 : capacity * 4
        let slotBytes = alone || shared != nil ? 0 : capacity * 4
        let mine = (mpi.localRank == 0 ? Self.controlBytes + resultBytes : 0) + slotBytes
        var pointer: UnsafeMutableRawPointer?
        var win: MPI_Win?
        let rc = withUnsafeMutablePointer(to: &pointer) { p in
            MPI_Win_allocate_shared(MPI_Aint(mine), 1, cmpi_info_null(), mpi.nodeComm, UnsafeMutableRawPointer(p), &win)
        }
        mpi.check(rc, "MPI_Win_allocate_shared(\(mine) bytes)")
        window = win
        var bases: [UnsafeMutableRawPointer?] = []
        for q in 0..<mpi.localSize {
            var size: MPI_Aint = 0
            var unit: Int32 = 0
            var base: UnsafeMutableRawPointer?
            let rq = withUnsafeMutablePointer(to: &base) { p in
                MPI_Win_shared_query(win, Int32(q), &size, &unit, UnsafeMutableRawPointer(p))
            }
            mpi.check(rq, "MPI_Win_shared_query(local rank \(q))")
            bases.append(base)
        }
        let leader = bases[0]!
        control = leader.bindMemory(to: UInt64.self, capacity: Self.controlBytes / 8)
        barrier = NodeBarrier(control: control, ranks: mpi.localSize)
        result = (leader + Self.controlBytes).bindMemory(to: Float.self, capacity: capacity)
        slots = slotBytes == 0 ? [] : bases.indices.map { q in
            (q == 0 ? leader + Self.controlBytes + resultBytes : bases[q]!).bindMemory(to: Float.self, capacity: capacity)
        }
        if mpi.localRank == 0 { control.update(repeating: 0, count: Self.controlBytes / 8) }
        if slicing {
            // Every rank of every node is here: a shard exists on all nodes or none (NodeSharedArenas.make).
            MPICommunicator.check(MPI_Comm_split(mpi.comm, Int32(mpi.localRank), Int32(mpi.rank), &sliceComm),
                                  "MPI_Comm_split(slices across nodes)", rank: mpi.rank)
        } else if let leaders = mpi.leaderComm {
            MPICommunicator.check(MPI_Comm_dup(leaders, &leaderComm), "MPI_Comm_dup(leaders)", rank: mpi.rank)
        }
        mpi.check(MPI_Barrier(mpi.nodeComm), "MPI_Barrier(node)")
        if overlap == .thread && mpi.nodeCount > 1 && (mpi.localSize == 1 || slicing) {
            let w = CrossNodeWorker()
            w.start { [unowned self] job in self.crossNodeSum(job) }
            worker = w
        }
    }

    deinit {
        packed?.deallocate()
        residual?.deallocate()
        scratch.deallocate()
        sources.deallocate()
        targets.deallocate()
    }

    func close() {
        worker?.stop()
        worker = nil
        if leaderComm != nil { MPI_Comm_free(&leaderComm) }
        if sliceComm != nil { MPI_Comm_free(&sliceComm) }
        if window != nil { MPI_Win_free(&window) }
    }

    func drain() {
        worker?.drain()
    }

    var overlapsBetweenNodes: Bool { worker != nil }

    /// The slice of `count` floats that local rank `r` sums.
    private func slice(_ r: Int, count: Int) -> Range<Int> {
        Self.slice(r, of: mpi.localSize, count: count)
    }

    /// The slice of a bucket of `count` floats that local rank `r` of `local` sums (and, sharded, owns).
    static func slice(_ r: Int, of local: Int, count: Int) -> Range<Int> {
        let chunk = ((count + local - 1) / local + 15) / 16 * 16
        return min(count, r * chunk)..<min(count, (r + 1) * chunk)
    }

    func reduce(_ grads: UnsafeMutableBufferPointer<Float>, offset: Int, bucket: Int) {
        let n = grads.count
        precondition(n <= capacity, "bucket \(bucket) has \(n) floats, the window holds \(capacity)")
        let g = grads.baseAddress!
        let me = mpi.localRank
        let own = slice(me, count: n)
        let single = mpi.nodeCount == 1
        let inverse = 1 / Float(mpi.size)
        if mpi.localSize == 1 {
            // Alone on the node: nothing to share, the leaders' all-reduce works on the gradients directly.
            acrossNodes(CrossNodeJob(sum: g, count: n, offset: offset, bucket: bucket, owned: false))
            return
        }
        // Where rank q's bucket is read from, and where the averages go (preallocated: no heap
        // allocation in a training step).
        let local = mpi.localSize
        var targetCount = 0
        for q in 0..<local {
            sources[q] = shared.map { $0.grads[q] + offset } ?? (q == me ? g : slots[q])
        }
        if let shard {
            // Arenas shared: the sums of my slice go to my gradients only. On a single node they are the
            // averages; across nodes, the node's sums, which I then sum with the same slice of every
            // other node (local rank `me` of each owns it) and scale.
            mpi.tracked(.gradientBucket(bucket), channel: .gradients) {
                barrier.wait()
                // Across nodes the squares are taken of the averages, after the sum between nodes.
                let squares = sumOwnedSlice(own, scale: single ? inverse : 1, me: me, countingSquares: single)
                shard.ownedSquares += squares
                barrier.wait()
            }
            if !single && !own.isEmpty {
                acrossNodes(CrossNodeJob(sum: g + own.lowerBound, count: own.count, offset: offset + own.lowerBound,
                                         bucket: bucket, owned: true))
            }
            return
        }
        if !single {
            targets[0] = result; targetCount = 1
        } else if shared != nil {
            for q in 0..<local { targets[q] = sources[q] }
            targetCount = local
        } else {
            targets[0] = g; targets[1] = result; targetCount = 2
        }
        mpi.tracked(.gradientBucket(bucket), channel: .gradients) {
            if shared == nil {
                slots[me].update(from: g, count: own.lowerBound)
                (slots[me] + own.upperBound).update(from: g + own.upperBound, count: n - own.upperBound)
            }
            barrier.wait()
            sumSlice(own, scale: single ? inverse : 1, targetCount: targetCount)
            barrier.wait()
            if !single {
                if leaderComm != nil { leadersAllReduce(result, count: n, offset: offset, bucket: bucket) }
                barrier.wait()
            }
        }
        if !single {
            for i in 0..<n { g[i] = result[i] * inverse }
        } else if shared == nil {
            g.update(from: result, count: own.lowerBound)
            (g + own.upperBound).update(from: result + own.upperBound, count: n - own.upperBound)
        }
    }

    /// Sums a node's sums across nodes, then averages them: now, or on the worker thread (`overlap`),
    /// in which case `drain()` waits for it.
    private func acrossNodes(_ job: CrossNodeJob) {
        if let worker { worker.submit(job) } else { crossNodeSum(job) }
    }

    /// `job.sum` := (Σ over nodes of job.sum) x 1/size; for an owned slice of a sharded optimizer, its
    /// squares go to the norm's share (from the first node only: every node holds the same averages).
    private func crossNodeSum(_ job: CrossNodeJob) {
        mpi.tracked(.gradientBucket(job.bucket), channel: .betweenNodes) {
            leadersAllReduce(job.sum, count: job.count, offset: job.offset, bucket: job.bucket)
        }
        let averages = UnsafeMutableBufferPointer(start: job.sum, count: job.count)
        scale(averages, by: 1 / Float(mpi.size))
        if job.owned, let shard, mpi.nodeIndex == 0 {
            var start = 0
            while start < job.count {
                let m = min(1024, job.count - start)
                shard.ownedSquares += blockSquares(job.sum + start, count: m)
                start += m
            }
        }
    }

    /// Sums `count` floats at `x` over the nodes (`crossComm`), in place: fp32, or bf16 on the wire
    /// (`compression`), with this node's rounding error carried to the next step when `residual` is kept.
    private func leadersAllReduce(_ x: UnsafeMutablePointer<Float>, count n: Int, offset: Int, bucket: Int) {
        let leaderComm = crossComm
        guard compression == .bf16, let packed else {
            mpi.check(MPI_Allreduce(cmpi_in_place(), x, Int32(n), cmpi_float(), cmpi_op_sum(), leaderComm),
                      "MPI_Allreduce(gradient bucket \(bucket) across nodes)")
            return
        }
        if let residual {
            let r = residual.baseAddress! + offset
            for i in 0..<n { x[i] += r[i] }
            cmpi_bf16_encode(x, packed, n)
            for i in 0..<n { r[i] = x[i] - cmpi_f32_from_bf16(packed[i]) }
        } else {
            cmpi_bf16_encode(x, packed, n)
        }
        mpi.check(MPI_Allreduce(cmpi_in_place(), packed, Int32(n), cmpi_uint16(), cmpi_op_bf16_sum(), leaderComm),
                  "MPI_Allreduce(gradient bucket \(bucket) across nodes, bf16)")
        cmpi_bf16_decode(packed, x, n)
    }

    /// targets[t][i] = (sum over local ranks q, in order, of sources[q][i]) x scale for i in `range` and
    /// t < targetCount, summed a block of 1024 floats at a time in L1.
    private func sumSlice(_ range: Range<Int>, scale: Float, targetCount: Int) {
        var start = range.lowerBound
        while start < range.upperBound {
            let m = sumBlock(start, upTo: range.upperBound, scale: scale)
            for t in 0..<targetCount { (targets[t] + start).update(from: scratch, count: m) }
            start += m
        }
    }

    /// Sharded: sources[me][i] = (Σ over local ranks q, in order, of sources[q][i]) x scale and
    /// sources[q][i] = 0 for q != me, i in `range` (the same sums as `sumSlice`, so the same bits);
    /// returns Σ of the squared results when `countingSquares`, else 0.
    private func sumOwnedSlice(_ range: Range<Int>, scale: Float, me: Int, countingSquares: Bool) -> Double {
        var squares = 0.0
        var start = range.lowerBound
        while start < range.upperBound {
            let m = sumBlock(start, upTo: range.upperBound, scale: scale)
            for q in sources.indices where q != me { (sources[q] + start).update(repeating: 0, count: m) }
            (sources[me] + start).update(from: scratch, count: m)
            if countingSquares { squares += blockSquares(scratch, count: m) }
            start += m
        }
        return squares
    }

    /// scratch[0..<m] = (Σ over local ranks q, in order, of sources[q][start + i]) x scale for the next
    /// block of m = min(1024, end - start) elements; returns m.
    @inline(__always)
    private func sumBlock(_ start: Int, upTo end: Int, scale: Float) -> Int {
        let m = min(1024, end - start)
        scratch.update(from: sources[0] + start, count: m)
        for q in 1..<sources.count {
            let s = sources[q] + start
            for i in 0..<m { scratch[i] += s[i] }
        }
        if scale != 1 { for i in 0..<m { scratch[i] *= scale } }
        return m
    }
}

/// A counting barrier over the ranks of a node in two words of a node-shared window (a count and, a
/// cache line further, a generation): the last to arrive resets the counter and bumps the generation the others wait on, by
/// spinning then yielding. An MPI barrier would busy-poll and steal the core from backward.
struct NodeBarrier {
    /// The count (word 0) and the generation (word 8), zeroed before first use.
    let control: UnsafeMutablePointer<UInt64>
    let ranks: Int

    /// Allocates a window on the node holding the control words (on local rank 0) and zeroes them.
    /// Collective over the node; free the window with `MPI_Win_free`.
    static func allocate(mpi: MPICommunicator) -> (MPI_Win?, NodeBarrier) {
        let bytes = 128
        var pointer: UnsafeMutableRawPointer?
        var win: MPI_Win?
        let rc = withUnsafeMutablePointer(to: &pointer) { p in
            MPI_Win_allocate_shared(MPI_Aint(mpi.localRank == 0 ? bytes : 0), 1, cmpi_info_null(), mpi.nodeComm,
                                    UnsafeMutableRawPointer(p), &win)
        }
        mpi.check(rc, "MPI_Win_allocate_shared(\(bytes) bytes)")
        var size: MPI_Aint = 0
        var unit: Int32 = 0
        var base: UnsafeMutableRawPointer?
        let rq = withUnsafeMutablePointer(to: &base) { p in
            MPI_Win_shared_query(win, 0, &size, &unit, UnsafeMutableRawPointer(p))
        }
        mpi.check(rq, "MPI_Win_shared_query(local rank 0)")
        let control = base!.bindMemory(to: UInt64.self, capacity: bytes / 8)
        if mpi.localRank == 0 { control.update(repeating: 0, count: bytes / 8) }
        mpi.check(MPI_Barrier(mpi.nodeComm), "MPI_Barrier(node)")
        return (win, NodeBarrier(control: control, ranks: mpi.localSize))
    }

    func wait() {
        let local = UInt64(ranks)
        guard local > 1 else { return }
        let count = control, generation = control + 8
        let seen = cmpi_shm_load(generation)
        if cmpi_shm_fetch_add(count, 1) == local - 1 {
            cmpi_shm_store(count, 0)
            cmpi_shm_store(generation, seen + 1)
            return
        }
        var spins = 0
        while cmpi_shm_load(generation) == seen {
            spins += 1
            if spins < 64 { cmpi_shm_pause() } else if spins < 2000 { cmpi_yield() } else { usleep(20) }
        }
    }
}

/// Σ x² of a block of at most 1024 floats: Float lanes, then Double (as `TandemKernels.sumOfSquares`
/// does per block; Collectives depend on TandemTensor only).
func blockSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var lanes = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        lanes += v * v
        i += 16
    }
    var total = Double(lanes.sum())
    while i < count { total += Double(x[i]) * Double(x[i]); i += 1 }
    return total
}

/// buffer[i] *= factor.
func scale(_ buffer: UnsafeMutableBufferPointer<Float>, by factor: Float) {
    guard factor != 1 else { return }
    for i in buffer.indices { buffer[i] *= factor }
}
