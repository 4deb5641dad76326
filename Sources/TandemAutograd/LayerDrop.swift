import TandemKernels

// Skipping a whole block of ops at replay time: LayerDrop (Fan et al. 2020), which transformers' wav2vec 2.0
// applies in training by passing a layer's input through unchanged with probability `layerdrop`.

extension Tape {
    /// Records `body(x)` as a region a replay may skip, and returns its output (x's shape). At the start of
    /// every `forward()` the tape calls `skip` (once per replay); when it returns true none of the region's
    /// ops run forward or backward, the output is x itself, x's gradient is the output's, and the
    /// parameters the region uses get no gradient (their `onGradientFinal` still comes, in the same
    /// order). Otherwise the output is body(x), exactly as without the region.
    ///
    /// The graph is recorded once: the decision is read at replay, so `skip` must be a pure function of what
    /// the caller sets before each `forward()` (`training`, `step`) for a replay to be exact. `body` may read
    /// other tensors, but when skipped contributes nothing to their gradients. Regions do not nest.
    public func skippable(_ x: Tensor, skip: @escaping () -> Bool, _ body: (Tensor) -> Tensor) -> Tensor {
        precondition(!recordingSkippable, "skippable: regions do not nest")
        let start = opCount, gradientStart = gradientBufferCount
        recordingSkippable = true
        let y = body(x)
        recordingSkippable = false
        let end = opCount
        precondition(end > start && y.data != x.data, "skippable: the region records no op")
        precondition(y.shape == x.shape, "skippable: the region maps \(x.shape) to \(y.shape)")
        let region = skipRegions.count
        skipRegions.append((start: start, end: end, gradientStart: gradientStart, gradientEnd: gradientBufferCount, skip: skip))
        let out = tensor(x.shape)
        let n = x.count
        let writeX = gradientWrite(x), writeY = gradientWrite(y)
        record(inputs: [x, y], storing: [writeX, writeY], forward: { [unowned self] in
            out.data.update(from: regionSkipped[region] ? x.data : y.data, count: n)
        }, backward: { [unowned self] in
            let dout = out.grad!
            let (through, other, writeThrough, writeOther) = regionSkipped[region] ? (x, y, writeX, writeY) : (y, x, writeY, writeX)
            if let d = through.grad { residualBackward(da: d, db: nil, dout: dout, count: n, accumulateA: writeThrough.accumulates) }
            // The other gradient gets nothing from here; a store must still write it whole.
            if let d = other.grad, writeOther.stores { d.update(repeating: 0, count: n) }
        })
        return out
    }

    /// LayerDrop's decision for `layer` at the current replay: true (skip) while `training`, with probability
    /// p, from (rng, `stream`, `step`, layer) only, so the same on every rank for a given global micro-batch
    /// and after a resume. Never while `training` is false.
    public func layerDropSkips(layer: Int, p: Float, stream: UInt64) -> Bool {
        training && p > 0 && rng.uniform(stream: stream, step: step, index: UInt64(layer)) < p
    }
}
