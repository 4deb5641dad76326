import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `MPI_COMM_WORLD` through Open MPI. Initialises MPI with `MPI_THREAD_MULTIPLE` (the gradient thread
/// and the watchdog call MPI beside the main thread), returns errors instead of aborting inside MPI and
/// turns each into a message naming the rank and the call, then `MPI_Abort`.
///
/// Collectives called on the main thread use a duplicate of the world communicator; every collective is
/// published on the status board (`CollectiveTracker`) so the watchdog can name who is missing.
/// Call `shutdown()` once at the end (it stops the watchdog and calls `MPI_Finalize`).
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localRank: Int
    public let localSize: Int
    public let nodeCount: Int
    /// This rank's node, numbered in the order of the nodes' first ranks.
    public let nodeIndex: Int
    /// Whether every node has the same number of ranks (`localSize`): what lets local rank r of each
    /// node own the same slices of every bucket, so a sharded optimizer can span nodes.
    public let nodesEven: Bool
    /// The thread support level MPI granted (`MPI_THREAD_MULTIPLE` on Open MPI 4.1).
    public let threadLevel: Int32

    /// World duplicate for main-thread collectives.
    let comm: MPI_Comm?
    /// The ranks of this node (a real node, or a simulated one under `ranksPerNode`).
    let nodeComm: MPI_Comm?
    /// Rank 0 of every node (`localRank == 0`); nil on the other ranks.
    let leaderComm: MPI_Comm?
    let tracker: CollectiveTracker
    public private(set) var watchdog: Watchdog?
    private var finalized = false

    /// Initialises MPI (unless already initialised) and splits the world into nodes.
    ///
    /// `ranksPerNode` groups consecutive ranks of one machine into simulated nodes of that many ranks,
    /// so that one machine exercises the inter-node step of the hierarchical reduction (as if each group
    /// were a separate host). Nil: nodes are the real shared-memory domains.
    public init(ranksPerNode: Int? = nil) {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        var provided: Int32 = 0
        if initialized == 0 {
            let rc = MPI_Init_thread(nil, nil, cmpi_thread_multiple(), &provided)
            if rc != cmpi_success() {
                fputs("tandem: MPI_Init_thread failed with code \(rc)\n", stderr)
                exit(1)
            }
        } else {
            MPI_Query_thread(&provided)
        }
        threadLevel = provided
        MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(cmpi_comm_world(), &r)
        MPI_Comm_size(cmpi_comm_world(), &s)
        rank = Int(r); size = Int(s)
        if provided < cmpi_thread_multiple() {
            fputs("tandem: rank \(r): MPI granted thread level \(provided), not MPI_THREAD_MULTIPLE\n", stderr)
            MPI_Abort(cmpi_comm_world(), 1)
        }

        var dup: MPI_Comm?
        Self.check(MPI_Comm_dup(cmpi_comm_world(), &dup), "MPI_Comm_dup", rank: rank)
        comm = dup

        var shared: MPI_Comm?
        Self.check(MPI_Comm_split_type(cmpi_comm_world(), cmpi_comm_type_shared(), r, cmpi_info_null(), &shared),
                   "MPI_Comm_split_type(SHARED)", rank: rank)
        if let ranksPerNode {
            precondition(ranksPerNode > 0, "ranksPerNode must be positive")
            var simulated: MPI_Comm?
            Self.check(MPI_Comm_split(shared, r / Int32(ranksPerNode), r, &simulated), "MPI_Comm_split(node)",
                       rank: rank)
            MPI_Comm_free(&shared)
            shared = simulated
        }
        nodeComm = shared
        var lr: Int32 = 0, ls: Int32 = 0
        MPI_Comm_rank(shared, &lr)
        MPI_Comm_size(shared, &ls)
        localRank = Int(lr); localSize = Int(ls)

        var leaders: MPI_Comm?
        Self.check(MPI_Comm_split(cmpi_comm_world(), lr == 0 ? 0 : cmpi_undefined(), r, &leaders),
                   "MPI_Comm_split(leaders)", rank: rank)
        leaderComm = lr == 0 ? leaders : nil
        var counts: (Int64, Int64) = (lr == 0 ? 1 : 0, 0)
        Self.check(MPI_Allreduce(cmpi_in_place(), &counts.0, 1, cmpi_int64(), cmpi_op_sum(), cmpi_comm_world()),
                   "MPI_Allreduce(node count)", rank: rank)
        nodeCount = Int(counts.0)
        var sizes: [Int64] = [Int64(ls), -Int64(ls)]   // max of the sizes, -min
        Self.check(MPI_Allreduce(cmpi_in_place(), &sizes, 2, cmpi_int64(), cmpi_op_max(), cmpi_comm_world()),
                   "MPI_Allreduce(ranks per node)", rank: rank)
        nodesEven = sizes[0] == -sizes[1]
        var leaderIndex: Int32 = 0
        if lr == 0 { MPI_Comm_rank(leaders, &leaderIndex) }
        Self.check(MPI_Bcast(&leaderIndex, 1, cmpi_int32(), 0, shared), "MPI_Bcast(node index)", rank: rank)
        nodeIndex = Int(leaderIndex)
        tracker = CollectiveTracker(rank: rank, size: size)
    }

    deinit { shutdown() }

    /// Starts the watchdog thread (once); returns it so the trainer can report step times.
    @discardableResult
    public func startWatchdog(_ configuration: Watchdog.Configuration = .init()) -> Watchdog {
        if let watchdog { return watchdog }
        let w = Watchdog(configuration: configuration, tracker: tracker)
        watchdog = w
        return w
    }

    /// Stops the watchdog, frees the communicators and calls `MPI_Finalize`. Collective; idempotent.
    public func shutdown() {
        guard !finalized else { return }
        finalized = true
        watchdog?.stop()
        watchdog = nil
        var finalizedAlready: Int32 = 0
        MPI_Finalized(&finalizedAlready)
        guard finalizedAlready == 0 else { return }
        MPI_Barrier(comm)
        tracker.free()
        MPI_Finalize()
    }

    // MARK: - Collectives

    public func barrier() {
        tracked(.barrier) { check(MPI_Barrier(comm), "MPI_Barrier") }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
        guard buffer.count > 0 else { return }
        tracked(.broadcast) {
            forEachChunk(buffer.count) { start, n in
                check(MPI_Bcast(buffer.baseAddress! + start, Int32(n), cmpi_byte(), Int32(root), comm), "MPI_Bcast")
            }
        }
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) {
        allReduce(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: cmpi_float(), stride: 4,
                  op: op)
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) {
        allReduce(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: cmpi_double(), stride: 8,
                  op: op)
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) {
        allReduce(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: cmpi_int64(), stride: 8,
                  op: op)
    }

    private func allReduce(_ base: UnsafeMutableRawPointer?, count: Int, type: MPI_Datatype?, stride: Int,
                           op: ReduceOp) {
        guard count > 0, let base else { return }
        tracked(.allReduce) {
            forEachChunk(count) { start, n in
                check(MPI_Allreduce(cmpi_in_place(), base + start * stride, Int32(n), type, Self.mpiOp(op), comm),
                      "MPI_Allreduce")
            }
        }
    }

    public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
        precondition(receive.count == send.count * size, "allGather: receive must hold \(size) x \(send.count) bytes")
        precondition(send.count <= Int(Int32.max), "allGather: \(send.count) bytes per rank is too many")
        tracked(.allGather) {
            check(MPI_Allgather(send.baseAddress, Int32(send.count), cmpi_byte(), receive.baseAddress,
                                Int32(send.count), cmpi_byte(), comm), "MPI_Allgather")
        }
    }

    public func allToAll(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
        precondition(send.count == receive.count && send.count % size == 0,
                     "allToAll: send and receive must both hold \(size) equal blocks")
        let block = send.count / size
        precondition(block <= Int(Int32.max), "allToAll: \(block) bytes per block is too many")
        tracked(.allToAll) {
            check(MPI_Alltoall(send.baseAddress, Int32(block), cmpi_byte(), receive.baseAddress, Int32(block),
                               cmpi_byte(), comm), "MPI_Alltoall")
        }
    }

    public func abort(code: Int32, message: String) -> Never {
        fputs("tandem: rank \(rank): \(message)\n", stderr)
        fflush(stderr)
        MPI_Abort(cmpi_comm_world(), code)
        exit(code)
    }

    // MARK: - Helpers

    /// Runs `body` as one collective on `channel`, published on the status board.
    func tracked<R>(_ phase: CollectivePhase, channel: CollectiveChannel = .main, _ body: () throws -> R) rethrows -> R {
        tracker.begin(phase, channel: channel)
        defer { tracker.end(channel: channel) }
        return try body()
    }

    /// Aborts the job with a message naming this rank and the call when `rc` is not `MPI_SUCCESS`.
    /// `call` is only built on failure: no allocation on the hot path.
    func check(_ rc: Int32, _ call: @autoclosure () -> String) { Self.check(rc, call(), rank: rank) }

    static func check(_ rc: Int32, _ call: @autoclosure () -> String, rank: Int) {
        guard rc != cmpi_success() else { return }
        var text = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(rc, &text, &length)
        let reason = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        fputs("tandem: rank \(rank): \(call()) failed: \(reason)\n", stderr)
        fflush(stderr)
        MPI_Abort(cmpi_comm_world(), 1)
        exit(1)
    }

    static func mpiOp(_ op: ReduceOp) -> MPI_Op? {
        switch op {
        case .sum: cmpi_op_sum()
        case .max: cmpi_op_max()
        case .min: cmpi_op_min()
        }
    }

    /// MPI counts are 32-bit: walks `count` elements in chunks of at most 2^30.
    private func forEachChunk(_ count: Int, _ body: (Int, Int) -> Void) {
        var start = 0
        while start < count {
            let n = min(1 << 30, count - start)
            body(start, n)
            start += n
        }
    }
}
