import TandemKernels

// Sequence-level ops of image encoders besides the blocks: [CLS] in front of the patches without
// learned positions (BEiT, whose positions are usually relative biases in the attention), and the mean
// of the patch tokens (BEiT's mean pooling).

extension Tape {
    /// The learned tokens (each (1, 1, C), in order) in front of every image's patch embeddings x (B, NP, C),
    /// giving (B, NP + K, C): `prependTokens(_:tokens:positions:)` with no positions added.
    public func prependTokens(_ x: Tensor, tokens: [Parameter]) -> Tensor {
        let B = x.shape[0], NP = x.shape[1], C = x.shape[2], K = tokens.count
        precondition(x.shape.rank == 3 && K > 0 && tokens.allSatisfy { $0.count == C },
                     "prependTokens: \(x.shape) with tokens \(tokens.map(\.shape))")
        let y = tensor(Shape(B, NP + K, C))
        let t = tokens.map { UnsafePointer($0.value) }, dt = tokens.map(\.grad)
        let zeros = [Float](repeating: 0, count: (NP + K) * C)
        record(parameters: tokens, inputs: [x], forward: {
            zeros.withUnsafeBufferPointer {
                prependTokensForward(out: y.data, inp: x.data, tokens: t, positions: $0.baseAddress!, B: B, NP: NP, C: C)
            }
        }, backward: {
            prependTokensBackward(dinp: x.grad, dtokens: dt, dpositions: nil, dout: y.grad!, B: B, NP: NP, C: C)
        })
        return y
    }

    /// The mean of rows first..<T of every sequence of x (B, T, C), giving (B, C) (BEiT's `BeitPooler`
    /// with `use_mean_pooling`: first = 1 leaves [CLS] out).
    public func meanRows(_ x: Tensor, from first: Int) -> Tensor {
        let B = x.shape[0], T = x.shape[1], C = x.shape[2]
        precondition(x.shape.rank == 3 && first >= 0 && first < T, "meanRows: rows \(first)... of \(x.shape)")
        let y = tensor(Shape(B, C))
        record(inputs: [x], forward: {
            meanRowsForward(out: y.data, inp: x.data, first: first, B: B, T: T, C: C)
        }, backward: {
            if let dx = x.grad { meanRowsBackward(dinp: dx, dout: y.grad!, first: first, B: B, T: T, C: C) }
        })
        return y
    }
}
