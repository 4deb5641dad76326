#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds, allocation-free: the one clock of step timing, the tape's op profile, the matrix
/// products' profile and the kernel benchmarks.
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
