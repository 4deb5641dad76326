import TandemKernels

// Ops on a sequence of token embeddings besides the transformer blocks: learned mask tokens in place of
// masked rows (SimMIM, Xie et al. 2022), and learned leading tokens with learned positions ([CLS],
// DeiT's distillation token).

extension Tape {
    /// SimMIM's masking of patch embeddings: y = x (1 - m) + token m, with x (B, NP, C), the patch mask
    /// `mask` (B, NP) holding 1 for masked patches and 0 elsewhere (filled by the caller), and the learned
    /// token (1, 1, C) (HF `ViTEmbeddings.mask_token`). With an all-zero mask y equals x.
    public func maskTokens(_ x: Tensor, mask: Tensor, token: Parameter) -> Tensor {
        let C = x.shape[-1], N = x.count / C
        precondition(mask.count == N && token.count == C, "maskTokens: \(x.shape), mask \(mask.shape), token \(token.shape)")
        let y = tensor(x.shape)
        let t = token.value, dt = token.grad
        record(parameters: [token], inputs: [x], forward: {
            maskTokensForward(out: y.data, inp: x.data, mask: mask.data, token: t, N: N, C: C)
        }, backward: {
            maskTokensBackward(dinp: x.grad, dtoken: dt, dout: y.grad!, mask: mask.data, N: N, C: C)
        })
        return y
    }

    /// HF `ViTEmbeddings` after the patches: the class token (1, 1, C) put in front of every image's
    /// patch embeddings x (B, NP, C), and the learned positions (1, NP + 1, C) added, giving (B, NP + 1, C).
    public func prependClassToken(_ x: Tensor, token: Parameter, positions: Parameter) -> Tensor {
        prependTokens(x, tokens: [token], positions: positions)
    }

    /// `prependClassToken` for K leading tokens (DeiT's `DeiTEmbeddings`: [CLS] then the distillation
    /// token): each (1, 1, C) token in order in front of the patch embeddings x (B, NP, C), and the learned
    /// positions (1, NP + K, C) added, giving (B, NP + K, C).
    public func prependTokens(_ x: Tensor, tokens: [Parameter], positions: Parameter) -> Tensor {
        let B = x.shape[0], NP = x.shape[1], C = x.shape[2], K = tokens.count
        precondition(K > 0 && tokens.allSatisfy { $0.count == C } && positions.count == (NP + K) * C,
                     "prependTokens: \(x.shape) with tokens \(tokens.map(\.shape)) and positions \(positions.shape)")
        let y = tensor(Shape(B, NP + K, C))
        let t = tokens.map { UnsafePointer($0.value) }, dt = tokens.map(\.grad), p = positions.value, dp = positions.grad
        record(parameters: tokens + [positions], inputs: [x], forward: {
            prependTokensForward(out: y.data, inp: x.data, tokens: t, positions: p, B: B, NP: NP, C: C)
        }, backward: {
            prependTokensBackward(dinp: x.grad, dtokens: dt, dpositions: dp, dout: y.grad!, B: B, NP: NP, C: C)
        })
        return y
    }

    /// y = scale x + table[positions[n]] for the rows n of x (N, C): token embeddings scaled by √C plus fixed
    /// position encodings (Marian's `embed_tokens(ids) * embed_scale + embed_positions(...)`). `table`
    /// (P, C) is a constant with no gradient, kept alive by the op (a model may go before its tape);
    /// `positions` (N) are filled by the caller, each in 0..<P.
    public func scaledPositions(_ x: Tensor, table: [Float], positions: UnsafeMutablePointer<Int32>, scale: Float) -> Tensor {
        let C = x.shape[-1], N = x.count / C
        let y = tensor(x.shape)
        record(inputs: [x], forward: {
            table.withUnsafeBufferPointer { t in
                scaledPositionsForward(out: y.data, inp: x.data, table: t.baseAddress!, positions: positions, scale: scale, N: N, C: C)
            }
        }, backward: {
            if let dx = x.grad { scaledPositionsBackward(dinp: dx, dout: y.grad!, scale: scale, count: N * C) }
        })
        return y
    }
}
