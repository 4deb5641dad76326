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
}
