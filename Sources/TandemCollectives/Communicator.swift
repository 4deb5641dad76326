#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The element-wise reduction of an all-reduce.
public enum ReduceOp: Sendable {
    case sum, max, min
}

/// An error that every rank raises identically (the decision was taken on data all ranks share), so the
/// caller can report it on rank 0 and exit non-zero on every rank without a hang.
public struct CollectivesError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A group of ranks that train one model: MPI's `MPI_COMM_WORLD` (`MPICommunicator`) or a single
/// process (`LocalCommunicator`, the debug mode and the in-process fake).
///
/// Every collective must be called by every rank in the same order. Ranks on one machine form a node
/// (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`): `localRank` in `0..<localSize`; `nodeCount` nodes.
public protocol Communicator: AnyObject {
    /// This process's rank in `0..<size`.
    var rank: Int { get }
    /// Number of ranks.
    var size: Int { get }
    /// Rank among the ranks of this node.
    var localRank: Int { get }
    /// Number of ranks on this node.
    var localSize: Int { get }
    /// Number of nodes.
    var nodeCount: Int { get }

    /// Returns once every rank has called it.
    func barrier()
    /// Copies `root`'s bytes into `buffer` on every other rank (same byte count everywhere).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int)
    /// In place: `buffer[i] = op over ranks of buffer[i]`.
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp)
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp)
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp)
    /// `receive` (size x send.count bytes) gets every rank's `send` bytes in rank order.
    func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer)
    /// `send` and `receive` hold `size` blocks of equal byte size: block q of `send` goes to rank q, and
    /// block q of `receive` comes from rank q.
    func allToAll(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer)
    /// Prints `message` naming this rank to stderr and ends the whole job with exit status `code`.
    func abort(code: Int32, message: String) -> Never
}

// MARK: - Typed conveniences

extension Communicator {
    /// Broadcasts a typed buffer (Float, Double, Int32, Int64, UInt8, ...) from `root`.
    public func broadcast<T: BitwiseCopyable>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int = 0) {
        broadcast(UnsafeMutableRawBufferPointer(buffer), root: root)
    }

    /// Broadcasts one value from `root`; every rank returns root's value.
    public func broadcast<T: BitwiseCopyable>(_ value: T, root: Int = 0) -> T {
        var v = value
        withUnsafeMutableBytes(of: &v) { broadcast($0, root: root) }
        return v
    }

    /// Broadcasts a string from `root` (length first, then UTF-8 bytes).
    public func broadcast(_ string: String, root: Int = 0) -> String {
        var bytes = Array(string.utf8)
        let count = broadcast(Int64(bytes.count), root: root)
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(count)) }
        bytes.withUnsafeMutableBytes { broadcast($0, root: root) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Every rank's `value`, in rank order.
    public func allGather<T: BitwiseCopyable>(_ value: T) -> [T] {
        var v = value
        var out = [T](repeating: value, count: size)
        withUnsafeBytes(of: &v) { send in
            out.withUnsafeMutableBytes { allGather(send, into: $0) }
        }
        return out
    }

    /// `op` over ranks of one Double.
    public func allReduce(_ value: Double, op: ReduceOp) -> Double {
        var v = value
        withUnsafeMutablePointer(to: &v) { allReduce(UnsafeMutableBufferPointer(start: $0, count: 1), op: op) }
        return v
    }

    /// `op` over ranks of one Int.
    public func allReduce(_ value: Int, op: ReduceOp) -> Int {
        var v = Int64(value)
        withUnsafeMutablePointer(to: &v) { allReduce(UnsafeMutableBufferPointer(start: $0, count: 1), op: op) }
        return Int(v)
    }
}

// MARK: - Detection

/// Chooses the communicator for this process.
public enum Communicators {
    /// True when a launcher (Open MPI's mpirun, or a PMI/PMIx launcher such as srun) started us.
    public static var launchedByMPI: Bool {
        for key in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"] where getenv(key) != nil {
            return true
        }
        return false
    }

    /// `MPICommunicator` when started under mpirun, otherwise `LocalCommunicator` (one rank, no MPI).
    /// `ranksPerNode` groups consecutive ranks into simulated nodes (see `MPICommunicator.init`).
    public static func detect(ranksPerNode: Int? = nil) -> any Communicator {
        launchedByMPI ? MPICommunicator(ranksPerNode: ranksPerNode) : LocalCommunicator()
    }
}
