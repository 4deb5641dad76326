#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Cache-line (64-byte) aligned buffers, so AVX-512 loads never straddle lines and BLAS gets aligned panels.
public enum AlignedMemory {
    public static let alignment = 64

    /// Allocates `count` zeroed elements of `T` aligned to 64 bytes. Free with `deallocate`.
    public static func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let bytes = max(1, count * MemoryLayout<T>.stride)
        var raw: UnsafeMutableRawPointer?
        let rc = posix_memalign(&raw, alignment, (bytes + alignment - 1) / alignment * alignment)
        guard rc == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
        memset(raw, 0, bytes)
        return raw.bindMemory(to: T.self, capacity: max(1, count))
    }

    public static func deallocate<T>(_ pointer: UnsafeMutablePointer<T>) {
        free(UnsafeMutableRawPointer(pointer))
    }

    /// The system's page size in bytes.
    public static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Allocates `count` zeroed elements of `T` in an anonymous mapping of their own, from a page boundary
    /// to a page boundary, so that the pages can later be remapped (shared with other ranks) without
    /// touching any other allocation. Pages are zero and not resident until first written. Free with
    /// `deallocatePages(_:count:)`.
    public static func allocatePages<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let bytes = pageBytes(count * MemoryLayout<T>.stride)
        guard let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED
        else { fatalError("out of memory mapping \(bytes) bytes") }
        return raw.bindMemory(to: T.self, capacity: max(1, count))
    }

    public static func deallocatePages<T>(_ pointer: UnsafeMutablePointer<T>, count: Int) {
        munmap(UnsafeMutableRawPointer(pointer), pageBytes(count * MemoryLayout<T>.stride))
    }

    /// `bytes` rounded up to whole pages (at least one).
    public static func pageBytes(_ bytes: Int) -> Int {
        (max(1, bytes) + pageSize - 1) / pageSize * pageSize
    }
}
