#if canImport(Glibc)
import Glibc
private let systemWrite = Glibc.write
private let systemRename = Glibc.rename
#elseif canImport(Darwin)
import Darwin
private let systemWrite = Darwin.write
private let systemRename = Darwin.rename
#endif

/// A checkpoint I/O or integrity error; the message names the file and, for system calls, the errno text.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }

    /// An error for a failed system call, with `errno`'s text (`"write failed: No space left on device"`).
    static func posix(_ path: String, _ operation: String, errno code: Int32 = errno) -> CheckpointError {
        CheckpointError(path: path, "\(operation) failed: \(String(cString: strerror(code)))")
    }
}

/// A read-only memory map of a whole file. The file is never read whole into memory: pages come in
/// as they are touched. Truncating the file while it is mapped makes later access fault (SIGBUS),
/// as with any mmap; checkpoint files are never modified after their atomic rename.
public final class MappedFile {
    public let path: String
    /// The file's bytes; empty for an empty file.
    public let bytes: UnsafeRawBufferPointer

    /// Maps `path`; throws naming it when it cannot be opened or is not a regular file.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError.posix(path, "open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CheckpointError.posix(path, "stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CheckpointError(path: path, "not a regular file") }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw CheckpointError.posix(path, "mmap") }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}

/// A sink that a checkpoint file's contents are written to: a file descriptor, with the bytes' SHA-256
/// and count computed as they pass, so the manifest needs no second read of the file.
public final class FileSink {
    /// The file being written (for error messages).
    public let path: String
    /// Bytes written so far.
    public private(set) var count = 0
    private let fd: Int32
    private var hasher = SHA256()
    private var buffer: [UInt8] = []
    private static let bufferSize = 1 << 20

    init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
        buffer.reserveCapacity(FileSink.bufferSize)
    }

    /// Appends `bytes`. Small writes are buffered; large ones go straight from the caller's memory to
    /// the file, so a parameter arena is written without a copy.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        hasher.update(bytes)
        count += bytes.count
        if buffer.count + bytes.count <= FileSink.bufferSize {
            buffer.append(contentsOf: bytes)
            return
        }
        try flush()
        if bytes.count < FileSink.bufferSize {
            buffer.append(contentsOf: bytes)
        } else {
            try writeFully(bytes)
        }
    }

    /// Appends an array's bytes.
    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Appends a string as UTF-8.
    public func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Writes out buffered bytes.
    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeFully($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes and returns the SHA-256 of everything written.
    func finish() throws -> [UInt8] {
        try flush()
        return hasher.finalize()
    }

    private func writeFully(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            // Linux writes at most 0x7ffff000 bytes per call; smaller chunks also bound each syscall.
            let chunk = min(bytes.count - done, 1 << 30)
            let n = systemWrite(fd, bytes.baseAddress! + done, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError.posix(path, "write")
            }
            if n == 0 { throw CheckpointError(path: path, "write failed: wrote 0 bytes") }
            done += n
        }
    }
}

// MARK: - File system helpers

enum FS {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The size of a regular file, or nil when it does not exist or is not a regular file.
    static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(st.st_size)
    }

    /// Creates `path` and its missing parents.
    static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = parentDirectory(path)
        if parent != path && !parent.isEmpty { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw CheckpointError.posix(path, "mkdir") }
    }

    static func parentDirectory(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    static func join(_ a: String, _ b: String) -> String { a.hasSuffix("/") ? a + b : a + "/" + b }

    /// Names in a directory, without "." and "..", sorted.
    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw CheckpointError.posix(path, "opendir") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Removes a file or a directory tree; a missing path is not an error.
    static func removeTree(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw CheckpointError.posix(path, "stat")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in try list(path) { try removeTree(join(path, name)) }
            guard rmdir(path) == 0 else { throw CheckpointError.posix(path, "rmdir") }
        } else {
            guard unlink(path) == 0 || errno == ENOENT else { throw CheckpointError.posix(path, "unlink") }
        }
    }

    /// Removes a file (not a directory); a missing file is not an error.
    static func removeFile(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else { throw CheckpointError.posix(path, "unlink") }
    }

    /// fsync of a file or a directory, so that its contents (or its entries) are on disk.
    static func fsyncPath(_ path: String, directory: Bool) throws {
        let fd = open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError.posix(path, "open") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw CheckpointError.posix(path, "fsync") }
    }

    static func rename(_ from: String, _ to: String) throws {
        guard systemRename(from, to) == 0 else { throw CheckpointError.posix(to, "rename from \(from)") }
    }

    /// Creates `path` (which must not exist), hands a sink to `body`, then fsyncs and closes the file.
    /// Returns the bytes written and their SHA-256.
    static func writeFile(_ path: String, _ body: (FileSink) throws -> Void) throws -> (size: Int, sha256: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CheckpointError.posix(path, "create") }
        var closed = false
        defer { if !closed { close(fd) } }
        let sink = FileSink(path: path, fd: fd)
        try body(sink)
        let digest = try sink.finish()
        guard fsync(fd) == 0 else { throw CheckpointError.posix(path, "fsync") }
        closed = true
        // close can report a deferred write error (NFS, some FUSE file systems).
        guard close(fd) == 0 else { throw CheckpointError.posix(path, "close") }
        return (sink.count, digest)
    }
}
