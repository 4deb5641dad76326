import TandemKernels

// The VQ-VAE image tokenizer's bottleneck and reconstruction loss.

extension Tape {
    /// Cosine vector quantisation of the rows of `z` (..., D) against `codebook` (K, D)
    /// (`vectorQuantizeForward`): `quantized` (shaped as z) holds each row's nearest l2-normalised code
    /// with the straight-through gradient, `loss` (1) the codebook + `beta` x commitment loss on the
    /// normalised vectors, and `codes` (the rows of z) the chosen code ids, which the caller may read after
    /// `forward()`.
    public func vectorQuantize(_ z: Tensor, codebook: Parameter, beta: Float)
        -> (quantized: Tensor, loss: Tensor, codes: UnsafeMutablePointer<Int32>) {
        let K = codebook.shape[0], D = codebook.shape[1], N = z.count / D
        precondition(codebook.shape.dims.count == 2 && z.shape[-1] == D,
                     "vectorQuantize \(codebook.name): rows \(z.shape) do not fit the codebook \(codebook.shape)")
        let out = tensor(z.shape)
        let loss = tensor(Shape(1))
        let codes = intInput(count: N)
        let saved = VectorQuantizeSaved(scratch: scratch(count: vectorQuantizeScratchCount(N: N, K: K, D: D)), N: N, K: K, D: D)
        let codeGradients = scratch(count: K * D)
        let e = codebook.value, de = codebook.grad
        record(parameters: [codebook], inputs: [z], forward: {
            loss.data[0] = vectorQuantizeForward(out: out.data, codes: codes, z: z.data, codebook: e, N: N, K: K, D: D,
                                                 beta: beta, saved: saved)
        }, backward: {
            vectorQuantizeBackward(dz: z.grad, dcodebook: de, dout: out.grad!, dloss: loss.grad![0], codes: codes,
                                   N: N, K: K, D: D, beta: beta, saved: saved, scratch: codeGradients)
        })
        return (out, loss, codes)
    }

    /// PyTorch's F.mse_loss (the mean over every element) of `prediction` against `target`, which gets no
    /// gradient. Returns a scalar tensor.
    public func meanSquaredError(_ prediction: Tensor, target: Tensor) -> Tensor {
        precondition(prediction.count == target.count, "meanSquaredError: prediction \(prediction.shape), target \(target.shape)")
        let loss = tensor(Shape(1))
        let n = prediction.count
        record(inputs: [prediction], forward: {
            loss.data[0] = meanSquaredErrorForward(prediction: prediction.data, target: target.data, count: n)
        }, backward: {
            guard let dp = prediction.grad else { return }
            meanSquaredErrorBackward(dprediction: dp, dloss: loss.grad![0], prediction: prediction.data,
                                     target: target.data, count: n)
        })
        return loss
    }
}
