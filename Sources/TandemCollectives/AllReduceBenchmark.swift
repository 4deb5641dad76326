import Foundation

/// `tandem bench allreduce`: times the gradient all-reduce in both modes and the cost of reducing
/// gradients during a simulated backward pass.
public enum AllReduceBenchmark {
    /// One size of the sweep: seconds per full-arena reduction (slowest rank, best of the repetitions:
    /// the minimum is the figure least disturbed by other processes on a shared machine).
    public struct Row: Sendable {
        public let megabytes: Int
        public let hierarchicalSeconds: Double
        public let mpiSeconds: Double
        /// Plain time / hierarchical time.
        public var speedup: Double { mpiSeconds / hierarchicalSeconds }
    }

    /// For each size (MB of Float gradients, laid out like BERT weights of 768 x 768), averages the whole
    /// arena over all ranks through `GradientBuckets` in hierarchical and plain mode and logs time and
    /// algorithm bandwidth (bytes / time) side by side with their ratio. Collective.
    @discardableResult
    public static func run(communicator: any Communicator, sizesMB: [Int] = [1, 4, 16, 64, 256, 440],
                           bucketBytes: Int = 25 << 20, repetitions: Int = 3,
                           log: (String) -> Void = { print($0) }) -> [Row] {
        let root = communicator.rank == 0
        if root {
            log("all-reduce of Float gradients over \(communicator.size) ranks on \(communicator.nodeCount) node(s), "
                + "buckets of \(bucketBytes >> 20) MB; time of the slowest rank, best of \(repetitions)")
            log(pad("MB", 6) + pad("hier ms", 10) + pad("hier GB/s", 11) + pad("mpi ms", 10) + pad("mpi GB/s", 10)
                + pad("mpi/hier", 10))
        }
        var rows: [Row] = []
        for mb in sizesMB {
            let arena = makeArena(bytes: mb << 20, rank: communicator.rank)
            var seconds: [ReduceMode: Double] = [:]
            for mode in [ReduceMode.hierarchical, .mpi] {
                let arenas = mode == .hierarchical ? NodeSharedArenas.make(arena: arena, communicator: communicator) : nil
                defer { arenas?.close() }
                let buckets = GradientBuckets(arena: arena, communicator: communicator, bucketBytes: bucketBytes,
                                              mode: mode, arenas: arenas)
                var times: [Double] = []
                for rep in 0...repetitions {
                    communicator.barrier()
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    buckets.finish()
                    let t = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                    if rep > 0 { times.append(communicator.allReduce(t, op: .max)) }
                }
                buckets.close()
                seconds[mode] = times.min()!
            }
            let row = Row(megabytes: mb, hierarchicalSeconds: seconds[.hierarchical]!, mpiSeconds: seconds[.mpi]!)
            rows.append(row)
            if root {
                let bytes = Double(mb << 20)
                log(pad("\(mb)", 6) + pad(fmt(row.hierarchicalSeconds * 1e3, 2), 10)
                    + pad(fmt(bytes / row.hierarchicalSeconds / 1e9, 2), 11) + pad(fmt(row.mpiSeconds * 1e3, 2), 10)
                    + pad(fmt(bytes / row.mpiSeconds / 1e9, 2), 10) + pad(fmt(row.speedup, 2) + "x", 10))
            }
        }
        return rows
    }

    /// The overlap comparison: a backward pass simulated by two sgemms per weight matrix (dW = X^T dY and
    /// dX = dY W^T for `tokens` rows), in reverse registration order, calling `markReady` after each
    /// parameter, over a BERT-base-shaped arena (110 M parameters, 440 MB of gradients). Logs the step
    /// time and the fraction of it added by the gradient reduction compared with the same backward
    /// without reduction. Collective.
    public static func runOverlap(communicator: any Communicator, tokens: Int = 128, steps: Int = 3,
                                  mode: ReduceMode = .hierarchical, log: (String) -> Void = { print($0) }) {
        let arena = bertBaseArena()
        let widest = arena.parameters.map { $0.shape.dims.max() ?? 1 }.max() ?? 1
        let x = AlignedMemory.allocate(Float.self, count: tokens * widest)      // (T, max dim)
        let dy = AlignedMemory.allocate(Float.self, count: tokens * widest)     // (T, max dim)
        let dx = AlignedMemory.allocate(Float.self, count: tokens * widest)     // (T, max dim)
        defer { AlignedMemory.deallocate(x); AlignedMemory.deallocate(dy); AlignedMemory.deallocate(dx) }
        for i in 0..<(tokens * widest) { x[i] = Float(i % 7) * 0.01; dy[i] = Float(i % 5) * 0.01 }

        func step(_ buckets: GradientBuckets) -> (total: Double, wait: Double) {
            communicator.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            for p in arena.parameters.reversed() {
                let dims = p.shape.dims
                if dims.count == 2 {
                    let (r, c) = (dims[0], dims[1])
                    // dW (R, C) += X^T (R, T) . dY (T, C); dX (T, R) = dY (T, C) . W^T (C, R)
                    BLAS.sgemm(.transpose, .none, m: r, n: c, k: tokens, a: x, lda: r, b: dy, ldb: c, beta: 1,
                               c: p.grad, ldc: c)
                    BLAS.sgemm(.none, .transpose, m: tokens, n: r, k: c, a: dy, lda: c, b: p.value, ldb: c,
                               c: dx, ldc: r)
                } else {
                    for i in 0..<p.count { p.grad[i] += 1e-3 }
                }
                buckets.markReady(p)
            }
            buckets.finish()
            let total = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            return (communicator.allReduce(total, op: .max), communicator.allReduce(buckets.lastWaitSeconds, op: .max))
        }

        if communicator.rank == 0 {
            log("overlap: BERT-base-shaped gradients (\(arena.parameterCount / 1_000_000) M parameters), backward "
                + "simulated by sgemms over \(tokens) tokens, \(mode) reduction; configurations alternate, "
                + "best of \(steps) steps (the machine is shared)")
            log(pad("reduction", 22) + pad("step ms", 10) + pad("finish ms", 11) + pad("added by reduction", 20))
        }
        // false: the same backward with no reduction (skipSync), the baseline.
        let configurations = [false, true]
        let arenas = mode == .hierarchical ? NodeSharedArenas.make(arena: arena, communicator: communicator) : nil
        defer { arenas?.close() }
        let buckets = configurations.map { reducing in
            let b = GradientBuckets(arena: arena, communicator: communicator, mode: mode, arenas: arenas)
            b.skipSync = !reducing
            return b
        }
        var best = [(total: Double, wait: Double)](repeating: (.infinity, .infinity), count: buckets.count)
        for round in 0...steps {
            for (c, b) in buckets.enumerated() {
                let r = step(b)
                if round > 0 && r.total < best[c].total { best[c] = r }
            }
        }
        for b in buckets { b.close() }
        let computeOnly = best[0].total
        if communicator.rank == 0 {
            for (c, reducing) in configurations.enumerated() {
                let added = reducing ? fmt(100 * (best[c].total - computeOnly) / best[c].total, 1) + "%" : "-"
                log(pad(reducing ? "during backward" : "none", 22) + pad(fmt(best[c].total * 1e3, 1), 10)
                    + pad(reducing ? fmt(best[c].wait * 1e3, 1) : "-", 11) + pad(added, 20))
            }
        }
    }

    // MARK: - Arenas

    /// Parameters of 768 x 768 (the last one shorter) adding up to `bytes`, gradients filled per rank.
    static func makeArena(bytes: Int, rank: Int) -> ParameterArena {
        let arena = ParameterArena()
        var left = bytes / 4
        var i = 0
        while left > 0 {
            let n = min(left, 768 * 768)
            arena.register("p\(i)", n == 768 * 768 ? Shape(768, 768) : Shape(n), initializer: .zeros)
            left -= n
            i += 1
        }
        arena.seal()
        for j in 0..<arena.count { arena.grads[j] = Float((j &+ rank) % 13) }
        return arena
    }

    /// BERT-base's parameter shapes in registration order (embeddings, 12 layers, pooler, MLM head).
    static func bertBaseArena() -> ParameterArena {
        let arena = ParameterArena()
        let (c, f, v) = (768, 3072, 30522)
        arena.register("word", Shape(v, c), initializer: .zeros)
        arena.register("position", Shape(512, c), initializer: .zeros)
        arena.register("type", Shape(2, c), initializer: .zeros)
        arena.register("embln.w", Shape(c), initializer: .zeros)
        arena.register("embln.b", Shape(c), initializer: .zeros)
        for l in 0..<12 {
            for name in ["q", "k", "v", "o"] {
                arena.register("\(l).\(name).w", Shape(c, c), initializer: .zeros)
                arena.register("\(l).\(name).b", Shape(c), initializer: .zeros)
            }
            arena.register("\(l).ln1.w", Shape(c), initializer: .zeros)
            arena.register("\(l).ln1.b", Shape(c), initializer: .zeros)
            arena.register("\(l).up.w", Shape(f, c), initializer: .zeros)
            arena.register("\(l).up.b", Shape(f), initializer: .zeros)
            arena.register("\(l).down.w", Shape(c, f), initializer: .zeros)
            arena.register("\(l).down.b", Shape(c), initializer: .zeros)
            arena.register("\(l).ln2.w", Shape(c), initializer: .zeros)
            arena.register("\(l).ln2.b", Shape(c), initializer: .zeros)
        }
        arena.register("pooler.w", Shape(c, c), initializer: .zeros)
        arena.register("pooler.b", Shape(c), initializer: .zeros)
        arena.register("mlm.w", Shape(c, c), initializer: .zeros)
        arena.register("mlm.b", Shape(c), initializer: .zeros)
        arena.register("mlm.decoder.b", Shape(v), initializer: .zeros)
        arena.seal()
        return arena
    }
}

private func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}
