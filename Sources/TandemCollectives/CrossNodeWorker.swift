import Foundation

/// `distributed.overlap`: where the hierarchical reduction's sum between nodes runs.
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
