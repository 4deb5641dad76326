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
    /// The sums of gradient buckets between nodes (inline, or on their own thread: `distributed.overlap`).
    case betweenNodes = 2
}

extension CollectiveChannel: CustomStringConvertible {
    /// As the watchdog names it: "... on the between-nodes channel".
    var description: String {
        switch self {
        case .main: "main"
        case .gradients: "gradients"
        case .betweenNodes: "between-nodes"
        }
    }
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
/// is in (5 words per channel). The board is one shared-memory window per machine
/// (`MPI_Win_allocate_shared` over the ranks that share memory, osc/sm) holding a row for every rank of
/// the job: a rank writes its own row with plain atomic stores, and the watchdog reads the rows of the
/// ranks on its machine as loads, with no help from their (possibly stuck) threads.
///
/// Rows of ranks on other machines are copies: every machine's first rank (its board leader) sends its
/// machine's rows to the other leaders twice a second from its watchdog thread (non-blocking point-to-point
/// on a communicator of its own) and writes the rows it receives into its machine's board, with the time
/// each arrived, so a report says how old a remote record is and which machines fell silent. No one-sided
/// communication crosses machines: Open MPI 4.1 over TCP has no MPI_THREAD_MULTIPLE window between
/// machines (osc/pt2pt refuses that thread level, osc/rdma over tcp + vader crashes on a get), which
/// launch/hosts found.
final class CollectiveTracker {
    static let wordsPerRecord = 5
    static let wordsPerRank = CollectiveChannel.allCases.count * wordsPerRecord
    /// Seconds between the leaders' exchanges of their rows.
    static let exchangeSeconds = 0.5
    let rank: Int
    let size: Int
    private var window: MPI_Win?
    /// Rows of all ranks, then one word per rank: `CLOCK_MONOTONIC` nanoseconds when its row last arrived
    /// from its machine (0: never; unused for this machine's ranks, whose rows are live).
    private let board: UnsafeMutablePointer<UInt64>
    /// The board leader (machine) of every rank, as the index of that machine among all machines.
    let machineOf: [Int]
    let machine: Int
    /// World ranks on each machine, in rank order.
    let machineRanks: [[Int]]
    private var machineComm: MPI_Comm?
    /// Board leaders only, with more than one machine: the exchange.
    private var exchangeComm: MPI_Comm?
    /// Per machine, `machineRanks[m].count` rows: what was last sent to it, what arrives from it.
    private var sendBuffers: [UnsafeMutablePointer<UInt64>] = []
    private var receiveBuffers: [UnsafeMutablePointer<UInt64>] = []
    private var sends: [MPI_Request?] = []
    private var receives: [MPI_Request?] = []
    private var lastExchange: UInt64 = 0

    /// Collective over the world (every rank must call it).
    init(rank: Int, size: Int) {
        self.rank = rank; self.size = size
        var shared: MPI_Comm?
        MPI_Comm_split_type(cmpi_comm_world(), cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &shared)
        machineComm = shared
        var localRank: Int32 = 0
        MPI_Comm_rank(shared, &localRank)
        // Every rank learns every rank's machine: the world rank of its machine's first rank, renumbered.
        var leader = Int32(rank)
        MPI_Bcast(&leader, 1, cmpi_int32(), 0, shared)
        var leaders = [Int32](repeating: 0, count: size)
        MPI_Allgather(&leader, 1, cmpi_int32(), &leaders, 1, cmpi_int32(), cmpi_comm_world())
        let distinct = Array(Set(leaders)).sorted()
        let machineOf = leaders.map { distinct.firstIndex(of: $0)! }
        self.machineOf = machineOf
        machine = machineOf[rank]
        machineRanks = distinct.indices.map { m in (0..<size).filter { machineOf[$0] == m } }

        let words = size * Self.wordsPerRank + size
        var pointer: UnsafeMutableRawPointer?
        var win: MPI_Win?
        let rc = withUnsafeMutablePointer(to: &pointer) { p in
            MPI_Win_allocate_shared(MPI_Aint(localRank == 0 ? words * 8 : 0), 8, cmpi_info_null(), shared,
                                    UnsafeMutableRawPointer(p), &win)
        }
        var boardSize: MPI_Aint = 0, unit: Int32 = 0
        var first: UnsafeMutableRawPointer?
        let query = rc == cmpi_success() ? withUnsafeMutablePointer(to: &first) { p in
            MPI_Win_shared_query(win, 0, &boardSize, &unit, UnsafeMutableRawPointer(p))
        } : rc
        guard query == cmpi_success(), let first else {
            fputs("tandem: rank \(rank): MPI_Win_allocate_shared for the collective status board failed (\(rc), \(query))\n", stderr)
            MPI_Abort(cmpi_comm_world(), 1)
            exit(1)
        }
        window = win
        board = first.bindMemory(to: UInt64.self, capacity: words)
        if localRank == 0 { board.update(repeating: 0, count: words) }

        var exchange: MPI_Comm?
        MPI_Comm_split(cmpi_comm_world(), localRank == 0 ? 0 : cmpi_undefined(), Int32(rank), &exchange)
        if localRank == 0 && distinct.count > 1 {
            exchangeComm = exchange
            let peers = distinct.count
            let own = machineRanks[machine].count * Self.wordsPerRank
            sendBuffers = (0..<peers).map { _ in .allocate(capacity: own) }
            receiveBuffers = (0..<peers).map { .allocate(capacity: machineRanks[$0].count * Self.wordsPerRank) }
            sends = Array(repeating: nil, count: peers)
            receives = Array(repeating: nil, count: peers)
        } else if localRank == 0 {
            MPI_Comm_free(&exchange)
        }
        MPI_Barrier(cmpi_comm_world())
    }

    /// Frees the window and communicators (collective; after the watchdog stopped).
    func free() {
        if exchangeComm != nil {
            for m in receives.indices {
                guard let r = receives[m], r != cmpi_request_null() else { continue }
                MPI_Cancel(&receives[m])
                MPI_Wait(&receives[m], cmpi_status_ignore())
            }
            for m in sends.indices {
                guard let r = sends[m], r != cmpi_request_null() else { continue }
                MPI_Wait(&sends[m], cmpi_status_ignore())
            }
            MPI_Comm_free(&exchangeComm)
            for b in sendBuffers + receiveBuffers { b.deallocate() }
        }
        if window != nil { MPI_Win_free(&window) }
        if machineComm != nil { MPI_Comm_free(&machineComm) }
    }

    private func slot(_ rank: Int, _ channel: CollectiveChannel) -> UnsafeMutablePointer<UInt64> {
        board + rank * Self.wordsPerRank + channel.rawValue * Self.wordsPerRecord
    }

    /// Publishes entry into the next collective on `channel`.
    func begin(_ phase: CollectivePhase, channel: CollectiveChannel) {
        let s = slot(rank, channel)
        let (code, argument) = phase.encoded
        cmpi_shm_store(s + 4, Self.now())
        cmpi_shm_store(s + 1, code)
        cmpi_shm_store(s + 2, argument)
        cmpi_shm_store(s + 0, cmpi_shm_load(s) + 1)
        cmpi_shm_store(s + 3, 1)
    }

    /// Publishes that the current collective on `channel` returned.
    func end(channel: CollectiveChannel) {
        cmpi_shm_store(slot(rank, channel) + 3, 0)
    }

    /// This rank's own record.
    func localRecord(_ channel: CollectiveChannel) -> CollectiveRecord { record(of: rank, channel: channel).record }

    /// Rank `target`'s record and, for a rank on another machine, the seconds since its row last arrived
    /// (nil: never arrived; 0 for this machine's ranks, whose rows are live).
    func record(of target: Int, channel: CollectiveChannel) -> (record: CollectiveRecord, age: Double?) {
        let s = slot(target, channel)
        let record = Self.decode((0..<Self.wordsPerRecord).map { cmpi_shm_load(s + $0) })
        guard machineOf[target] != machine else { return (record, 0) }
        let arrived = cmpi_shm_load(board + size * Self.wordsPerRank + target)
        return (record, arrived == 0 ? nil : Double(Self.now() &- arrived) / 1e9)
    }

    /// Board leaders: at most every `exchangeSeconds`, sends this machine's rows to every other leader
    /// (when the previous send to it completed) and stores the rows that arrived. Non-blocking; called
    /// by the watchdog thread on every tick. Nothing on other ranks or on one machine.
    func exchange() {
        guard let comm = exchangeComm else { return }
        let now = Self.now()
        for m in receives.indices where m != machine {
            if receives[m] != nil {
                var done: Int32 = 0
                MPI_Test(&receives[m], &done, cmpi_status_ignore())
                guard done != 0 else { continue }
                for (i, q) in machineRanks[m].enumerated() {
                    let row = board + q * Self.wordsPerRank
                    for k in 0..<Self.wordsPerRank { cmpi_shm_store(row + k, receiveBuffers[m][i * Self.wordsPerRank + k]) }
                    cmpi_shm_store(board + size * Self.wordsPerRank + q, now)
                }
            }
            _ = MPI_Irecv(receiveBuffers[m], Int32(machineRanks[m].count * Self.wordsPerRank), cmpi_uint64(),
                          Int32(m), 0, comm, &receives[m])
        }
        guard Double(now &- lastExchange) / 1e9 >= Self.exchangeSeconds else { return }
        lastExchange = now
        for m in sends.indices where m != machine {
            if sends[m] != nil {
                var done: Int32 = 0
                MPI_Test(&sends[m], &done, cmpi_status_ignore())
                guard done != 0 else { continue }  // the peer is not taking rows: leave it
            }
            for (i, q) in machineRanks[machine].enumerated() {
                for k in 0..<Self.wordsPerRank { sendBuffers[m][i * Self.wordsPerRank + k] = cmpi_shm_load(board + q * Self.wordsPerRank + k) }
            }
            _ = MPI_Isend(sendBuffers[m], Int32(machineRanks[machine].count * Self.wordsPerRank), cmpi_uint64(),
                          Int32(m), 0, comm, &sends[m])
        }
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
