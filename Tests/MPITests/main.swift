// Multi-rank scenarios of TandemCollectives, each run under a real `mpirun -np N` by `launch/mpi-tests`:
//
//     tandem-mpi-tests SCENARIO [--ranks-per-node N]
//     tandem-mpi-tests bench [--sizes 1,4,440] [--overlap [--steps 3] [--tokens 128]]
//
// A scenario prints `PASS name` / `FAIL name: why` lines on rank 0 (every check is agreed over all ranks)
// and exits non-zero when a check failed. The failure scenarios (watchdog-skip, watchdog-bucket,
// rank-exit, config-mismatch) are expected to end the job with a non-zero status and a message; the
// script checks both.
import Foundation
import TandemCollectives
import TandemData

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    fputs("usage: tandem-mpi-tests SCENARIO [--ranks-per-node N]\n", stderr)
    exit(2)
}
let scenario = arguments[1]
let ranksPerNode = arguments.firstIndex(of: "--ranks-per-node").map { Int(arguments[$0 + 1])! }
let comm = Communicators.detect(ranksPerNode: ranksPerNode)
var failures = 0

/// Agrees `ok` over all ranks and reports it once on rank 0.
func check(_ name: String, _ ok: Bool, _ detail: @autoclosure () -> String = "") {
    let allOK = comm.allReduce(ok ? 0 : 1, op: .max) == 0
    if !ok { fputs("rank \(comm.rank): \(name): \(detail())\n", stderr) }
    if comm.rank == 0 { print(allOK ? "PASS \(name)" : "FAIL \(name)") }
    if !allOK { failures += 1 }
}

func finishScenario() -> Never {
    fflush(stdout)
    (comm as? MPICommunicator)?.shutdown()
    exit(failures == 0 ? 0 : 1)
}

/// Parameters of awkward sizes (odd counts, single floats, one larger than the small buckets).
func makeArena() -> ParameterArena {
    let arena = ParameterArena()
    for (i, n) in [1, 7, 33, 1000, 5001, 17, 3, 100_003, 250, 2, 4099, 64, 999].enumerated() {
        arena.register("p\(i)", Shape(n), initializer: .zeros)
    }
    arena.seal()
    return arena
}

/// An exactly representable gradient: a small integer depending on (rank, element).
func integerGrad(rank: Int, element: Int) -> Float { Float((element * 7 + rank * 13) % 97) }

// MARK: - Scenarios

func basics() {
    check("node layout", comm.localSize >= 1 && comm.localRank < comm.localSize && comm.nodeCount >= 1,
          "local \(comm.localRank)/\(comm.localSize), \(comm.nodeCount) nodes")
    comm.barrier()
    var floats = [Float](repeating: Float(comm.rank), count: 1001)
    floats.withUnsafeMutableBufferPointer { comm.broadcast($0, root: comm.size - 1) }
    check("broadcast Float", floats.allSatisfy { $0 == Float(comm.size - 1) })
    var bytes = [UInt8](repeating: UInt8(comm.rank), count: 17)
    bytes.withUnsafeMutableBufferPointer { comm.broadcast($0, root: 0) }
    check("broadcast UInt8", bytes.allSatisfy { $0 == 0 })
    check("broadcast String", comm.broadcast("from rank \(comm.rank)", root: 0) == "from rank 0")
    var sums = (0..<333).map { Float($0 + comm.rank) }
    sums.withUnsafeMutableBufferPointer { comm.allReduce($0, op: .sum) }
    let n = comm.size
    check("allReduce Float sum", sums.enumerated().allSatisfy { $0.element == Float($0.offset * n + n * (n - 1) / 2) })
    var doubles = [Double(comm.rank), -Double(comm.rank)]
    doubles.withUnsafeMutableBufferPointer { comm.allReduce($0, op: .max) }
    check("allReduce Double max", doubles == [Double(n - 1), 0])
    var ints: [Int64] = [Int64(comm.rank) + 5]
    ints.withUnsafeMutableBufferPointer { comm.allReduce($0, op: .min) }
    check("allReduce Int64 min", ints == [5])
    check("allGather", comm.allGather(Int32(comm.rank * 10)) == (0..<n).map { Int32($0 * 10) })
    let send = (0..<n).flatMap { q in [Int32(comm.rank), Int32(q)] }
    var receive = [Int32](repeating: -1, count: 2 * n)
    send.withUnsafeBytes { s in receive.withUnsafeMutableBytes { comm.allToAll(s, into: $0) } }
    check("allToAll", receive == (0..<n).flatMap { q in [Int32(q), Int32(comm.rank)] })

    let arena = ParameterArena()
    arena.register("w", Shape(37, 11), initializer: .normal(std: 1), rng: Philox(seed: UInt64(comm.rank)))
    arena.seal()
    comm.broadcastParameters(arena: arena)
    let reference = ParameterArena()
    reference.register("w", Shape(37, 11), initializer: .normal(std: 1), rng: Philox(seed: 0))
    reference.seal()
    check("broadcastParameters", Array(arena.values) == Array(reference.values))
    do {
        try comm.verifyConsistency(configHash: 42, parameterCount: arena.parameterCount, version: "0.1")
        check("verifyConsistency equal", true)
    } catch { check("verifyConsistency equal", false, "\(error)") }
    do {
        try comm.checkReplicasAgree(arena: arena, step: 7)
        check("checkReplicasAgree equal", true)
    } catch { check("checkReplicasAgree equal", false, "\(error)") }
    if comm.rank == n - 1 && n > 1 { arena.values[5] += 1e-3 }
    do {
        try comm.checkReplicasAgree(arena: arena, step: 7)
        check("checkReplicasAgree detects divergence", n == 1)
    } catch {
        let text = "\(error)"
        check("checkReplicasAgree detects divergence", text.contains("step 7") && text.contains("rank(s) \(n - 1) "),
              text)
        if comm.rank == 0 { print("  message: \(text)") }
    }
}

func buckets() {
    let arena = makeArena()
    let n = comm.size
    // Sealed arenas own their pages, so the hierarchical path shares even this small one in place; the
    // copying path (no shared arenas) is what other buffers get.
    let paths: [(ReduceMode, Bool)] = [(.hierarchical, true), (.hierarchical, false), (.mpi, false)]
    for (mode, inPlace) in paths {
        let arenas = inPlace ? NodeSharedArenas.make(arena: arena, communicator: comm) : nil
        defer { arenas?.close() }
        if inPlace {
            check("hierarchical: arenas shared on a node of several ranks", (arenas != nil) == (comm.localSize > 1))
        }
        for bucketBytes in [1 << 20, 4096, 1000] {
            let b = GradientBuckets(arena: arena, communicator: comm, bucketBytes: bucketBytes, mode: mode,
                                    arenas: arenas)
            let path = mode == .mpi ? "" : b.reducesInPlace ? " in place" : " copying"
            let name = "\(mode)\(path) buckets of \(bucketBytes) B"
            var exact = true
            for step in 0..<3 {
                for i in 0..<arena.count { arena.grads[i] = integerGrad(rank: comm.rank + step, element: i) }
                // The hook order of a real backward: reverse registration, one parameter left unmarked
                // (finish must reduce its bucket anyway).
                for p in arena.parameters.reversed() where p.index != 4 { b.markReady(p) }
                b.finish()
                for p in arena.parameters {
                    for i in p.offset..<(p.offset + p.count) {
                        var sum: Float = 0
                        for q in 0..<n { sum += integerGrad(rank: q + step, element: i) }
                        if arena.grads[i] != sum * (1 / Float(n)) { exact = false }
                    }
                }
            }
            // Gradient accumulation over two micro-steps: the first does not reduce.
            for i in 0..<arena.count { arena.grads[i] = integerGrad(rank: comm.rank, element: i) }
            b.skipSync = true
            b.finish()
            let untouched = (0..<arena.count).allSatisfy { arena.grads[$0] == integerGrad(rank: comm.rank, element: $0) }
            for i in 0..<arena.count { arena.grads[i] += integerGrad(rank: comm.rank, element: i) }
            b.skipSync = false
            b.finish()
            var accumulated = true
            for p in arena.parameters {
                for i in p.offset..<(p.offset + p.count) {
                    var sum: Float = 0
                    for q in 0..<n { sum += 2 * integerGrad(rank: q, element: i) }
                    if arena.grads[i] != sum * (1 / Float(n)) { accumulated = false }
                }
            }
            b.close()
            check("\(name): average equals reference sum / \(n) (\(b.layout.buckets.count) buckets)", exact)
            check("\(name): accumulation reduces only the last micro-step", untouched && accumulated)
        }
    }
    // Random gradients: hierarchical and plain agree (sum orders may differ by rounding for 3+ ranks).
    var results: [ReduceMode: [Float]] = [:]
    for mode in ReduceMode.allCases {
        let arenas = mode == .hierarchical ? NodeSharedArenas.make(arena: arena, communicator: comm) : nil
        defer { arenas?.close() }
        let b = GradientBuckets(arena: arena, communicator: comm, bucketBytes: 8192, mode: mode, arenas: arenas)
        let rng = Philox(seed: 99)
        for i in 0..<arena.count { arena.grads[i] = rng.normal(stream: UInt64(comm.rank), step: 0, index: UInt64(i)) }
        b.finish()
        results[mode] = Array(arena.grads)
        b.close()
    }
    // Summation error bound: |difference| <= (ranks - 1) x eps x sum of |contributions| / ranks.
    let h = results[.hierarchical]!, m = results[.mpi]!
    let rng = Philox(seed: 99)
    var worst: Float = 0
    for p in arena.parameters {
        for i in p.offset..<(p.offset + p.count) {
            var magnitude: Float = 0
            for q in 0..<n { magnitude += abs(rng.normal(stream: UInt64(q), step: 0, index: UInt64(i))) }
            worst = max(worst, abs(h[i] - m[i]) / (magnitude / Float(n) * Float.ulpOfOne))
        }
    }
    check("hierarchical == plain on random gradients (worst difference \(worst) x eps x mean |g|)",
          worst <= Float(max(1, n - 1)))
    if comm.rank == 0 {
        print("  \(comm.size) ranks on \(comm.nodeCount) node(s), \(comm.localSize) ranks on this node")
    }
}

/// A 36 MB arena, large enough for the hierarchical reduction to share the arenas in place. The
/// gradients repeat with period 97 so that filling and checking are cheap table look-ups.
func bucketsLarge() {
    let arena = ParameterArena()
    arena.register("embedding", Shape(10_001, 511), initializer: .zeros)
    arena.register("bias", Shape(77), initializer: .zeros)
    arena.register("matrix", Shape(4_099, 1_023), initializer: .zeros)
    arena.register("scale", Shape(5), initializer: .zeros)
    arena.seal()
    let n = comm.size
    let mine = (0..<97).map { integerGrad(rank: comm.rank, element: $0) }
    let expected = (0..<97).map { e -> Float in
        var sum: Float = 0
        for q in 0..<n { sum += integerGrad(rank: q, element: e) }
        return sum * (1 / Float(n))
    }
    for (mode, overlap) in [(ReduceMode.hierarchical, CrossNodeOverlap.inline), (.mpi, .inline), (.hierarchical, .thread)] {
        let arenas = mode == .hierarchical ? NodeSharedArenas.make(arena: arena, communicator: comm) : nil
        defer { arenas?.close() }
        let b = GradientBuckets(arena: arena, communicator: comm, bucketBytes: 4 << 20, mode: mode, arenas: arenas,
                                overlap: overlap)
        let g = arena.grads
        for i in 0..<g.count { g[i] = mine[i % 97] }
        for p in arena.parameters.reversed() { b.markReady(p) }
        b.finish()
        let exact = arena.parameters.allSatisfy { p in
            (p.offset..<(p.offset + p.count)).allSatisfy { g[$0] == expected[$0 % 97] }
        }
        let inPlace = b.reducesInPlace
        b.close()
        check("\(mode)\(overlap == .thread ? ", overlap: thread" : "") over a \((arena.count * 4) >> 20) MB arena"
              + "\(inPlace ? " (arenas shared in place)" : ""): average equals reference", exact)
        if mode == .hierarchical { check("hierarchical shares large arenas in place", inPlace || comm.localSize == 1) }
    }
}

/// The sharded optimizer (ZeRO stage 1 within a node, `NodeOptimizerShard`): the node's ranks own
/// disjoint slices covering every bucket; after `finish` a rank's gradients hold the averages in its
/// slices and zeros elsewhere; the owned squares add up to the squared norm; `publish` makes every
/// replica equal; `gatherOwned` gives rank 0 everyone's slices.
func sharded() {
    let arena = makeArena()
    let n = comm.size
    // One mapping of the arenas for every shard and buckets below, as a trainer makes it.
    let arenas = NodeSharedArenas.make(arena: arena, communicator: comm, values: true)
    defer { arenas?.close() }
    for bucketBytes in [1 << 20, 4096] {
        let shard = NodeOptimizerShard(layout: BucketLayout(arena: arena, bucketBytes: bucketBytes), arenas: arenas)
        let even = (comm as? MPICommunicator)?.nodesEven ?? true
        let expectSharded = comm.localSize > 1 && even
        check("sharded with \(bucketBytes) B buckets: granted on nodes of as many ranks each, several per node "
              + "(\(comm.nodeCount) node(s) of \(comm.localSize)\(even ? "" : " or other") rank(s))",
              (shard != nil) == expectSharded)
        guard let shard else { continue }
        let b = GradientBuckets(arena: arena, communicator: comm, bucketBytes: bucketBytes, arenas: arenas, shard: shard)
        // Ownership: every rank's ranges, gathered, cover every bucket's elements exactly once.
        var owner = [Int64](repeating: 0, count: arena.count)
        for r in shard.ranges { for i in r { owner[i] += 1 } }
        owner.withUnsafeMutableBufferPointer { comm.allReduce($0, op: .sum) }
        let covered = b.layout.buckets.allSatisfy { $0.elements.allSatisfy { owner[$0] == Int64(comm.nodeCount) } }
        check("sharded, \(bucketBytes) B buckets: the \(comm.localSize) ranks of each node own every bucket element "
              + "exactly once", covered)

        var squaresOK = true, averagesOK = true
        // The sums between nodes inline and on their own thread (distributed.overlap) give the same.
        let threaded = GradientBuckets(arena: arena, communicator: comm, bucketBytes: bucketBytes, arenas: arenas,
                                       shard: shard, overlap: .thread)
        for (step, buckets) in [(0, b), (1, b), (0, threaded), (1, threaded)] {
            for i in 0..<arena.count { arena.grads[i] = integerGrad(rank: comm.rank + step, element: i) }
            for p in arena.parameters.reversed() where p.index != 4 { buckets.markReady(p) }
            buckets.finish()
            var mine = [Bool](repeating: false, count: arena.count)
            for r in shard.ranges { for i in r { mine[i] = true } }
            var expectedSquares = 0.0
            for bucket in b.layout.buckets {
                for i in bucket.elements {
                    var sum: Float = 0
                    for q in 0..<n { sum += integerGrad(rank: q + step, element: i) }
                    let average = sum * (1 / Float(n))
                    expectedSquares += Double(average) * Double(average)
                    if arena.grads[i] != (mine[i] ? average : 0) { averagesOK = false }
                }
            }
            let total = comm.allReduce(shard.takeOwnedGradientSquares(), op: .sum)
            // sumOfSquares accumulates blocks in Float before Double, as the replicated norm does.
            if abs(total - expectedSquares) > 1e-6 * expectedSquares { squaresOK = false }
        }
        threaded.close()
        check("sharded, \(bucketBytes) B buckets: owned averages exact, zeros elsewhere (overlap inline and thread)",
              averagesOK)
        check("sharded, \(bucketBytes) B buckets: owned squares sum to the squared norm", squaresOK)

        // Publishing: each rank writes value f(local rank, i) into what it owns; afterwards every replica
        // holds the owner's values everywhere (local rank r owns the same elements on every node).
        var writer = [Int64](repeating: -1, count: arena.count)
        for r in shard.ranges {
            for i in r { arena.values[i] = Float(comm.localRank * 1000 + i % 997) }
            shard.publish(r)
        }
        shard.endPublishing()
        for r in shard.ranges { for i in r { writer[i] = Int64(comm.localRank) } }
        writer.withUnsafeMutableBufferPointer { comm.allReduce($0, op: .max) }
        let replicas = b.layout.buckets.allSatisfy { bucket in
            bucket.elements.allSatisfy { arena.values[$0] == Float(Int(writer[$0]) * 1000 + $0 % 997) }
        }
        check("sharded, \(bucketBytes) B buckets: after publishing, every replica holds each owner's values", replicas)

        // Gathering a moment-like buffer: each node's local rank 0 ends with every owner's values, the
        // others keep theirs.
        let moment = UnsafeMutableBufferPointer<Float>.allocate(capacity: arena.count)
        defer { moment.deallocate() }
        for i in 0..<arena.count { moment[i] = -1 }
        for r in shard.ranges { for i in r { moment[i] = Float(comm.localRank * 1000 + i % 991) } }
        shard.gatherOwned(into: moment)
        let gathered = b.layout.buckets.allSatisfy { bucket in
            bucket.elements.allSatisfy { i in
                comm.localRank == 0 ? moment[i] == Float(Int(writer[i]) * 1000 + i % 991)
                    : moment[i] == (writer[i] == Int64(comm.localRank) ? Float(comm.localRank * 1000 + i % 991) : -1)
            }
        }
        check("sharded, \(bucketBytes) B buckets: local rank 0 gathers every owner's slices", gathered)
        b.close()
        shard.close()
    }
}

/// Gradient of global micro-batch m: values of very different magnitudes so that the summation order
/// shows in the last bits.
func microBatchGradient(_ m: Int, count: Int) -> [Float] {
    let rng = Philox(seed: 2024)
    let scale = Float(1 << (m % 7)) / 8
    return (0..<count).map { i in rng.normal(stream: UInt64(m), step: 0, index: UInt64(i)) * scale + (i % 3 == 0 ? 1e3 : 0) }
}

func deterministic() {
    let count = 10_007, k = 12
    let reducer = DeterministicReducer(communicator: comm, count: count, microBatches: k)
    var output = [Float](repeating: .nan, count: count)
    for step in 0..<2 {
        for m in reducer.localMicroBatches {
            let g = microBatchGradient(m + step * k, count: count)
            g.withUnsafeBufferPointer { reducer.store($0, microBatch: m) }
        }
        output.withUnsafeMutableBufferPointer { reducer.reduce(into: $0) }
        // Buffers that outlive the closures (a pointer escaping withUnsafeBufferPointer dangles in release).
        let all = (0..<k).map { m -> UnsafeMutableBufferPointer<Float> in
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            _ = p.initialize(from: microBatchGradient(m + step * k, count: count))
            return p
        }
        defer { all.forEach { $0.deallocate() } }
        let reference = DeterministicReducer.reference(all.map { UnsafeBufferPointer($0) }, count: count)
        let same = zip(output, reference).allSatisfy { $0.bitPattern == $1.bitPattern }
        check("deterministic step \(step): bit-identical to the global-order fold on one rank", same)
    }
    let sum = output.withUnsafeBytes { FNV1a64.wordwise($0) }
    if comm.rank == 0 { print("DETERMINISTIC-CHECKSUM 0x\(String(sum, radix: 16))") }
}

func sampler() {
    let n = comm.size
    for policy in LastBatchPolicy.allCases {
        for count in [1003, 960] {
            let s = Sampler(count: count, globalBatch: 24, seed: 7, lastBatch: policy)
            var ok = true
            var seen = [Int](repeating: 0, count: count)
            for epoch in [0, 3] {
                seen = [Int](repeating: 0, count: count)
                for batch in 0..<s.batchesPerEpoch {
                    let cursor = s.cursor(atEpoch: epoch) + batch * 24
                    let mine = s.indices(forBatchAt: cursor, rank: comm.rank, worldSize: n).map(Int64.init)
                    var gathered = [Int64](repeating: -1, count: 24)
                    mine.withUnsafeBytes { m in gathered.withUnsafeMutableBytes { comm.allGather(m, into: $0) } }
                    if gathered.map(Int.init) != s.globalBatch(at: cursor) { ok = false }
                    for i in gathered { seen[Int(i)] += 1 }
                }
                let once = seen.filter { $0 == 1 }.count
                switch policy {
                case .drop: if once != s.batchesPerEpoch * 24 || seen.contains(where: { $0 > 1 }) { ok = false }
                case .wrap: if seen.contains(0) || seen.contains(where: { $0 > 2 }) { ok = false }
                }
            }
            check("sampler \(policy) count \(count): ranks' parts make the rank-independent global batch, "
                  + "each sample once per epoch", ok)
        }
    }
}

/// Rank size-1 skips the 3rd all-reduce and sleeps: the watchdog of the others must abort the job.
func watchdogSkip() {
    (comm as! MPICommunicator).startWatchdog(.init(minimumSeconds: 2))
    var x: [Float] = [1]
    for i in 0..<6 {
        if i == 2 && comm.rank == comm.size - 1 {
            fputs("rank \(comm.rank): skipping all-reduce \(i)\n", stderr)
            sleep(60)
        }
        x.withUnsafeMutableBufferPointer { comm.allReduce($0, op: .sum) }
    }
    check("watchdog-skip should never finish", false)
    finishScenario()
}

/// Rank size-1 never finishes backward: the others wait in gradient bucket 0.
func watchdogBucket() {
    (comm as! MPICommunicator).startWatchdog(.init(minimumSeconds: 2))
    let arena = makeArena()
    let b = GradientBuckets(arena: arena, communicator: comm, bucketBytes: 4096)
    for _ in 0..<3 {
        b.finish()
    }
    if comm.rank == comm.size - 1 {
        fputs("rank \(comm.rank): skipping the gradient reduction\n", stderr)
        sleep(60)
    }
    b.finish()
    check("watchdog-bucket should never finish", false)
    finishScenario()
}

/// Rank 1 exits mid-run without MPI_Finalize while the others wait in an all-reduce.
func rankExit() {
    var x: [Float] = [1]
    for i in 0..<6 {
        if i == 2 && comm.rank == 1 {
            fputs("rank 1: exiting mid-run\n", stderr)
            exit(0)
        }
        x.withUnsafeMutableBufferPointer { comm.allReduce($0, op: .sum) }
    }
    check("rank-exit should never finish", false)
    finishScenario()
}

/// The last rank has another config hash: every rank throws; rank 0 reports; all exit 1.
func configMismatch() {
    let hash: UInt64 = comm.rank == comm.size - 1 ? 0xBAD : 0x600D
    do {
        try comm.verifyConsistency(configHash: hash, parameterCount: 1000, version: "0.1")
        check("config-mismatch should have thrown", false)
        finishScenario()
    } catch {
        if comm.rank == 0 { fputs("tandem: \(error)\n", stderr) }
        fflush(stderr)
        (comm as? MPICommunicator)?.shutdown()
        exit(1)
    }
}

func bench() {
    let sizes = arguments.firstIndex(of: "--sizes").map { arguments[$0 + 1].split(separator: ",").map { Int($0)! } }
    AllReduceBenchmark.run(communicator: comm, sizesMB: sizes ?? [1, 4, 16, 64, 256, 440])
    let steps = arguments.firstIndex(of: "--steps").map { Int(arguments[$0 + 1])! } ?? 3
    let tokens = arguments.firstIndex(of: "--tokens").map { Int(arguments[$0 + 1])! } ?? 128
    if arguments.contains("--overlap") { AllReduceBenchmark.runOverlap(communicator: comm, tokens: tokens, steps: steps) }
}

switch scenario {
case "basics": basics()
case "buckets": buckets()
case "buckets-large": bucketsLarge()
case "sharded": sharded()
case "deterministic": deterministic()
case "sampler": sampler()
case "watchdog-skip": watchdogSkip()
case "watchdog-bucket": watchdogBucket()
case "rank-exit": rankExit()
case "config-mismatch": configMismatch()
case "bench": bench()
default:
    fputs("tandem-mpi-tests: unknown scenario \(scenario)\n", stderr)
    exit(2)
}
finishScenario()
