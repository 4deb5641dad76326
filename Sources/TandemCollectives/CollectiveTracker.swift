import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a rank is doing inside a collective, named in the watchdog's report.
enum CollectivePhase: Equatable, Sendable, CustomStringConvertible {
    case setup
    case barrier
    case broadcast
    case allReduce
    case allGather
    case allToAll
    /// The all-reduce of gradient bucket n (bucket 0 holds the last-registered parameters).
    case gradientBucket(Int)
    /// Sharded optimizer: waiting for the node's ranks to publish their updated parameter slices.
    case parameterPublish
    /// Sharded optimizer: the coordinator collecting the optimizer moments for a checkpoint.
    case optimizerGather

    var description: String {
        switch self {
        case .setup: "setup"
        case .barrier: "barrier"
        case .broadcast: "broadcast"
        case .allReduce: "all-reduce"
        case .allGather: "all-gather"
        case .allToAll: "all-to-all"
        case .gradientBucket(let k): "gradient all-reduce bucket \(k)"
        case .parameterPublish: "publishing updated parameters (sharded optimizer)"
        case .optimizerGather: "gathering optimizer moments for a checkpoint (sharded optimizer)"
        }
    }

    var encoded: (code: UInt64, argument: UInt64) {
        switch self {
        case .setup: (1, 0)
        case .barrier: (2, 0)
        case .broadcast: (3, 0)
        case .allReduce: (4, 0)
        case .allGather: (5, 0)
        case .allToAll: (6, 0)
        case .gradientBucket(let k): (7, UInt64(k))
        case .parameterPublish: (8, 0)
        case .optimizerGather: (9, 0)
        }
    }

    init?(code: UInt64, argument: UInt64) {
        switch code {
        case 1: self = .setup
        case 2: self = .barrier
        case 3: self = .broadcast
        case 4: self = .allReduce
        case 5: self = .allGather
        case 6: self = .allToAll
        case 7: self = .gradientBucket(Int(argument))
        case 8: self = .parameterPublish
        case 9: self = .optimizerGather
        default: return nil
        }
    }
}

/// The thread a collective runs on. Each keeps its own sequence, because the gradient thread reduces
/// buckets while the main thread may be in another collective on its own communicator.
enum CollectiveChannel: Int, CaseIterable, Sendable {
    case main = 0
    case gradients = 1
}

/// One rank's published state on one channel.
struct CollectiveRecord: Equatable {
    /// Number of collectives entered on this channel so far (the current one included).
    var sequence: UInt64
    var phase: CollectivePhase?
    /// True between entering and leaving collective `sequence`.
    var inside: Bool
    /// `CLOCK_MONOTONIC` nanoseconds when collective `sequence` was entered (meaningful locally only).
    var startNanos: UInt64
}

/// A status board: every rank publishes, per channel, the sequence number and phase of the collective it
/// is in, in an MPI one-sided window over all ranks (`MPI_Win_allocate`, 5 words per channel). The
/// watchdog reads the other ranks' records with passive-target `MPI_Get`, so it learns who has not
/// arrived without any cooperation from the stuck ranks' main threads: on one node Open MPI backs the
/// window with shared memory (osc/sm) and a get is a load; across nodes a get needs the target process
/// to enter MPI now and then, which its own watchdog thread does on every tick.
final class CollectiveTracker {
    static let wordsPerRecord = 5
    let rank: Int
    let size: Int
    private var window: MPI_Win?
    private let base: UnsafeMutablePointer<UInt64>

    /// Collective over `comm` (every rank must call it).
    init(comm: MPI_Comm?, rank: Int, size: Int) {
        self.rank = rank; self.size = size
        let words = CollectiveChannel.allCases.count * Self.wordsPerRecord
        var pointer: UnsafeMutableRawPointer?
        var win: MPI_Win?
        let rc = withUnsafeMutablePointer(to: &pointer) { p in
            MPI_Win_allocate(MPI_Aint(words * 8), 8, cmpi_info_null(), comm, UnsafeMutableRawPointer(p), &win)
        }
        guard rc == cmpi_success(), let pointer else {
            fputs("tandem: rank \(rank): MPI_Win_allocate for the collective status board failed (\(rc))\n", stderr)
            MPI_Abort(cmpi_comm_world(), 1)
            exit(1)
        }
        window = win
        base = pointer.bindMemory(to: UInt64.self, capacity: words)
        base.update(repeating: 0, count: words)
        MPI_Barrier(comm)
    }

    /// Frees the window (collective).
    func free() {
        if window != nil { MPI_Win_free(&window) }
    }

    private func slot(_ channel: CollectiveChannel) -> UnsafeMutablePointer<UInt64> {
        base + channel.rawValue * Self.wordsPerRecord
    }

    /// Publishes entry into the next collective on `channel`.
    func begin(_ phase: CollectivePhase, channel: CollectiveChannel) {
        let s = slot(channel)
        let (code, argument) = phase.encoded
        cmpi_shm_store(s + 4, Self.now())
        cmpi_shm_store(s + 1, code)
        cmpi_shm_store(s + 2, argument)
        cmpi_shm_store(s + 0, cmpi_shm_load(s) + 1)
        cmpi_shm_store(s + 3, 1)
    }

    /// Publishes that the current collective on `channel` returned.
    func end(channel: CollectiveChannel) {
        cmpi_shm_store(slot(channel) + 3, 0)
    }

    /// This rank's own record (no MPI call).
    func localRecord(_ channel: CollectiveChannel) -> CollectiveRecord {
        let s = slot(channel)
        return Self.decode((0..<Self.wordsPerRecord).map { cmpi_shm_load(s + $0) })
    }

    /// Rank `target`'s record, read with a passive-target get (nil when the get failed).
    func record(of target: Int, channel: CollectiveChannel) -> CollectiveRecord? {
        if target == rank { return localRecord(channel) }
        var words = [UInt64](repeating: 0, count: Self.wordsPerRecord)
        guard MPI_Win_lock(cmpi_lock_shared(), Int32(target), 0, window) == cmpi_success() else { return nil }
        let rc = words.withUnsafeMutableBytes { buffer in
            MPI_Get(buffer.baseAddress, Int32(Self.wordsPerRecord), cmpi_uint64(), Int32(target),
                    MPI_Aint(channel.rawValue * Self.wordsPerRecord), Int32(Self.wordsPerRecord), cmpi_uint64(),
                    window)
        }
        guard MPI_Win_unlock(Int32(target), window) == cmpi_success(), rc == cmpi_success() else { return nil }
        return Self.decode(words)
    }

    private static func decode(_ w: [UInt64]) -> CollectiveRecord {
        CollectiveRecord(sequence: w[0], phase: CollectivePhase(code: w[1], argument: w[2]), inside: w[3] != 0,
                         startNanos: w[4])
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
