import TandemKernels

// The differentiable ops: each allocates its output on the tape and records a forward closure that calls
// a kernel and a backward closure that calls the kernel's backward, which accumulates into the inputs'
// gradients (skipped where an input needs none). Shapes follow llm.c: N rows of C channels, (B, T, C).

extension Tape {
    /// y = x · W^T + b, with W of shape (OC, C) as in PyTorch's Linear; x is (..., C), y is (..., OC).
    /// A weight of higher rank (OC, ...) is viewed as (OC, C) with C its count / OC: a Conv2d whose kernel
    /// covers its whole input row (a patch embedding on `patches` rows, or a 1x1 convolution on
    /// channels-last positions). The products run in the tape's `precision` at recording time.
    ///
    /// With `layout: .inputsByOutputs` the weight is (C, OC) and y = x · W + b: GPT-2's `Conv1D`.
    /// With `frozenBias` the bias is a constant that gets no gradient (a PyTorch buffer such as Marian's
    /// `final_logits_bias`): its gradient stays zero, so AdamW leaves it where it is.
    public func linear(_ x: Tensor, weight: Parameter, bias: Parameter?, layout: WeightLayout = .outputsByInputs,
                       frozenBias: Bool = false) -> Tensor {
        let OC = layout == .outputsByInputs ? weight.shape[0] : weight.shape[-1], C = weight.count / OC
        precondition(x.shape[-1] == C, "linear \(weight.name) \(weight.shape): input \(x.shape) does not end in \(C)")
        let N = x.count / C
        let y = tensor(Shape(Array(x.shape.dims.dropLast()) + [OC]))
        let w = weight.value, dw = weight.grad
        let b = bias?.value, db = frozenBias ? nil : bias?.grad
        let precision = precision
        // Products add into zeroed gradients: storing through sgemm's beta = 0 (OpenBLAS then zeroes C in a
        // pass of its own) measured no faster than the tape's zeroing.
        record(parameters: bias.map { [weight, $0] } ?? [weight], inputs: [x], forward: {
            linearForward(out: y.data, inp: x.data, weight: w, bias: b, N: N, C: C, OC: OC, layout: layout,
                          precision: precision)
        }, backward: {
            linearBackward(dinp: x.grad, dweight: dw, dbias: db, dout: y.grad!, inp: x.data, weight: w,
                           N: N, C: C, OC: OC, layout: layout, precision: precision)
        })
        return y
    }

    /// LayerNorm over the last dimension (Ba et al. 2016): y = (x - mean) * rstd * weight + bias.
    public func layerNorm(_ x: Tensor, weight: Parameter, bias: Parameter, eps: Float) -> Tensor {
        let C = weight.count, N = x.count / C
        precondition(x.shape[-1] == C, "layer norm \(weight.name): input \(x.shape) does not end in \(C)")
        let y = tensor(x.shape)
        let mean = scratch(count: N), rstd = scratch(count: N)
        let w = weight.value, b = bias.value, dw = weight.grad, db = bias.grad
        record(parameters: [weight, bias], inputs: [x], forward: {
            layerNormForward(out: y.data, mean: mean, rstd: rstd, inp: x.data, weight: w, bias: b, N: N, C: C, eps: eps)
        }, backward: {
            layerNormBackward(dinp: x.grad, dweight: dw, dbias: db, dout: y.grad!, inp: x.data, weight: w,
                              mean: mean, rstd: rstd, N: N, C: C)
        })
        return y
    }

    /// GELU, exact (erf) or with the tanh approximation.
    public func gelu(_ x: Tensor, approximation: GELUApproximation = .erf) -> Tensor {
        let y = tensor(x.shape)
        let n = x.count
        let write = gradientWrite(x)
        record(inputs: [x], storing: [write], forward: {
            geluForward(out: y.data, inp: x.data, count: n, approximation: approximation)
        }, backward: {
            if let dx = x.grad {
                geluBackward(dinp: dx, inp: x.data, dout: y.grad!, count: n, approximation: approximation,
                             accumulate: write.accumulates)
            }
        })
        return y
    }

    /// The feed-forward activation `kind`, elementwise: GELU, SiLU (x σ(x)) or ReLU.
    public func activation(_ x: Tensor, _ kind: Activation) -> Tensor {
        if case .gelu(let approximation) = kind { return gelu(x, approximation: approximation) }
        let y = tensor(x.shape)
        let n = x.count
        let write = gradientWrite(x)
        record(inputs: [x], storing: [write], forward: {
            if kind == .silu { siluForward(out: y.data, inp: x.data, count: n) } else { reluForward(out: y.data, inp: x.data, count: n) }
        }, backward: {
            guard let dx = x.grad else { return }
            if kind == .silu {
                siluBackward(dinp: dx, inp: x.data, dout: y.grad!, count: n, accumulate: write.accumulates)
            } else {
                reluBackward(dinp: dx, inp: x.data, dout: y.grad!, count: n, accumulate: write.accumulates)
            }
        })
        return y
    }

    /// tanh, elementwise.
    public func tanh(_ x: Tensor) -> Tensor {
        let y = tensor(x.shape)
        let n = x.count
        record(inputs: [x], forward: { tanhForward(out: y.data, inp: x.data, count: n) },
               backward: { if let dx = x.grad { tanhBackward(dinp: dx, out: y.data, dout: y.grad!, count: n) } })
        return y
    }

    /// a + b, elementwise (residual connections).
    public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "add: \(a.shape) vs \(b.shape)")
        let y = tensor(a.shape)
        let n = a.count
        let da = gradientWrite(a), db = gradientWrite(b)
        record(inputs: [a, b], storing: [da, db],
               forward: { residualForward(out: y.data, a: a.data, b: b.data, count: n) },
               backward: {
                   residualBackward(da: a.grad, db: b.grad, dout: y.grad!, count: n,
                                    accumulateA: da.accumulates, accumulateB: db.accumulates)
               })
        return y
    }

    /// Inverted dropout (PyTorch semantics): keeps each element with probability 1 - p and scales it by
    /// 1/(1-p). The mask is a pure function of (rng, op stream, tape.step, element), so backward and any
    /// replay recompute it instead of storing it. An identity while `training` is false or p is 0.
    ///
    /// `consumingInput`: the caller's promise that nothing reads x's values once this op's forward has
    /// run: this op is x's only consumer and the op that made x does not read its own output in backward
    /// (a Linear, GELU, SiLU or ReLU; not tanh or softmax). The output then overwrites x's memory
    /// instead of taking memory of its own: the dropouts after a transformer block's attention and
    /// feed-forward outputs and after a feed-forward activation hold no activation memory.
    public func dropout(_ x: Tensor, p: Float, consumingInput: Bool = false) -> Tensor {
        guard p > 0 else { return x }
        let y = tensor(x.shape, data: consumingInput ? x.data : nil)
        let n = x.count
        let stream = newStream()
        let write = gradientWrite(x)
        record(inputs: [x], storing: [write], forward: { [unowned self] in
            if training {
                dropoutForward(out: y.data, inp: x.data, count: n, p: p, rng: rng, stream: stream, step: step)
            } else if y.data != x.data {
                y.data.update(from: x.data, count: n)
            }
        }, backward: { [unowned self] in
            guard let dx = x.grad else { return }
            if training {
                dropoutBackward(dinp: dx, dout: y.grad!, count: n, p: p, rng: rng, stream: stream, step: step,
                                accumulate: write.accumulates)
            } else {
                residualBackward(da: dx, db: nil, dout: y.grad!, count: n, accumulateA: write.accumulates)
            }
        })
        return y
    }

    /// Multi-head scaled dot-product attention (Vaswani et al. 2017) with NH heads of keys and values k, v
    /// (B, T, C) and queries q (B, Tq, C), which are the first Tq <= T positions of each sequence (all of
    /// them in self-attention; fewer when only those positions' outputs are needed) or, when not `causal`,
    /// any Tq positions of another sequence (cross-attention: decoder queries over encoder keys); the
    /// output is (B, Tq, C). `keyMask` (B, T) holds 1 for keys to attend and 0 for padding; `causal` hides later keys.
    /// `scoreBias` (NH, Tq, T), when given, is added to every sequence's scaled scores before the softmax
    /// (BEiT's relative position bias) and gets their gradient summed over the batch.
    /// `dropout`: the probabilities' dropout rate (transformers' `attention_probs_dropout_prob`), applied
    /// while `training` as `dropout` applies its own, with a mask drawn again in backward (`AttentionDropout`).
    public func attention(q: Tensor, k: Tensor, v: Tensor, heads NH: Int, keyMask: Tensor?, causal: Bool,
                          scoreBias: Tensor? = nil, dropout p: Float = 0) -> Tensor {
        let B = k.shape[0], T = k.shape[1], C = k.shape[2], Tq = q.shape[1]
        precondition(C % NH == 0, "attention: \(C) channels do not split into \(NH) heads")
        precondition(v.shape == k.shape && q.shape == Shape(B, Tq, C) && (Tq <= T || !causal),
                     "attention: q \(q.shape), k \(k.shape), v \(v.shape)")
        precondition(scoreBias == nil || scoreBias!.shape == Shape(NH, Tq, T),
                     "attention: score bias \(scoreBias!.shape) is not (\(NH), \(Tq), \(T))")
        let HS = C / NH
        let y = tensor(q.shape)
        let probs = scratch(count: B * NH * Tq * T)
        let dprobs = scratch(count: B * NH * Tq * T)
        let mask = keyMask.map { UnsafePointer($0.data) }
        let bias = scoreBias.map { UnsafePointer($0.data) }, dbias = scoreBias?.grad
        let precision = precision
        let dropout = attentionDropout(p, count: Tq * T)
        record(inputs: [q, k, v] + (scoreBias.map { [$0] } ?? []), forward: {
            attentionForward(out: y.data, probs: probs, q: q.data, k: k.data, v: v.data, keyMask: mask,
                             B: B, T: T, queries: Tq, NH: NH, HS: HS, causal: causal, scoreBias: bias,
                             dropout: dropout(), precision: precision)
        }, backward: {
            attentionBackward(dq: q.grad!, dk: k.grad!, dv: v.grad!, dprobs: dprobs, dout: y.grad!, probs: probs,
                              q: q.data, k: k.data, v: v.data, B: B, T: T, queries: Tq, NH: NH, HS: HS,
                              dscoreBias: dbias, dropout: dropout(), precision: precision)
        })
        return y
    }

    /// For an attention op with dropout rate p on `count` probabilities per (batch, head): a closure that
    /// gives the `AttentionDropout` of the current replay (nil while not `training`), its stream and its
    /// one slice of work memory taken now. p == 0 takes neither, so a model without attention dropout records
    /// exactly the graph it recorded before there was any.
    private func attentionDropout(_ p: Float, count: Int) -> () -> AttentionDropout? {
        precondition(p >= 0 && p < 1, "attention dropout: p = \(p) outside [0, 1)")
        guard p > 0 else { return { nil } }
        let stream = newStream(), work = scratch(count: count)
        return { [unowned self] in
            training ? AttentionDropout(p: p, rng: rng, stream: stream, step: step, work: work) : nil
        }
    }

    /// Causal self-attention over a packed (B, T, 3C) projection holding q, k and v side by side in each
    /// row (GPT-2's `c_attn` output), read and differentiated in place; the output is (B, T, C).
    /// `firstKeys` (B, T) or nil: query t sees no key before `firstKeys[b T + t]` (documents packed into one
    /// sequence, `attentionForward`); the caller fills it before each forward.
    /// `dropout` as in `attention` (GPT-2's `attn_pdrop`).
    public func causalSelfAttention(packed qkv: Tensor, heads NH: Int, firstKeys: UnsafeMutablePointer<Int32>?,
                                    dropout p: Float = 0) -> Tensor {
        let B = qkv.shape[0], T = qkv.shape[1], C = qkv.shape[2] / 3
        precondition(qkv.shape[2] == 3 * C && C % NH == 0, "attention: packed q, k, v \(qkv.shape) for \(NH) heads")
        let HS = C / NH
        let y = tensor(Shape(B, T, C))
        let probs = scratch(count: B * NH * T * T)
        let dprobs = scratch(count: B * NH * T * T)
        let first = firstKeys.map { UnsafePointer($0) }
        let precision = precision
        let dropout = attentionDropout(p, count: T * T)
        record(inputs: [qkv], forward: {
            attentionForward(out: y.data, probs: probs, q: qkv.data, k: qkv.data + C, v: qkv.data + 2 * C, keyMask: nil,
                             B: B, T: T, NH: NH, HS: HS, causal: true, firstKeys: first, rowStride: 3 * C,
                             dropout: dropout(), precision: precision)
        }, backward: {
            let d = qkv.grad!
            attentionBackward(dq: d, dk: d + C, dv: d + 2 * C, dprobs: dprobs, dout: y.grad!, probs: probs,
                              q: qkv.data, k: qkv.data + C, v: qkv.data + 2 * C, B: B, T: T, NH: NH, HS: HS,
                              rowStride: 3 * C, dropout: dropout(), precision: precision)
        })
        return y
    }
}
