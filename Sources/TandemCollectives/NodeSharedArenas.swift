import CMPI
import Glibc

/// Maps the gradient arenas (and, for a sharded optimizer, the parameter arenas) of the ranks of one
/// node into each other's address space, so the hierarchical reduction reads every rank's gradients and
/// writes the averages back in place, with no copy into or out of a shared window (which costs more than
/// the reduction itself: see `SharedWindowReducer`), and a sharded optimizer writes its updated values
/// into the other replicas (`NodeOptimizerShard`).
///
/// Each rank moves the pages under its buffer onto a shared-memory file: it copies the pages into a
/// file in /dev/shm and maps the file over the same addresses (`mmap(MAP_FIXED | MAP_SHARED)`), so the
/// arena keeps its pointer and its contents; the other ranks of the node map the file too. The first and
/// last page may hold bytes beyond the buffer (the allocator's header): they are copied along and only
/// this process ever touches them, the other ranks write arena elements only.
///
/// This is only done for a buffer in a mapping of its own: a sealed `ParameterArena`'s buffers
/// (`buffersOwnPages`, any size), or a block of 32 MB or more from glibc, which serves those by `mmap`
/// (its largest dynamic threshold), so the pages under the buffer belong to no other allocation and no
/// other thread writes them. Other buffers take the copying path.
///
/// Make one per arena and hand it to every user (`GradientBuckets`, `NodeOptimizerShard`): making a
/// second one over the same arena while the first is in use would remap pages the first one's peers
/// still point at.
public final class NodeSharedArenas {
    /// Arenas at least this large (in bytes) are shared in place: above glibc's 32 MB, with room for its
    /// header.
    static let minimumBytes = 34 << 20

    let mpi: MPICommunicator
    /// `grads[q]`: local rank q's gradient buffer as mapped in this process (grads[localRank] is ours).
    let grads: [UnsafeMutablePointer<Float>]
    /// `values[q]`: local rank q's parameter values, when shared (`sharesValues`); empty otherwise.
    let values: [UnsafeMutablePointer<Float>]
    /// The number of floats in each arena buffer.
    let count: Int
    private var mappings: [(UnsafeMutableRawPointer, Int)]

    /// Whether the parameter values are shared too (asked for, and every node has as many ranks).
    public var sharesValues: Bool { !values.isEmpty }

    /// Collective over the world (every rank calls it, in the same order as its other collectives).
    /// Shares the gradient buffers of `arena` among the ranks of each node, and its value buffers too
    /// when `values` is true and every node has the same number of ranks (`nodesEven`: the sharded
    /// optimizer's condition; across nodes, granted only if every node could share them). Returns
    /// nil on every rank of a node when there is nothing to share (one rank on the node, or a
    /// communicator other than `MPICommunicator`) or when any rank of the node could not share its
    /// gradients (every rank then takes the copying path).
    public static func make(arena: ParameterArena, communicator: any Communicator, values: Bool = false) -> NodeSharedArenas? {
        precondition(arena.isSealed, "NodeSharedArenas needs a sealed arena (its buffers must not move)")
        guard let mpi = communicator as? MPICommunicator, mpi.localSize > 1 else { return nil }
        var mappings: [(UnsafeMutableRawPointer, Int)] = []
        let grads = share(arena.grads, ownsPages: arena.buffersOwnPages, mpi: mpi, mappings: &mappings)
        // Every rank of the node takes the same branch: `share` agrees on its result.
        var peerValues: [UnsafeMutablePointer<Float>] = []
        if values && mpi.nodesEven {
            let before = mappings.count
            if grads != nil {
                peerValues = share(arena.values, ownsPages: arena.buffersOwnPages, mpi: mpi, mappings: &mappings) ?? []
            }
            if mpi.nodeCount > 1 {
                // Across nodes every node must shard, or none (the reduction's slices span nodes): agree
                // over the world. Every node takes this branch, since nodes are even and of several ranks.
                var granted: Int64 = peerValues.isEmpty ? 0 : 1
                mpi.check(MPI_Allreduce(cmpi_in_place(), &granted, 1, cmpi_int64(), cmpi_op_min(), mpi.comm),
                          "MPI_Allreduce(shared parameter arenas on every node)")
                if granted == 0 {
                    for (p, len) in mappings[before...] { munmap(p, len) }
                    mappings.removeSubrange(before...)
                    peerValues = []
                }
            }
        }
        guard let grads else { return nil }
        return NodeSharedArenas(mpi: mpi, grads: grads, values: peerValues, count: arena.count, mappings: mappings)
    }

    private init(mpi: MPICommunicator, grads: [UnsafeMutablePointer<Float>], values: [UnsafeMutablePointer<Float>],
                 count: Int, mappings: [(UnsafeMutableRawPointer, Int)]) {
        self.mpi = mpi; self.grads = grads; self.values = values; self.count = count; self.mappings = mappings
    }

    /// Unmaps the other ranks' buffers (ours stay: they are the arena's memory). Call once, after every
    /// user is done; idempotent.
    public func close() {
        for (p, len) in mappings { munmap(p, len) }
        mappings = []
    }

    /// Collective over the node: moves `buffer`'s pages onto a shared file and maps the other ranks'
    /// files; returns every local rank's buffer as mapped here, or nil on every rank when any could not.
    /// Appends the mappings of the other ranks' buffers to `mappings`.
    private static func share(_ buffer: UnsafeMutableBufferPointer<Float>, ownsPages: Bool, mpi: MPICommunicator,
                              mappings: inout [(UnsafeMutableRawPointer, Int)]) -> [UnsafeMutablePointer<Float>]? {
        let bytes = buffer.count * MemoryLayout<Float>.stride
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let base = Int(bitPattern: buffer.baseAddress!)
        let pageStart = base / page * page
        let length = (base + bytes + page - 1) / page * page - pageStart
        // A rank's file is named by its process and the buffer's address: unique among the files that
        // exist at once (each is unlinked as soon as every rank has mapped it).
        func path(pid: Int64, address: Int64) -> String {
            "/dev/shm/tandem-arena-\(pid)-\(String(UInt64(bitPattern: address), radix: 16))"
        }
        let pid = Int64(getpid())
        let mine = path(pid: pid, address: Int64(base))

        var ok: Int64 = bytes >= minimumBytes || (ownsPages && base == pageStart) ? 1 : 0
        if ok == 1 && !share(pageStart: pageStart, length: length, path: mine) { ok = 0 }
        mpi.check(MPI_Allreduce(cmpi_in_place(), &ok, 1, cmpi_int64(), cmpi_op_min(), mpi.nodeComm),
                  "MPI_Allreduce(shared arenas)")
        // Every rank's (length, offset of the buffer in its first page, pid, buffer address).
        var layout = [Int64](repeating: 0, count: 4 * mpi.localSize)
        var described: [Int64] = [Int64(length), Int64(base - pageStart), pid, Int64(base)]
        mpi.check(MPI_Allgather(&described, 4, cmpi_int64(), &layout, 4, cmpi_int64(), mpi.nodeComm),
                  "MPI_Allgather(shared arenas)")
        var peers: [UnsafeMutablePointer<Float>] = []
        var mapped: [(UnsafeMutableRawPointer, Int)] = []
        if ok == 1 {
            for q in 0..<mpi.localSize {
                if q == mpi.localRank { peers.append(buffer.baseAddress!); continue }
                let fd = open(path(pid: layout[4 * q + 2], address: layout[4 * q + 3]), O_RDWR)
                let len = Int(layout[4 * q])
                let p = fd < 0 ? MAP_FAILED : mmap(nil, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                if fd >= 0 { Glibc.close(fd) }
                guard let p, p != MAP_FAILED else { ok = 0; break }
                mapped.append((p, len))
                peers.append((p + Int(layout[4 * q + 1])).assumingMemoryBound(to: Float.self))
            }
        }
        mpi.check(MPI_Allreduce(cmpi_in_place(), &ok, 1, cmpi_int64(), cmpi_op_min(), mpi.nodeComm),
                  "MPI_Allreduce(shared arenas mapped)")
        unlink(mine)
        guard ok == 1 else {
            for (p, len) in mapped { munmap(p, len) }
            return nil
        }
        mappings += mapped
        return peers
    }

    /// Moves the pages [pageStart, pageStart + length) onto a new shared file at `path`, in place.
    private static func share(pageStart: Int, length: Int, path: String) -> Bool {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        // Reserve the pages now: tmpfs (/dev/shm) takes no space at ftruncate, and a full one would
        // raise SIGBUS at the copy below instead of letting every rank fall back to the copying path.
        guard ftruncate(fd, off_t(length)) == 0, posix_fallocate(fd, 0, off_t(length)) == 0,
              let staging = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), staging != MAP_FAILED
        else { unlink(path); return false }
        let target = UnsafeMutableRawPointer(bitPattern: pageStart)!
        staging.copyMemory(from: target, byteCount: length)
        munmap(staging, length)
        let placed = mmap(target, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0)
        guard placed == target else {
            fputs("tandem: could not map shared arenas over the arena at \(target)\n", stderr)
            abort()
        }
        return true
    }
}
