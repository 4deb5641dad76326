import Foundation
import Synchronization

/// SIGTERM and SIGUSR1 (what SLURM's `--signal` and most schedulers send ahead of a time limit) ask the
/// run to stop: the flag travels with the next step's loss all-reduce, so every rank stops after the same
/// step, writes a checkpoint and exits 0. A second signal exits at once.
public enum Preemption {
    static let flag = Atomic<Int32>(0)

    /// Whether this process has received a stop signal.
    public static var requested: Bool { flag.load(ordering: .relaxed) != 0 }

    /// Installs the handlers (idempotent).
    public static func install() {
        for sig in [SIGTERM, SIGUSR1] {
            signal(sig) { received in
                if Preemption.flag.exchange(1, ordering: .relaxed) != 0 { _exit(128 + received) }
            }
        }
    }
}
