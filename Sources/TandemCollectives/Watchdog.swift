import CMPI
import Foundation

/// A thread that aborts the whole job when this rank has waited in one collective longer than
/// `limit = max(minimumSeconds, stepMultiple x median step time)`. Before `MPI_Abort` (so that mpirun
/// exits non-zero) it prints the phase, the time waited and every rank that has not arrived, read from
/// the ranks' status board (`CollectiveTracker`). A run never hangs silently.
///
/// Start it with `MPICommunicator.startWatchdog(_:)`; report each finished training step with
/// `recordStep(seconds:)` so the limit follows the step time.
public final class Watchdog {
    /// How long a collective may wait.
    public struct Configuration: Sendable {
        /// The smallest limit, whatever the step time (60 s in training; tests use a second or two).
        public var minimumSeconds: Double
        /// The limit is at least this many median step times.
        public var stepMultiple: Double
        /// How often the thread looks.
        public var pollSeconds: Double
        /// Exit status passed to `MPI_Abort`.
        public var exitCode: Int32

        public init(minimumSeconds: Double = 60, stepMultiple: Double = 10, pollSeconds: Double = 0.1,
                    exitCode: Int32 = 70) {
            self.minimumSeconds = minimumSeconds; self.stepMultiple = stepMultiple
            self.pollSeconds = pollSeconds; self.exitCode = exitCode
        }
    }

    public let configuration: Configuration
    private let tracker: CollectiveTracker
    private let lock = NSLock()
    private var stepTimes: [Double] = []
    private var stopped = false
    private var thread: Thread?

    /// On every tick the thread also runs the board leaders' exchange of records between machines
    /// (`CollectiveTracker.exchange()`).
    init(configuration: Configuration, tracker: CollectiveTracker) {
        self.configuration = configuration; self.tracker = tracker
        let t = Thread { [unowned self] in self.run() }
        t.name = "tandem-watchdog"
        thread = t
        t.start()
    }

    /// Records the duration of one training step; the limit becomes stepMultiple x the median of the
    /// last 101 steps when that exceeds the minimum.
    public func recordStep(seconds: Double) {
        lock.lock(); defer { lock.unlock() }
        stepTimes.append(seconds)
        if stepTimes.count > 101 { stepTimes.removeFirst() }
    }

    /// The current limit in seconds.
    public var limitSeconds: Double {
        lock.lock(); defer { lock.unlock() }
        guard !stepTimes.isEmpty else { return configuration.minimumSeconds }
        let median = stepTimes.sorted()[stepTimes.count / 2]
        return max(configuration.minimumSeconds, configuration.stepMultiple * median)
    }

    /// Stops the thread (before `MPI_Finalize`).
    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        while thread?.isFinished == false { usleep(1000) }
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func run() {
        let pollMicros = useconds_t(max(1000, configuration.pollSeconds * 1e6))
        while !isStopped {
            usleep(pollMicros)
            tracker.exchange()
            let limit = limitSeconds
            for channel in CollectiveChannel.allCases {
                let own = tracker.localRecord(channel)
                guard own.inside else { continue }
                let waited = Double(CollectiveTracker.now() &- own.startNanos) / 1e9
                if waited > limit { fire(channel: channel, own: own, waited: waited, limit: limit) }
            }
        }
    }

    private func fire(channel: CollectiveChannel, own: CollectiveRecord, waited: Double, limit: Double) -> Never {
        let phase = own.phase.map { "\($0)" } ?? "unknown"
        var missing: [String] = []
        var mismatched: [String] = []
        var silent = Set<Int>()  // machines whose records are stale
        for q in 0..<tracker.size where q != tracker.rank {
            let (r, age) = tracker.record(of: q, channel: channel)
            let m = tracker.machineOf[q]
            guard let age, age <= 4 * CollectiveTracker.exchangeSeconds else {
                silent.insert(m)
                missing.append("\(q) (no news from its node " + (age.map { String(format: "for %.1f s", $0) } ?? "since the start") + ")")
                continue
            }
            let last = r.phase.map { "\($0)" } ?? "none"
            if r.sequence < own.sequence || (r.sequence == own.sequence && !r.inside) {
                let state = r.inside ? "waiting in" : "finished"
                missing.append("\(q) (\(state) collective #\(r.sequence) \(last))")
            } else if r.sequence == own.sequence && r.phase != own.phase {
                mismatched.append("\(q) (in \(last) instead)")
            }
        }
        var message = "watchdog: waited \(String(format: "%.1f", waited)) s (limit \(String(format: "%.1f", limit)) s)"
            + " in collective #\(own.sequence) \(phase) on the \(channel) channel"
        if !missing.isEmpty { message += "; ranks not arrived: " + missing.joined(separator: ", ") }
        if !mismatched.isEmpty { message += "; ranks in a different collective: " + mismatched.joined(separator: ", ") }
        if missing.isEmpty && mismatched.isEmpty { message += "; every rank has arrived (slow network or deadlock)" }
        if !silent.isEmpty {
            message += "; node(s) silent (down, or its network link cut): " + silent.sorted().map { m in
                "ranks " + tracker.machineRanks[m].map(String.init).joined(separator: ",")
            }.joined(separator: "; ")
        }
        fputs("tandem: rank \(tracker.rank): \(message); aborting the job\n", stderr)
        fflush(stderr)
        MPI_Abort(cmpi_comm_world(), configuration.exitCode)
        exit(configuration.exitCode)
    }
}
