import Foundation

/// Throughput per core for the pipeline benchmarks, on the calling thread's CPU time, so that other
/// processes on a shared machine do not count.
public enum ThreadCPUTime {
    public static func seconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Calls `body(i)` for i = 0, 1, ... in groups of `batch` until `seconds` of this thread's CPU time have
    /// passed, and returns the calls per CPU second.
    public static func rate(seconds limit: Double, batch: Int = 1, _ body: (Int) -> Void) -> Double {
        var done = 0
        let start = seconds()
        var elapsed = 0.0
        repeat {
            for _ in 0..<batch { body(done); done += 1 }
            elapsed = seconds() - start
        } while elapsed < limit
        return Double(done) / elapsed
    }
}
