/// The dimensions of a dense, row-major Float32 tensor, outermost first: `[B, T, C]`.
public struct Shape: Hashable, Codable, CustomStringConvertible, Sendable {
    /// The size of each dimension, outermost first.
    public var dims: [Int]

    public init(_ dims: [Int]) {
        precondition(dims.allSatisfy { $0 >= 0 }, "negative dimension in shape \(dims)")
        self.dims = dims
    }

    public init(_ dims: Int...) { self.init(dims) }

    /// The number of elements: the product of the dimensions (1 for a scalar).
    public var count: Int { dims.reduce(1, *) }
    public var rank: Int { dims.count }
    public subscript(i: Int) -> Int { dims[i < 0 ? dims.count + i : i] }
    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }
}
