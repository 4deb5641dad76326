import Foundation

/// `distributed.overlap`: where the hierarchical reduction's sum between nodes runs. The default is the
/// thread: on 2-4 namespace hosts of 0.4 core each with BERT-base's 440 MB of gradients
/// (`scripts/bench/hosts-scaling`, README "Several hosts on one machine") it gained 10 points of
/// weak-scaling efficiency where the link limits (1 Gbit/s, 62.5% -> 72.5%; with bf16 81.2% -> 86.2%)
/// and 4.5 at 4 hosts on 10 Gbit/s (82.2% -> 86.7%), and cost 2-3 points at 2 hosts on 10 Gbit/s,
/// where the hosts' CPU time for TCP, not the link, sets the pace.
public enum CrossNodeOverlap: String, Sendable, CaseIterable {
    /// On the training thread, as each bucket completes: backward waits for the network.
    case inline
    /// On a thread of its own, one bucket after another, while backward goes on; the step waits for
    /// what is left in `GradientBuckets.finish()`.
    case thread
}

/// One bucket's (or one owned slice's) sums of a node, to be summed with the other nodes' in place.
struct CrossNodeJob {
    let sum: UnsafeMutablePointer<Float>
    let count: Int
    /// Where `sum` starts in the gradient arena (the error-feedback residual's index).
    let offset: Int
    let bucket: Int
    /// A slice this rank owns under a sharded optimizer (its squares count toward the norm).
    let owned: Bool
}

/// A thread that runs jobs in the order submitted. `submit` never blocks; `drain` returns when every
/// job submitted so far is done. The queue keeps its storage from step to step: no heap allocation in
/// a training step once the first one has sized it.
final class CrossNodeWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [CrossNodeJob] = []
    private var next = 0
    private var busy = false
    private var stopping = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    func start(_ run: @escaping (CrossNodeJob) -> Void) {
        queue.reserveCapacity(64)
        let t = Thread { [self] in
            condition.lock()
            while true {
                while next == queue.count && !stopping { condition.wait() }
                if next == queue.count && stopping { break }
                let job = queue[next]
                busy = true
                condition.unlock()
                run(job)
                condition.lock()
                busy = false
                next += 1
                condition.broadcast()
            }
            condition.unlock()
            done.signal()
        }
        t.name = "tandem-cross-node"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    func submit(_ job: CrossNodeJob) {
        condition.lock()
        queue.append(job)
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every submitted job has run, then empties the queue (keeping its storage).
    func drain() {
        condition.lock()
        while next < queue.count || busy { condition.wait() }
        queue.removeAll(keepingCapacity: true)
        next = 0
        condition.unlock()
    }

    /// Runs what is queued, then ends the thread. Idempotent.
    func stop() {
        guard thread != nil else { return }
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        done.wait()
        thread = nil
    }
}
