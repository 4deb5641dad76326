import TandemKernels

// Ops that rearrange activations (TandemKernels' Layout.swift): gradients flow back unchanged.

extension Tape {
    /// The tensors side by side along their last dimension: (N, C_1), (N, C_2), ... -> (N, Σ C_i), with N
    /// the product of the other dimensions, which must agree; the result keeps the first tensor's leading
    /// dimensions.
    public func concatenateColumns(_ parts: [Tensor]) -> Tensor {
        let columns = parts.map { $0.shape[-1] }, N = parts[0].count / columns[0]
        precondition(parts.allSatisfy { $0.count / $0.shape[-1] == N }, "concatenateColumns: \(parts.map(\.shape))")
        let y = tensor(Shape(Array(parts[0].shape.dims.dropLast()) + [columns.reduce(0, +)]))
        let inputs = parts.map { UnsafePointer($0.data) }, grads = parts.map(\.grad)
        record(inputs: parts, forward: {
            concatenateColumnsForward(out: y.data, inputs: inputs, columns: columns, N: N)
        }, backward: {
            concatenateColumnsBackward(dinputs: grads, dout: y.grad!, columns: columns, N: N)
        })
        return y
    }

    /// x (A, B, ...) -> (B, A, ...): a time-major stack of decoder steps as batch-major sequences.
    public func swapLeadingAxes(_ x: Tensor) -> Tensor {
        precondition(x.shape.rank >= 2, "swapLeadingAxes: \(x.shape)")
        let A = x.shape[0], B = x.shape[1], C = x.count / (A * B)
        let y = tensor(Shape([B, A] + Array(x.shape.dims.dropFirst(2))))
        record(inputs: [x], forward: {
            swapLeadingAxesForward(out: y.data, inp: x.data, A: A, B: B, C: C)
        }, backward: {
            if let dx = x.grad { swapLeadingAxesBackward(dinp: dx, dout: y.grad!, A: A, B: B, C: C) }
        })
        return y
    }

    /// x viewed as (N, K, C) with N = `rows` -> (N, C) = the sum over the K blocks of each row, given the
    /// result's `shape` (N C elements): a bidirectional recurrent layer's directions added, outputs
    /// (B T, 2, H) -> (B, T, H) or final states (L, 2, B H) -> (L, B, H).
    public func sumBlocks(_ x: Tensor, rows N: Int, blocks K: Int, shape: Shape) -> Tensor {
        precondition(N >= 1 && K >= 1 && x.count == K * shape.count && shape.count % N == 0,
                     "sumBlocks: \(x.shape) as \(N) rows of \(K) blocks into \(shape)")
        let C = shape.count / N
        let y = tensor(shape)
        record(inputs: [x], forward: {
            sumBlocksForward(out: y.data, inp: x.data, N: N, K: K, C: C)
        }, backward: {
            if let dx = x.grad { sumBlocksBackward(dinp: dx, dout: y.grad!, N: N, K: K, C: C) }
        })
        return y
    }

    /// Images from channels-first to channels-last: pixels (B, C, H, W), as pixel_values arrive, ->
    /// (B, H, W, C), what `conv2d` reads. The output needs a gradient only when `pixels` does.
    public func channelsLast(_ pixels: Tensor) -> Tensor {
        precondition(pixels.shape.rank == 4, "channelsLast: pixels \(pixels.shape) are not (B, C, H, W)")
        let B = pixels.shape[0], C = pixels.shape[1], H = pixels.shape[2], W = pixels.shape[3]
        let y = tensor(Shape(B, H, W, C), requiresGrad: pixels.requiresGrad)
        record(inputs: [pixels], forward: {
            channelsLastForward(out: y.data, inp: pixels.data, B: B, C: C, HW: H * W)
        }, backward: {
            if let dx = pixels.grad { channelsLastBackward(dinp: dx, dout: y.grad!, B: B, C: C, HW: H * W) }
        })
        return y
    }
}
