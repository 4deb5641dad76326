/// The reduction of `distributed.deterministic: true`: the averaged gradient is the fixed-order sum over
/// GLOBAL micro-batch index, `(((g_0 + g_1) + g_2) + ... + g_{K-1}) / K`, whichever ranks computed the
/// micro-batches, so 1, 2, 3 or 4 ranks (any count dividing K) give bit-identical gradients for the same
/// global batch split into the same K micro-batches. The price: each rank keeps K/size gradient copies.
///
/// Rank r computes the contiguous global micro-batches `localMicroBatches` = [r K/size, (r+1) K/size)
/// (the sampler gives rank r the r-th contiguous part of the global batch, so micro-batch j of rank r is
/// global micro-batch r K/size + j). An all-to-all gives rank r slice r of every micro-batch gradient; it
/// folds the K slices in global order; an all-gather returns the whole result to every rank.
///
/// Trainer integration, per optimizer step (every rank):
///
///     for (j, m) in reducer.localMicroBatches.enumerated() {   // m: global micro-batch index
///         arena.zeroGrads()
///         forward/backward of micro-batch j of this rank (mean loss over the micro-batch)
///         reducer.store(UnsafeBufferPointer(arena.grads), microBatch: m)
///     }
///     reducer.reduce(into: arena.grads)        // collective; no GradientBuckets in this mode
///     optimizer.step(arena)
///
/// Bit-identity also needs each micro-batch gradient itself to be bit-identical across runs: the same
/// kernels, the same BLAS thread count per rank and the same dropout/masking draws (Philox keyed by the
/// global sample index, not the rank).
public final class DeterministicReducer {
    public let communicator: any Communicator
    /// Gradient elements per micro-batch.
    public let count: Int
    /// K, micro-batches per optimizer step over all ranks.
    public let microBatches: Int
    /// Global indices of the micro-batches this rank computes.
    public let localMicroBatches: Range<Int>
    /// Elements of the slice each rank folds (count / size rounded up).
    private let chunk: Int
    private let perRank: Int
    /// (size, K/size, chunk): block q is what rank q receives.
    private let send: UnsafeMutableBufferPointer<Float>
    /// (size, K/size, chunk) = (K, chunk): micro-batch slices in global order.
    private let receive: UnsafeMutableBufferPointer<Float>
    /// (chunk): this rank's folded slice.
    private let folded: UnsafeMutableBufferPointer<Float>
    /// (size, chunk): the gathered result.
    private let gathered: UnsafeMutableBufferPointer<Float>
    private var stored: [Bool]

    /// `count` gradient elements per micro-batch (usually `arena.grads.count`); `microBatches` = K, which
    /// the communicator's size must divide.
    public init(communicator: any Communicator, count: Int, microBatches: Int) {
        let size = communicator.size
        precondition(microBatches % size == 0,
                     "deterministic mode: \(microBatches) micro-batches per step cannot be split over \(size) ranks")
        self.communicator = communicator
        self.count = count
        self.microBatches = microBatches
        perRank = microBatches / size
        localMicroBatches = (communicator.rank * perRank)..<((communicator.rank + 1) * perRank)
        chunk = max(16, ((count + size - 1) / size + 15) / 16 * 16)
        precondition(perRank * chunk * 4 <= Int(Int32.max), "deterministic mode: gradient slices too large for MPI")
        send = .init(start: AlignedMemory.allocate(Float.self, count: size * perRank * chunk), count: size * perRank * chunk)
        receive = .init(start: AlignedMemory.allocate(Float.self, count: microBatches * chunk), count: microBatches * chunk)
        folded = .init(start: AlignedMemory.allocate(Float.self, count: chunk), count: chunk)
        gathered = .init(start: AlignedMemory.allocate(Float.self, count: size * chunk), count: size * chunk)
        stored = [Bool](repeating: false, count: perRank)
    }

    deinit {
        AlignedMemory.deallocate(send.baseAddress!)
        AlignedMemory.deallocate(receive.baseAddress!)
        AlignedMemory.deallocate(folded.baseAddress!)
        AlignedMemory.deallocate(gathered.baseAddress!)
    }

    /// Keeps a copy of the gradient of global micro-batch `microBatch` (one of `localMicroBatches`).
    public func store(_ gradients: UnsafeBufferPointer<Float>, microBatch: Int) {
        precondition(localMicroBatches.contains(microBatch),
                     "rank \(communicator.rank) computes micro-batches \(localMicroBatches), not \(microBatch)")
        precondition(gradients.count >= count, "store: \(gradients.count) gradients, expected \(count)")
        let j = microBatch - localMicroBatches.lowerBound
        for q in 0..<communicator.size {
            let lo = min(count, q * chunk), hi = min(count, (q + 1) * chunk)
            let block = send.baseAddress! + (q * perRank + j) * chunk
            block.update(from: gradients.baseAddress! + lo, count: hi - lo)
        }
        stored[j] = true
    }

    /// Collective: `output[0..<count]` = (((g_0 + g_1) + g_2) + ...) / K over all K micro-batches.
    public func reduce(into output: UnsafeMutableBufferPointer<Float>) {
        precondition(!stored.contains(false),
                     "rank \(communicator.rank): reduce before storing all of micro-batches \(localMicroBatches)")
        precondition(output.count >= count)
        communicator.allToAll(UnsafeRawBufferPointer(send), into: UnsafeMutableRawBufferPointer(receive))
        let acc = folded.baseAddress!
        let r = receive.baseAddress!
        acc.update(from: r, count: chunk)
        for m in 1..<microBatches {
            let g = r + m * chunk
            for i in 0..<chunk { acc[i] += g[i] }
        }
        let k = Float(microBatches)
        for i in 0..<chunk { acc[i] /= k }
        communicator.allGather(UnsafeRawBufferPointer(folded),
                               into: UnsafeMutableRawBufferPointer(gathered))
        output.baseAddress!.update(from: gathered.baseAddress!, count: count)
        for j in stored.indices { stored[j] = false }
    }

    /// The same result computed on one rank from all K gradients: the reference the tests compare with.
    public static func reference(_ gradients: [UnsafeBufferPointer<Float>], count: Int) -> [Float] {
        var acc = Array(gradients[0].prefix(count))
        for g in gradients.dropFirst() { for i in 0..<count { acc[i] += g[i] } }
        let k = Float(gradients.count)
        return acc.map { $0 / k }
    }
}
