import TandemKernels

// The ops of wav2vec 2.0 besides its convolutions: zeroing padded frames, feature (channel) masking, CTC
// over padded batches, the Gumbel-softmax product quantiser and the pre-training loss.

extension Tape {
    /// y = x m: every row of x (B, T, C) times keep (B, T), 1 for frames to keep and 0 for padding (HF's
    /// `hidden_states[~attention_mask] = 0` before the positional convolution). The caller fills `keep`.
    public func keepRows(_ x: Tensor, keep: Tensor) -> Tensor {
        let C = x.shape[-1], N = x.count / C
        precondition(keep.count == N, "keepRows: \(x.shape), keep \(keep.shape)")
        let y = tensor(x.shape)
        let write = gradientWrite(x)
        record(inputs: [x], storing: [write], forward: {
            for n in 0..<N {
                let m = keep.data[n]
                for c in 0..<C { y.data[n * C + c] = x.data[n * C + c] * m }
            }
        }, backward: {
            guard let dx = x.grad else { return }
            let dy = y.grad!, stores = write.stores
            for n in 0..<N {
                let m = keep.data[n]
                for c in 0..<C { dx[n * C + c] = (stores ? 0 : dx[n * C + c]) + dy[n * C + c] * m }
            }
        })
        return y
    }

    /// y[b, t, c] = x[b, t, c] keep[b, c] while `training`: x (B, T, C) times a per-utterance channel mask
    /// `keep` (B, C) broadcast over time, 0 for a masked channel (wav2vec 2.0's feature masking, HF's
    /// `hidden_states[mask_feature_indices[:, None].expand(-1, T, -1)] = 0`), so the gradient is 0 on masked
    /// channels. An identity while `training` is false (HF masks features in training only). The caller
    /// fills `keep`.
    public func keepChannels(_ x: Tensor, keep: Tensor) -> Tensor {
        let B = x.shape[0], C = x.shape[-1], T = x.count / (B * C)
        precondition(keep.count == B * C, "keepChannels: \(x.shape), keep \(keep.shape)")
        let y = tensor(x.shape)
        let write = gradientWrite(x)
        record(inputs: [x], storing: [write], forward: { [unowned self] in
            guard training else { y.data.update(from: x.data, count: B * T * C); return }
            for b in 0..<B {
                let m = keep.data + b * C
                for t in 0..<T {
                    let row = (b * T + t) * C
                    for c in 0..<C { y.data[row + c] = x.data[row + c] * m[c] }
                }
            }
        }, backward: { [unowned self] in
            guard let dx = x.grad else { return }
            let dy = y.grad!, stores = write.stores
            guard training else { residualBackward(da: dx, db: nil, dout: dy, count: B * T * C, accumulateA: !stores); return }
            for b in 0..<B {
                let m = keep.data + b * C
                for t in 0..<T {
                    let row = (b * T + t) * C
                    for c in 0..<C { dx[row + c] = (stores ? 0 : dx[row + c]) + dy[row + c] * m[c] }
                }
            }
        })
        return y
    }

    /// CTC loss (`ctcLossForward`) of `logits` (B, T, V) for the labels (B, U), read at replay: each
    /// utterance's labels are those of its row that are neither -100 nor `blank` (HF's `ForCTCLoss`), its
    /// frames `inputLengths` (B). Returns a scalar tensor; each utterance's own loss goes to `utteranceLosses`
    /// (B) when given.
    public func ctcLoss(_ logits: Tensor, labels: UnsafeMutablePointer<Int32>, labelColumns U: Int,
                        inputLengths: UnsafeMutablePointer<Int32>, blank: Int, reduction: CTCReduction,
                        zeroInfinity: Bool, utteranceLosses: UnsafeMutablePointer<Float>? = nil) -> Tensor {
        let B = logits.shape[0], T = logits.shape[1], V = logits.shape[2]
        let loss = tensor(Shape(1))
        final class Box { var saved = CTCSaved(); var targets: [Int32] = []; var targetLengths: [Int] = []; var lengths: [Int] = [] }
        // Memory for the longest labels now, so that no replay allocates.
        let box = Box()
        box.saved.reserve(N: B, T: T, C: V, labels: U)
        box.targets.reserveCapacity(B * U); box.targetLengths.reserveCapacity(B); box.lengths.reserveCapacity(B)
        record(inputs: [logits], forward: {
            box.targets.removeAll(keepingCapacity: true)
            box.targetLengths.removeAll(keepingCapacity: true)
            box.lengths.removeAll(keepingCapacity: true)
            for b in 0..<B {
                var n = 0
                for u in 0..<U {
                    let l = labels[b * U + u]
                    if l != -100 && Int(l) != blank { box.targets.append(l); n += 1 }
                }
                box.targetLengths.append(n)
                box.lengths.append(Int(inputLengths[b]))
            }
            loss.data[0] = ctcLossForward(logits: logits.data, N: B, T: T, C: V, inputLengths: box.lengths,
                                          targets: box.targets, targetLengths: box.targetLengths, blank: blank,
                                          reduction: reduction, zeroInfinity: zeroInfinity, saved: &box.saved)
            if let utteranceLosses { for b in 0..<B { utteranceLosses[b] = Float(box.saved.losses[b]) } }
        }, backward: {
            guard let dl = logits.grad, !box.saved.losses.isEmpty else { return }
            ctcLossBackward(dlogits: dl, saved: &box.saved, N: B, T: T, C: V, inputLengths: box.lengths, targets: box.targets,
                            targetLengths: box.targetLengths, blank: blank, reduction: reduction,
                            zeroInfinity: zeroInfinity, dloss: loss.grad![0])
        })
        return loss
    }

    /// wav2vec 2.0's Gumbel-softmax product quantiser on `logits` (B, T, G V) (HF's `weight_proj` output):
    /// G codebooks of V entries each (`codevectors` (1, G V, D/G)); in training each group's entry is the
    /// argmax of logits plus Gumbel noise at temperature `temperature()` (read at every replay, so it can be
    /// annealed), with the straight-through gradient of the Gumbel softmax, in evaluation the argmax of the
    /// logits. Returns the quantised vectors (B, T, D) and the perplexity (1) of the codes over the rows of
    /// `mask` (B, T) (all rows when nil), taken of softmax(logits) in training (with its gradient) and of the
    /// one-hot codes in evaluation, and the chosen entries (B T, G).
    public func gumbelQuantize(_ logits: Tensor, codevectors: Parameter, groups G: Int, mask: Tensor?,
                               temperature: @escaping () -> Float)
        -> (quantized: Tensor, perplexity: Tensor, codes: UnsafeMutablePointer<Int32>) {
        let B = logits.shape[0], T = logits.shape[1], GV = logits.shape[2], V = GV / G, N = B * T
        let Dg = codevectors.shape[-1]
        precondition(GV % G == 0 && codevectors.count == GV * Dg, "gumbelQuantize: logits \(logits.shape), codevectors \(codevectors.shape)")
        precondition(mask.map { $0.count == N } ?? true, "gumbelQuantize: mask \(mask!.shape) for \(N) rows")
        let out = tensor(Shape(B, T, G * Dg))
        let perplexity = tensor(Shape(1))
        let chosen = values.allocate(Int32.self, count: N * G)
        let saved = GumbelQuantizeSaved(chosen: chosen, gumbelSoftmax: scratch(count: N * GV), softmax: scratch(count: N * GV),
                                        marginal: scratch(count: GV))
        let stream = newStream()
        let c = codevectors.value, dc = codevectors.grad
        let maskData = mask.map { UnsafePointer($0.data) }
        var tau: Float = 1
        record(parameters: [codevectors], inputs: [logits], forward: { [unowned self] in
            tau = temperature()
            perplexity.data[0] = gumbelQuantizeForward(out: out.data, logits: logits.data, codevectors: c, mask: maskData,
                                                       N: N, G: G, V: V, Dg: Dg, temperature: tau, training: training,
                                                       rng: rng, stream: stream, step: step, saved: saved)
        }, backward: { [unowned self] in
            gumbelQuantizeBackward(dlogits: logits.grad, dcodevectors: dc, dout: out.grad!, dperplexity: perplexity.grad![0],
                                   codevectors: c, mask: maskData, N: N, G: G, V: V, Dg: Dg, temperature: tau,
                                   training: training, saved: saved)
        })
        return (out, perplexity, chosen)
    }

    /// `Wav2Vec2ForPreTraining`'s loss: the contrastive loss (`contrastiveLossForward`) of `predicted` against
    /// `quantized` (B, T, P) with the distractors `negatives` (B, T, K) (row indices into the B T frames) over
    /// the masked frames `mask` (B, T), at `temperature`, plus `diversityWeight` times the diversity loss
    /// (GV - perplexity) / GV × (number of masked frames), GV = `codevectorCount`. Returns the loss (1); the
    /// two terms are written to `terms` (2) for the log. A distractor is the positive where its `codes` (B T, G)
    /// are the positive's (`contrastiveLossForward`).
    public func wav2vec2PretrainingLoss(predicted: Tensor, quantized: Tensor, perplexity: Tensor,
                                        codes: UnsafeMutablePointer<Int32>, groups G: Int,
                                        negatives: UnsafeMutablePointer<Int32>, distractors K: Int, mask: Tensor,
                                        temperature: Float, codevectorCount: Int, diversityWeight: Float,
                                        terms: UnsafeMutablePointer<Float>) -> Tensor {
        let P = predicted.shape[-1], N = predicted.count / P
        precondition(quantized.shape == predicted.shape && mask.count == N, "pretraining loss: \(predicted.shape), \(quantized.shape), mask \(mask.shape)")
        let loss = tensor(Shape(1))
        let saved = ContrastiveSaved(probs: scratch(count: N * (K + 1)), cosines: scratch(count: N * (K + 1)))
        let GV = Float(codevectorCount)
        var masked: Float = 0
        record(inputs: [predicted, quantized, perplexity], forward: {
            let contrastive = contrastiveLossForward(predicted: predicted.data, quantized: quantized.data, negatives: negatives,
                                                     mask: mask.data, N: N, P: P, K: K, codes: codes, groups: G,
                                                     temperature: temperature, saved: saved)
            masked = 0
            for n in 0..<N where mask.data[n] != 0 { masked += 1 }
            let diversity = (GV - perplexity.data[0]) / GV * masked
            terms[0] = contrastive
            terms[1] = diversity
            loss.data[0] = contrastive + diversityWeight * diversity
        }, backward: {
            let d = loss.grad![0]
            contrastiveLossBackward(dpredicted: predicted.grad, dquantized: quantized.grad, dloss: d, predicted: predicted.data,
                                    quantized: quantized.data, negatives: negatives, mask: mask.data, N: N, P: P, K: K,
                                    temperature: temperature, saved: saved)
            perplexity.grad?[0] += -d * diversityWeight * masked / GV
        })
        return loss
    }
}
