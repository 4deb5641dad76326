/// One gradient bucket: a contiguous slice of the gradient arena holding whole parameters.
public struct GradientBucket: Equatable, Sendable {
    /// Position in reduction order (bucket 0 holds the last-registered parameters).
    public let index: Int
    /// Registration indices of the parameters in the bucket.
    public let parameters: Range<Int>
    /// Float offsets in the gradient arena, from the first parameter's offset to the end of the last one
    /// (the alignment padding between them included: it is never written and stays zero).
    public let elements: Range<Int>

    /// Bytes of gradients the bucket reduces.
    public var byteCount: Int { elements.count * MemoryLayout<Float>.stride }
}

/// The split of the gradient arena into buckets of about `bucketBytes`, in REVERSE registration order:
/// backward finishes the last-registered parameters first, so bucket 0 is complete first and its
/// reduction overlaps the rest of backward (PyTorch DDP's reducer does the same). A parameter never
/// straddles two buckets; one larger than `bucketBytes` is a bucket of its own.
public struct BucketLayout: Equatable, Sendable {
    public let buckets: [GradientBucket]
    /// `bucketOfParameter[p.index]` is the bucket holding parameter p.
    public let bucketOfParameter: [Int]

    /// Lays out buckets over parameters given as (offset, count) in registration order.
    public init(parameters: [(offset: Int, count: Int)], bucketBytes: Int) {
        precondition(bucketBytes > 0, "bucketBytes must be positive")
        var buckets: [GradientBucket] = []
        var owner = [Int](repeating: 0, count: parameters.count)
        var hi = parameters.count   // current bucket = parameters lo..<hi, filled downwards
        var lo = hi
        func close() {
            guard lo < hi else { return }
            let end = parameters[hi - 1].offset + parameters[hi - 1].count
            let b = GradientBucket(index: buckets.count, parameters: lo..<hi, elements: parameters[lo].offset..<end)
            for p in lo..<hi { owner[p] = b.index }
            buckets.append(b)
            hi = lo
        }
        while lo > 0 {
            let p = lo - 1
            if lo < hi {
                let end = parameters[hi - 1].offset + parameters[hi - 1].count
                if (end - parameters[p].offset) * MemoryLayout<Float>.stride > bucketBytes { close() }
            }
            lo = p
        }
        close()
        self.buckets = buckets
        self.bucketOfParameter = owner
    }

    /// Lays out buckets over the parameters of `arena`.
    public init(arena: ParameterArena, bucketBytes: Int) {
        self.init(parameters: arena.parameters.map { ($0.offset, $0.count) }, bucketBytes: bucketBytes)
    }

    /// The largest bucket, in Float elements.
    public var maxElements: Int { buckets.map(\.elements.count).max() ?? 0 }
}
