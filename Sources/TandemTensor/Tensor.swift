/// A view of Float32 values in row-major order with an optional gradient buffer of the same layout.
/// It owns nothing: the memory belongs to a `ParameterArena` or an `ActivationArena`.
public struct Tensor {
    public let shape: Shape
    public let data: UnsafeMutablePointer<Float>
    /// Where backward accumulates d(loss)/d(self); nil for inputs that need no gradient.
    public let grad: UnsafeMutablePointer<Float>?

    public init(shape: Shape, data: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>?) {
        self.shape = shape; self.data = data; self.grad = grad
    }

    public var count: Int { shape.count }
    public var values: UnsafeMutableBufferPointer<Float> { .init(start: data, count: count) }
    public var requiresGrad: Bool { grad != nil }

    /// A parameter's value and gradient as a tensor.
    public init(_ p: Parameter) { self.init(shape: p.shape, data: p.value, grad: p.grad) }

    /// The same memory seen with another shape of the same element count.
    public func reshaped(_ shape: Shape) -> Tensor {
        precondition(shape.count == count, "reshape \(self.shape) -> \(shape) changes the element count")
        return Tensor(shape: shape, data: data, grad: grad)
    }
}
