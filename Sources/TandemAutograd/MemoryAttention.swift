import TandemKernels

// Attention of one query per sequence over a memory (TandemKernels' MemoryAttention.swift): the
// step of a recurrent decoder that reads its encoder's outputs.

extension Tape {
    /// Dot-product attention (Luong et al. 2015): context (B, C) = Σ_s p_s values_s with
    /// p = softmax_s(query · keys_s) over the positions s < lengths[b]; query (B, C), keys and values
    /// (B, S, C). `lengths` (B) are filled by the caller before `forward()` (nil: all S). The probabilities
    /// are written to `weights` rows of stride `ldw` (S floats each), memory the caller owns and that must
    /// stay unchanged until backward has run.
    public func dotAttention(query: Tensor, keys: Tensor, values: Tensor, lengths: UnsafeMutablePointer<Int32>?,
                             weights: UnsafeMutablePointer<Float>, ldw: Int) -> Tensor {
        let B = keys.shape[0], S = keys.shape[1], C = keys.shape[2]
        precondition(keys.shape.rank == 3 && values.shape == keys.shape && query.count == B * C && ldw >= S,
                     "dotAttention: query \(query.shape), keys \(keys.shape), values \(values.shape), ldw \(ldw)")
        let context = tensor(Shape(B, C))
        let work = scratch(count: S)
        record(inputs: [query, keys, values], forward: {
            dotAttentionForward(context: context.data, weights: weights, ldw: ldw, query: query.data, keys: keys.data,
                                values: values.data, lengths: lengths, B: B, S: S, C: C)
        }, backward: {
            dotAttentionBackward(dquery: query.grad, dkeys: keys.grad, dvalues: values.grad, scratch: work,
                                 dcontext: context.grad!, weights: weights, ldw: ldw, query: query.data, keys: keys.data,
                                 values: values.data, lengths: lengths, B: B, S: S, C: C)
        })
        return context
    }

    /// Additive attention (Bahdanau et al. 2015): context (B, C) = Σ_s p_s values_s with
    /// p = softmax_s(v · tanh(query + keys_s) + vBias) over the positions s < lengths[b]; query (B, A) and
    /// keys (B, S, A) are the already projected query and keys, v (A) or (1, A) and vBias (1) the score
    /// layer's weight and bias (nil: none), values (B, S, C). `lengths` and `weights` as in `dotAttention`.
    public func additiveAttention(query: Tensor, keys: Tensor, v: Parameter, vBias: Parameter?, values: Tensor,
                                  lengths: UnsafeMutablePointer<Int32>?, weights: UnsafeMutablePointer<Float>,
                                  ldw: Int) -> Tensor {
        let B = keys.shape[0], S = keys.shape[1], A = keys.shape[2], C = values.shape[2]
        precondition(keys.shape.rank == 3 && values.shape.rank == 3 && values.shape[0] == B && values.shape[1] == S
                     && query.count == B * A && v.count == A && (vBias?.count ?? 1) == 1 && ldw >= S,
                     "additiveAttention: query \(query.shape), keys \(keys.shape), v \(v.shape), values \(values.shape), ldw \(ldw)")
        let context = tensor(Shape(B, C))
        let hidden = scratch(count: B * S * A)
        let work = scratch(count: S)
        let vw = v.value, dvw = v.grad, vb = vBias.map { UnsafePointer($0.value) }, dvb = vBias?.grad
        record(parameters: [v] + (vBias.map { [$0] } ?? []), inputs: [query, keys, values], forward: {
            additiveAttentionForward(context: context.data, weights: weights, ldw: ldw, hidden: hidden, query: query.data,
                                     keys: keys.data, v: vw, vBias: vb, values: values.data, lengths: lengths,
                                     B: B, S: S, A: A, C: C)
        }, backward: {
            additiveAttentionBackward(dquery: query.grad, dkeys: keys.grad, dv: dvw, dvBias: dvb, dvalues: values.grad,
                                      scratch: work, dcontext: context.grad!, weights: weights, ldw: ldw, hidden: hidden,
                                      v: vw, values: values.data, lengths: lengths, B: B, S: S, A: A, C: C)
        })
        return context
    }
}
