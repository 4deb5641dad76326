import TandemKernels

// The scaling of a residual branch before it is added back: LayerScale's learned per-channel factor
// (Touvron et al. 2021; BEiT's lambda_1 and lambda_2) and stochastic depth (Huang et al. 2016), which
// drops a branch for whole samples.

extension Tape {
    /// y = x ⊙ scale over the last dimension: x (..., C), `scale` (C).
    public func layerScale(_ x: Tensor, scale: Parameter) -> Tensor {
        let C = scale.count, N = x.count / C
        precondition(x.shape[-1] == C, "layerScale \(scale.name): input \(x.shape) does not end in \(C)")
        let y = tensor(x.shape)
        let s = scale.value, ds = scale.grad
        let write = gradientWrite(x)
        record(parameters: [scale], inputs: [x], storing: [write], forward: {
            layerScaleForward(out: y.data, inp: x.data, scale: s, N: N, C: C)
        }, backward: {
            layerScaleBackward(dinp: x.grad, dscale: ds, dout: y.grad!, inp: x.data, scale: s, N: N, C: C,
                               accumulate: write.accumulates)
        })
        return y
    }

    /// Stochastic depth (timm's and transformers' `DropPath`) on x (B, ...): while `training`, each sample
    /// is kept with probability 1 - p and scaled by 1/(1 - p), or zeroed whole; one decision per sample,
    /// a pure function of (rng, op stream, tape.step, sample) (`dropPathKeeps`), so the same on any rank
    /// that sees the sample at the same place of the same step. An identity while `training` is false or p is 0.
    public func dropPath(_ x: Tensor, p: Float) -> Tensor {
        precondition(p >= 0 && p < 1, "dropPath: p = \(p) outside [0, 1)")
        guard p > 0 else { return x }
        let y = tensor(x.shape)
        let B = x.shape[0], count = x.count / B
        let stream = newStream()
        let write = gradientWrite(x)
        record(inputs: [x], storing: [write], forward: { [unowned self] in
            if training {
                dropPathForward(out: y.data, inp: x.data, B: B, count: count, p: p, rng: rng, stream: stream, step: step)
            } else {
                y.data.update(from: x.data, count: B * count)
            }
        }, backward: { [unowned self] in
            guard let dx = x.grad else { return }
            if training {
                dropPathBackward(dinp: dx, dout: y.grad!, B: B, count: count, p: p, rng: rng, stream: stream, step: step,
                                 accumulate: write.accumulates)
            } else {
                residualBackward(da: dx, db: nil, dout: y.grad!, count: B * count, accumulateA: write.accumulates)
            }
        })
        return y
    }
}
