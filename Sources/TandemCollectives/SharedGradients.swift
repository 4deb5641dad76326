import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Makes the gradient arenas of the ranks of one node visible to each other, so the hierarchical
/// reduction reads every rank's gradients and writes the averages back in place, with no copy into or
/// out of a shared window (which costs more than the reduction itself: see `SharedWindowReducer`).
///
/// Each rank moves the pages under its gradient buffer onto a shared-memory file: it copies the pages
/// into a file in /dev/shm and maps the file over the same addresses (`mmap(MAP_FIXED | MAP_SHARED)`),
/// so the arena keeps its pointer and its contents; the other ranks of the node map the file too. The
/// first and last page may hold bytes beyond the buffer (the allocator's header): they are copied along
/// and only this process ever touches them, the other ranks write gradient elements only.
///
/// This is only done for a buffer in a mapping of its own: a sealed `ParameterArena`'s buffers
/// (`ownsPages`, any size), or a block of 32 MB or more from glibc, which serves those by `mmap` (its
/// largest dynamic threshold), so the pages under the buffer belong to no other allocation and no other
/// thread writes them. Other buffers take the copying path. The same mechanism shares the parameter
/// values when the optimizer is sharded (`SharedWindowReducer`).
final class SharedGradients {
    /// Arenas at least this large (in bytes) are shared in place: above glibc's 32 MB, with room for its
    /// header.
    static let minimumBytes = 34 << 20
    private static var instances = 0
    /// Arenas already shared, by buffer address, with their number of users: a second `GradientBuckets`
    /// over the same arena (the benchmark keeps several) reuses the mapping instead of remapping pages
    /// the first one's peers still point at.
    private static var active: [Int: (shared: SharedGradients, users: Int)] = [:]

    /// `peers[q]`: local rank q's gradient buffer as mapped in this process (peers[localRank] is ours).
    let peers: [UnsafeMutablePointer<Float>]
    private var mappings: [(UnsafeMutableRawPointer, Int)]

    /// Collective over the node (every rank creates and closes its `GradientBuckets` in the same order).
    /// Returns nil on every rank of the node when any rank could not share its buffer (then every rank
    /// uses the copying path).
    static func make(mpi: MPICommunicator, grads: UnsafeMutableBufferPointer<Float>, ownsPages: Bool) -> SharedGradients? {
        let key = Int(bitPattern: grads.baseAddress!)
        if let entry = active[key] {
            active[key] = (entry.shared, entry.users + 1)
            return entry.shared
        }
        instances += 1
        let bytes = grads.count * MemoryLayout<Float>.stride
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let base = Int(bitPattern: grads.baseAddress!)
        let pageStart = base / page * page
        let length = (base + bytes + page - 1) / page * page - pageStart
        var leaderPid = Int64(getpid())
        mpi.check(MPI_Bcast(&leaderPid, 1, cmpi_int64(), 0, mpi.nodeComm), "MPI_Bcast(leader pid)")
        func path(_ q: Int) -> String { "/dev/shm/tandem-arena-\(leaderPid)-\(instances)-\(q)" }

        var ok: Int64 = bytes >= minimumBytes || (ownsPages && base == pageStart) ? 1 : 0
        if ok == 1 && !share(pageStart: pageStart, length: length, path: path(mpi.localRank)) { ok = 0 }
        mpi.check(MPI_Allreduce(cmpi_in_place(), &ok, 1, cmpi_int64(), cmpi_op_min(), mpi.nodeComm),
                  "MPI_Allreduce(shared gradients)")
        // Every rank's (length, offset of the buffer in its first page).
        var layout = [Int64](repeating: 0, count: 2 * mpi.localSize)
        var mine: [Int64] = [Int64(length), Int64(base - pageStart)]
        mpi.check(MPI_Allgather(&mine, 2, cmpi_int64(), &layout, 2, cmpi_int64(), mpi.nodeComm),
                  "MPI_Allgather(shared gradients)")
        var peers: [UnsafeMutablePointer<Float>] = []
        var mappings: [(UnsafeMutableRawPointer, Int)] = []
        if ok == 1 {
            for q in 0..<mpi.localSize {
                if q == mpi.localRank { peers.append(grads.baseAddress!); continue }
                let fd = open(path(q), O_RDWR)
                let len = Int(layout[2 * q])
                let p = fd < 0 ? MAP_FAILED : mmap(nil, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                if fd >= 0 { Glibc.close(fd) }
                guard let p, p != MAP_FAILED else { ok = 0; break }
                mappings.append((p, len))
                peers.append((p + Int(layout[2 * q + 1])).assumingMemoryBound(to: Float.self))
            }
        }
        mpi.check(MPI_Allreduce(cmpi_in_place(), &ok, 1, cmpi_int64(), cmpi_op_min(), mpi.nodeComm),
                  "MPI_Allreduce(shared gradients mapped)")
        unlink(path(mpi.localRank))
        guard ok == 1 else {
            for (p, len) in mappings { munmap(p, len) }
            return nil
        }
        let made = SharedGradients(key: key, peers: peers, mappings: mappings)
        active[key] = (made, 1)
        return made
    }

    private let key: Int

    private init(key: Int, peers: [UnsafeMutablePointer<Float>], mappings: [(UnsafeMutableRawPointer, Int)]) {
        self.key = key; self.peers = peers; self.mappings = mappings
    }

    /// Called once per `make`; the last user unmaps the other ranks' buffers (ours stays: it is the
    /// arena's memory).
    func close() {
        guard let entry = Self.active[key] else { return }
        guard entry.users == 1 else {
            Self.active[key] = (entry.shared, entry.users - 1)
            return
        }
        Self.active[key] = nil
        for (p, len) in mappings { munmap(p, len) }
        mappings = []
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
            fputs("tandem: could not map shared gradients over the arena at \(target)\n", stderr)
            abort()
        }
        return true
    }
}
