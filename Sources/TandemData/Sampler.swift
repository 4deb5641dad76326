/// What the sampler does with the final batch of an epoch when `count` is not a multiple of the global
/// batch.
public enum LastBatchPolicy: String, Sendable, CaseIterable {
    /// Skip the last `count mod G` samples of the epoch's permutation.
    case drop
    /// Fill the final partial batch with the first samples of the same epoch's permutation.
    case wrap
}

/// The order in which a sampler visits the samples of an epoch.
public enum SampleOrder {
    /// A Philox-driven Fisher–Yates permutation per epoch (the default).
    case shuffled
    /// The samples' own order every epoch (truncated backpropagation through time: chunk k of every
    /// stream in global batch k).
    case sequential
    /// `order(e)`, a permutation of 0..<count that depends only on the epoch and fixed settings (such as
    /// `LengthBucketing.order(epoch:)`, whose global batches group samples of similar length).
    case custom((Int) -> [Int])
}

/// The distributed sampler: one global order of the `count` samples per epoch (`SampleOrder`: by default
/// a permutation), a pure function of (seed, epoch) and independent of the number of ranks. Global batch
/// k of an epoch is positions [kG, (k+1)G) of the order, and rank r of W takes the contiguous part
/// [rG/W, (r+1)G/W).
///
/// The training position is a global sample cursor: the number of samples consumed since the start of
/// training over all ranks, always a multiple of G at a step boundary. Epoch e covers cursors
/// [e x samplesPerEpoch, (e+1) x samplesPerEpoch), so a run resumes exactly from a saved cursor, also on
/// another number of ranks. Within an epoch no sample is repeated or skipped, except in the final
/// partial batch (`lastBatch`).
///
/// The permutation is Fisher–Yates (Durstenfeld's in-place form) driven by Philox counters: the swap
/// partner of position i in epoch e is `Philox(seed).below(i + 1, stream: samplerStream, step: e,
/// index: i)`. The last epoch's order is cached: one sampler per thread.
public final class Sampler {
    /// Philox stream reserved for the sampler ("SAMP"), so that other users of the same seed (dropout,
    /// masking) draw unrelated numbers.
    public static let samplerStream: UInt64 = 0x5341_4D50

    public let count: Int
    public let globalBatch: Int
    public let seed: UInt64
    public let lastBatch: LastBatchPolicy
    public let order: SampleOrder
    /// Global batches per epoch.
    public let batchesPerEpoch: Int
    private var cachedEpoch = -1
    private var cachedPermutation: [Int] = []

    /// A sampler whose epoch `e` visits the samples in the order `order` gives. Batches, ranks' parts and
    /// cursors work the same for every order.
    public init(count: Int, globalBatch: Int, seed: UInt64, lastBatch: LastBatchPolicy = .drop,
                order: SampleOrder = .shuffled) {
        precondition(count > 0 && globalBatch > 0, "sampler needs samples and a positive global batch")
        precondition(lastBatch == .wrap || count >= globalBatch,
                     "\(count) samples are fewer than one global batch of \(globalBatch) (use lastBatch: .wrap)")
        self.count = count; self.globalBatch = globalBatch; self.seed = seed; self.lastBatch = lastBatch
        self.order = order
        batchesPerEpoch = lastBatch == .drop ? count / globalBatch : (count + globalBatch - 1) / globalBatch
    }

    /// Cursor advance per epoch.
    public var samplesPerEpoch: Int { batchesPerEpoch * globalBatch }

    /// The epoch a cursor falls in.
    public func epoch(ofCursor cursor: Int) -> Int { cursor / samplesPerEpoch }

    /// The index within its epoch of the global batch starting at `cursor`.
    public func batchInEpoch(ofCursor cursor: Int) -> Int { (cursor % samplesPerEpoch) / globalBatch }

    /// The cursor at which `epoch` starts.
    public func cursor(atEpoch epoch: Int) -> Int { epoch * samplesPerEpoch }

    /// The order of 0..<count for `epoch`.
    public func permutation(epoch: Int) -> [Int] {
        if epoch == cachedEpoch { return cachedPermutation }
        var p: [Int]
        switch order {
        case .custom(let f):
            p = f(epoch)
            precondition(p.count == count, "the sampler's order has \(p.count) samples, not \(count)")
        case .sequential:
            p = Array(0..<count)
        case .shuffled:
            p = Array(0..<count)
            let rng = Philox(seed: seed)
            var i = count - 1
            while i > 0 {
                let j = rng.below(i + 1, stream: Self.samplerStream, step: UInt64(epoch), index: UInt64(i))
                p.swapAt(i, j)
                i -= 1
            }
        }
        cachedEpoch = epoch
        cachedPermutation = p
        return p
    }

    /// The G sample indices of the global batch starting at `cursor` (a multiple of G).
    public func globalBatch(at cursor: Int) -> [Int] {
        indices(forBatchAt: cursor, rank: 0, worldSize: 1)
    }

    /// Rank `rank`'s G/worldSize sample indices of the global batch starting at `cursor` (a multiple of
    /// G), in permutation order.
    public func indices(forBatchAt cursor: Int, rank: Int, worldSize: Int) -> [Int] {
        precondition(cursor >= 0 && cursor % globalBatch == 0,
                     "cursor \(cursor) is not at a global batch boundary (multiple of \(globalBatch))")
        precondition(globalBatch % worldSize == 0,
                     "global batch \(globalBatch) cannot be split evenly over \(worldSize) ranks")
        precondition((0..<worldSize).contains(rank), "rank \(rank) out of range for \(worldSize) ranks")
        let part = globalBatch / worldSize
        return (0..<part).map { sample(atCursor: cursor + rank * part + $0) }
    }

    /// The dataset index at a global sample cursor (with `.wrap`, positions past the last sample of the
    /// epoch take the epoch's first samples again). Allocates nothing once the epoch's permutation is
    /// cached, so the trainer can call it every step.
    public func sample(atCursor cursor: Int) -> Int {
        let e = epoch(ofCursor: cursor)
        let position = cursor - self.cursor(atEpoch: e)
        let perm = permutation(epoch: e)
        return position < count ? perm[position] : perm[(position - count) % count]
    }
}
