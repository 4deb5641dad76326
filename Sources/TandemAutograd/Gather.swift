import TandemKernels

// Ops that pick rows: a token embedding (whose padding row may get no gradient from the lookup), and
// the hidden states at masked positions (BERT's MLM head only scores those), at [CLS] (the pooler) and
// at ViT's leading tokens (its last block's queries run only there). They share the embedding kernels,
// the source being viewed as a table of rows.

extension Tape {
    /// Rows `rows` (count) of `x` viewed as (N, C) with C = x.shape[-1], giving (count, C); backward
    /// scatter-adds into x.grad, so a row picked twice gets both gradients. Every row must be in 0..<N
    /// (the caller fills `rows`; padded slots may point at row 0 with an ignored label).
    public func gatherRows(_ x: Tensor, rows: UnsafeMutablePointer<Int32>, count: Int) -> Tensor {
        let C = x.shape[-1], N = x.count / C
        let y = tensor(Shape(count, C))
        record(inputs: [x], forward: {
            for i in 0..<count {
                precondition(rows[i] < N, "gatherRows: row \(rows[i]) at \(i) outside 0..<\(N)")
            }
            embeddingForward(out: y.data, ids: rows, table: x.data, N: count, C: C)
        }, backward: {
            if let dx = x.grad { embeddingBackward(dtable: dx, dout: y.grad!, ids: rows, N: count, C: C) }
        })
        return y
    }

    /// The first L positions of every sequence of x (B, T, C), giving (B, L, C) (ViT's [CLS] and DeiT's
    /// distillation rows); backward adds into x.grad.
    public func leadingRows(_ x: Tensor, count L: Int) -> Tensor {
        let B = x.shape[0], T = x.shape[1], C = x.shape[2]
        precondition(x.shape.rank == 3 && L >= 1 && L <= T, "leadingRows: \(L) of \(x.shape)")
        let rows = intInput(count: B * L)
        for b in 0..<B { for i in 0..<L { rows[b * L + i] = Int32(b * T + i) } }
        return gatherRows(x, rows: rows, count: B * L).reshaped(Shape(B, L, C))
    }

    /// Rows of `table` (V, C) picked by `ids` (N), giving (N, C); backward scatter-adds into the table,
    /// except that rows looked up with id `paddingIndex` (when given) add nothing to it: PyTorch's
    /// `nn.Embedding(padding_idx:)`, which BERT's word embedding uses with `pad_token_id`.
    public func embedding(_ ids: UnsafeMutablePointer<Int32>, count N: Int, table: Parameter,
                          paddingIndex: Int32? = nil) -> Tensor {
        let C = table.shape[1]
        let y = tensor(Shape(N, C))
        let t = table.value, dt = table.grad
        record(parameters: [table], inputs: [], forward: {
            embeddingForward(out: y.data, ids: ids, table: t, N: N, C: C)
        }, backward: {
            let dy = y.grad!
            guard let paddingIndex else { return embeddingBackward(dtable: dt, dout: dy, ids: ids, N: N, C: C) }
            // Scatter runs of non-padding ids in one call each.
            var start = 0
            while start < N {
                var end = start
                while end < N && ids[end] != paddingIndex { end += 1 }
                if end > start {
                    embeddingBackward(dtable: dt, dout: dy + start * C, ids: ids + start, N: end - start, C: C)
                }
                start = end + 1
            }
        })
        return y
    }
}

extension Tape {
    /// RoBERTa's position ids (transformers' `create_position_ids_from_input_ids`), computed at replay
    /// from the (B, T) ids the caller fills: counting from `paddingIndex + 1` along each row over the
    /// tokens that are not `paddingIndex`, and `paddingIndex` itself at the padding, whose position
    /// embedding row then gets no gradient.
    public func paddedPositions(_ ids: UnsafeMutablePointer<Int32>, batch B: Int, sequence T: Int,
                                paddingIndex: Int32) -> UnsafeMutablePointer<Int32> {
        let positions = intInput(count: B * T)
        record(inputs: [], forward: {
            for b in 0..<B {
                var count: Int32 = 0
                for t in 0..<T {
                    let i = b * T + t
                    if ids[i] != paddingIndex { count += 1; positions[i] = count + paddingIndex } else { positions[i] = paddingIndex }
                }
            }
        }, backward: {})
        return positions
    }
}
