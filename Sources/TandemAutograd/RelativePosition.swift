import TandemKernels

extension Tape {
    /// BEiT's relative position bias (`BeitRelativePositionBias`): the table (R, NH) gathered by `index`
    /// (T, T), `relativePositionIndex`'s, into an (NH, Tq, T) bias for `attention(scoreBias:)`, the first
    /// Tq query rows (all T by default). Backward scatter-adds into the table, so a bias shared by every
    /// layer gets the sum of their gradients. The op keeps `index` alive.
    public func relativePositionBias(table: Parameter, index: [Int32], queries: Int? = nil) -> Tensor {
        let NH = table.shape[1], T = Int(Double(index.count).squareRoot()), Tq = queries ?? T
        precondition(table.shape.rank == 2 && T * T == index.count && Tq >= 1 && Tq <= T,
                     "relativePositionBias: table \(table.shape), \(index.count) indices, \(Tq) queries")
        precondition(index.allSatisfy { $0 >= 0 && Int($0) < table.shape[0] },
                     "relativePositionBias: an index is outside the \(table.shape[0]) rows of \(table.name)")
        let y = tensor(Shape(NH, Tq, T))
        let t = table.value, dt = table.grad
        record(parameters: [table], inputs: [], forward: {
            index.withUnsafeBufferPointer { relativePositionBiasForward(out: y.data, table: t, index: $0.baseAddress!, NH: NH, queries: Tq, T: T) }
        }, backward: {
            index.withUnsafeBufferPointer {
                relativePositionBiasBackward(dtable: dt, dout: y.grad!, index: $0.baseAddress!, NH: NH, queries: Tq, T: T)
            }
        })
        return y
    }
}
