#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One process, no MPI: the single-node debug mode and the in-process fake for tests. With one rank
/// every collective is the identity (a sum, max or min over one rank is the value itself).
public final class LocalCommunicator: Communicator {
    public init() {}

    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localRank: Int { 0 }
    public var localSize: Int { 1 }
    public var nodeCount: Int { 1 }

    public func barrier() {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
        precondition(root == 0, "broadcast root \(root) out of range for 1 rank")
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) {}

    public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
        precondition(receive.count == send.count, "allGather: receive must hold 1 x \(send.count) bytes")
        if let s = send.baseAddress, let r = receive.baseAddress, s != UnsafeRawPointer(r) {
            r.copyMemory(from: s, byteCount: send.count)
        }
    }

    public func allToAll(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
        allGather(send, into: receive)
    }

    public func abort(code: Int32, message: String) -> Never {
        fputs("tandem: rank 0: \(message)\n", stderr)
        exit(code)
    }
}
