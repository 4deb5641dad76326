import Foundation
import TandemKernels

// The ops a Vision Transformer (Dosovitskiy et al. 2021) needs around its transformer blocks: patches as
// rows (so that the patch embedding, a Conv2d with kernel = stride = P, is one GEMM), SimMIM's mask-token
// substitution (Xie et al. 2022), the [CLS] token and learned positions, SimMIM's 1x1-conv decoder with
// pixel shuffle (the inverse of the patch rows), and its L1 loss on masked pixels. Shapes follow
// Hugging Face's `modeling_vit.py`.

extension Tape {
    /// Patches of P x P pixels as rows: pixels (B, C, H, W) -> (B, NP, C*P*P), NP = (H/P)(W/P) in
    /// row-major patch order, each row in (c, py, px) order so that a Conv2d weight (OC, C, P, P) viewed
    /// as (OC, C*P*P) applies to it (`patchesForward`). The output needs a gradient only when `pixels` does.
    public func patches(_ pixels: Tensor, size P: Int) -> Tensor {
        let B = pixels.shape[0], C = pixels.shape[1], H = pixels.shape[2], W = pixels.shape[3]
        precondition(pixels.shape.rank == 4 && H % P == 0 && W % P == 0,
                     "patches: pixels \(pixels.shape) are not (B, C, H, W) with H and W multiples of \(P)")
        let y = tensor(Shape(B, (H / P) * (W / P), C * P * P), requiresGrad: pixels.requiresGrad)
        record(inputs: [pixels], forward: {
            patchesForward(out: y.data, pixels: pixels.data, B: B, C: C, H: H, W: W, P: P)
        }, backward: {
            if let dx = pixels.grad { patchesBackward(dpixels: dx, dout: y.grad!, B: B, C: C, H: H, W: W, P: P) }
        })
        return y
    }

    /// y = x · W^T + b with the weight (OC, ...) of any rank viewed as (OC, K), K = its count / OC: a
    /// Conv2d whose kernel covers its whole input row (the patch embedding on `patches` rows, or a 1x1
    /// convolution on channels-last positions). x is (..., K), y is (..., OC).
    public func linear(_ x: Tensor, flattening weight: Parameter, bias: Parameter?) -> Tensor {
        let OC = weight.shape[0], K = weight.count / OC
        precondition(x.shape[-1] == K, "linear \(weight.name) \(weight.shape): input \(x.shape) does not end in \(K)")
        let N = x.count / K
        let y = tensor(Shape(Array(x.shape.dims.dropLast()) + [OC]))
        let w = weight.value, dw = weight.grad
        let b = bias?.value, db = bias?.grad
        let precision = precision
        record(parameters: bias.map { [weight, $0] } ?? [weight], inputs: [x], forward: {
            linearForward(out: y.data, inp: x.data, weight: w, bias: b, N: N, C: K, OC: OC, precision: precision)
        }, backward: {
            linearBackward(dinp: x.grad, dweight: dw, dbias: db, dout: y.grad!, inp: x.data, weight: w,
                           N: N, C: K, OC: OC, precision: precision)
        })
        return y
    }

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
        let t = tokens.map(\.value), dt = tokens.map(\.grad), p = positions.value, dp = positions.grad
        record(parameters: tokens + [positions], inputs: [x], forward: {
            leadingTokensForward(out: y.data, inp: x.data, tokens: t, positions: p, B: B, NP: NP, C: C)
        }, backward: {
            leadingTokensBackward(dinp: x.grad, dtokens: dt, dpositions: dp, dout: y.grad!, B: B, NP: NP, C: C)
        })
        return y
    }

    /// Σ w_i x_i over scalar tensors (DeiT's 0.5 cross-entropy + 0.5 distillation). Returns a scalar tensor.
    public func weightedSum(_ terms: [(Tensor, Float)]) -> Tensor {
        precondition(terms.allSatisfy { $0.0.count == 1 }, "weightedSum: terms must be scalars")
        let y = tensor(Shape(1))
        record(inputs: terms.map(\.0), forward: {
            var total: Float = 0
            for (x, w) in terms { total += w * x.data[0] }
            y.data[0] = total
        }, backward: {
            for (x, w) in terms { if let dx = x.grad { dx[0] += w * y.grad![0] } }
        })
        return y
    }

    /// Mean cross-entropy of `logits` (N, V) against soft targets (N, V), each row a distribution (mixup,
    /// cutmix, label smoothing): loss = -(1/N) Σ_n Σ_v t[n, v] log softmax(logits[n])[v] (timm's
    /// SoftTargetCrossEntropy). The targets get no gradient. Returns a scalar tensor.
    public func softTargetCrossEntropy(_ logits: Tensor, targets: Tensor) -> Tensor {
        let V = logits.shape[-1], N = logits.count / V
        precondition(targets.count == N * V, "softTargetCrossEntropy: logits \(logits.shape), targets \(targets.shape)")
        let loss = tensor(Shape(1))
        let probs = scratch(count: N * V)
        record(inputs: [logits], forward: {
            loss.data[0] = softTargetCrossEntropyForward(probs: probs, logits: logits.data, targets: targets.data, N: N, V: V)
        }, backward: {
            guard let dl = logits.grad else { return }
            softTargetCrossEntropyBackward(dlogits: dl, probs: probs, targets: targets.data, N: N, V: V,
                                           dloss: loss.grad![0])
        })
        return loss
    }

    /// Rows of P x P-pixel patches back into images: x (B, NP, C*P*P) with NP = (H/P)(W/P), each row in
    /// (c, py, px) order, -> (B, C, H, W); the inverse of `patches`. After a 1x1 convolution to C r²
    /// channels on channels-last positions this is PyTorch's `PixelShuffle(r)` with P = r (the SimMIM
    /// decoder), since PixelShuffle puts input channel c r² + i r + j at output (c, h r + i, w r + j).
    public func unpatch(_ x: Tensor, channels C: Int, height H: Int, width W: Int, patch P: Int) -> Tensor {
        let B = x.shape[0]
        precondition(H % P == 0 && W % P == 0 && x.count == B * C * H * W && x.shape[-1] == C * P * P,
                     "unpatch: \(x.shape) is not (B, \((H / P) * (W / P)), \(C * P * P)) for \(C)x\(H)x\(W) images")
        let y = tensor(Shape(B, C, H, W))
        let n = x.count
        let gathered = scratch(count: n)
        record(inputs: [x], forward: {
            y.data.update(repeating: 0, count: n)
            patchesBackward(dpixels: y.data, dout: x.data, B: B, C: C, H: H, W: W, P: P)
        }, backward: {
            guard let dx = x.grad else { return }
            patchesForward(out: gathered, pixels: y.grad!, B: B, C: C, H: H, W: W, P: P)
            residualBackward(da: dx, db: nil, dout: gathered, count: n)
        })
        return y
    }

    /// SimMIM's reconstruction loss (HF `ViTForMaskedImageModeling`): with the patch mask m (B, NP)
    /// upsampled to pixels, M (B, 1, H, W) = m repeated P x P,
    /// loss = Σ |prediction - target| M / (Σ M + 1e-5) / C over prediction and target (B, C, H, W).
    /// The target (the input pixels) gets no gradient. Returns a scalar tensor.
    public func maskedL1Loss(_ prediction: Tensor, target: Tensor, mask: Tensor, patch P: Int) -> Tensor {
        let B = prediction.shape[0], C = prediction.shape[1], H = prediction.shape[2], W = prediction.shape[3]
        precondition(target.shape == prediction.shape && H % P == 0 && W % P == 0 && mask.count == B * (H / P) * (W / P),
                     "maskedL1Loss: prediction \(prediction.shape), target \(target.shape), mask \(mask.shape), patch \(P)")
        let loss = tensor(Shape(1))
        let denominator = scratch(count: 1)
        record(inputs: [prediction], forward: {
            loss.data[0] = maskedL1Forward(denominator: denominator, prediction: prediction.data, target: target.data,
                                           mask: mask.data, B: B, C: C, H: H, W: W, P: P)
        }, backward: {
            guard let dp = prediction.grad else { return }
            maskedL1Backward(dprediction: dp, prediction: prediction.data, target: target.data, mask: mask.data,
                             denominator: denominator[0], dloss: loss.grad![0], B: B, C: C, H: H, W: W, P: P)
        })
        return loss
    }
}

// MARK: - Kernels

/// out (N, C) = inp (1 - mask) + token mask, mask (N) in {0, 1}, token (C).
func maskTokensForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                       token: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let m = mask[n], keep = 1 - m
        let x = inp + n * C, y = out + n * C
        for c in 0..<C { y[c] = x[c] * keep + token[c] * m }
    }
}

/// dinp (N, C) += dout (1 - mask); dtoken (C) += Σ_n dout[n] mask[n]. A nil gradient is skipped.
func maskTokensBackward(dinp: UnsafeMutablePointer<Float>?, dtoken: UnsafeMutablePointer<Float>?,
                        dout: UnsafePointer<Float>, mask: UnsafePointer<Float>, N: Int, C: Int) {
    for n in 0..<N {
        let m = mask[n], keep = 1 - m
        let dy = dout + n * C
        if let dinp { let dx = dinp + n * C; for c in 0..<C { dx[c] += dy[c] * keep } }
        if let dtoken, m != 0 { for c in 0..<C { dtoken[c] += dy[c] * m } }
    }
}

/// out (B, NP + K, C): row k < K = tokens[k] + positions[k], row K + i = inp (B, NP, C)[i] + positions[K + i].
func leadingTokensForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, tokens: [UnsafeMutablePointer<Float>],
                          positions: UnsafePointer<Float>, B: Int, NP: Int, C: Int) {
    let K = tokens.count, T = NP + K
    for b in 0..<B {
        let y = out + b * T * C
        for k in 0..<K { residualForward(out: y + k * C, a: tokens[k], b: positions + k * C, count: C) }
        residualForward(out: y + K * C, a: inp + b * NP * C, b: positions + K * C, count: NP * C)
    }
}

/// Gradients of `leadingTokensForward`, accumulated: dtokens[k] (C) += Σ_b dout[b, k], dpositions
/// (NP + K, C) += Σ_b dout[b], dinp[b, i] += dout[b, K + i]. A nil gradient is skipped.
func leadingTokensBackward(dinp: UnsafeMutablePointer<Float>?, dtokens: [UnsafeMutablePointer<Float>?],
                           dpositions: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, B: Int, NP: Int, C: Int) {
    let K = dtokens.count, T = NP + K
    for b in 0..<B {
        let dy = dout + b * T * C
        for k in 0..<K { residualBackward(da: dtokens[k], db: dpositions.map { $0 + k * C }, dout: dy + k * C, count: C) }
        residualBackward(da: dinp.map { $0 + b * NP * C }, db: dpositions.map { $0 + K * C }, dout: dy + K * C, count: NP * C)
    }
}

/// Returns -(1/N) Σ t log softmax(logits) over rows of V and writes the softmax to `probs`; sums in Double.
func softTargetCrossEntropyForward(probs: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
                                   targets: UnsafePointer<Float>, N: Int, V: Int) -> Float {
    softmaxForward(out: probs, inp: logits, rows: N, cols: V)
    var total = 0.0
    for n in 0..<N {
        let x = logits + n * V, t = targets + n * V
        var m = -Float.infinity
        for v in 0..<V { m = max(m, x[v]) }
        var z = 0.0
        for v in 0..<V { z += Double(expf(x[v] - m)) }
        let logZ = Double(m) + log(z)
        for v in 0..<V where t[v] != 0 { total -= Double(t[v]) * (Double(x[v]) - logZ) }
    }
    return Float(total / Double(N))
}

/// dlogits += dloss (probs - t Σ_v t) / N: the gradient of `softTargetCrossEntropyForward`.
func softTargetCrossEntropyBackward(dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
                                    targets: UnsafePointer<Float>, N: Int, V: Int, dloss: Float) {
    let scale = dloss / Float(N)
    for n in 0..<N {
        let p = probs + n * V, t = targets + n * V, d = dlogits + n * V
        var mass: Float = 0
        for v in 0..<V { mass += t[v] }
        for v in 0..<V { d[v] += scale * (p[v] * mass - t[v]) }
    }
}

/// Returns SimMIM's masked L1 loss Σ |prediction - target| M / (Σ M + 1e-5) / C (see `Tape.maskedL1Loss`)
/// and writes its denominator (Σ M + 1e-5) C to `denominator[0]`; the sum runs in Double.
func maskedL1Forward(denominator: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
                     target: UnsafePointer<Float>, mask: UnsafePointer<Float>, B: Int, C: Int, H: Int, W: Int, P: Int) -> Float {
    let cols = W / P
    var masked = 0.0, total = 0.0
    for b in 0..<B {
        let m = mask + b * (H / P) * cols
        for i in 0..<(H / P) * cols { masked += Double(m[i]) }
        for c in 0..<C {
            for y in 0..<H {
                let row = ((b * C + c) * H + y) * W
                for x in 0..<W where m[(y / P) * cols + x / P] != 0 {
                    total += Double(abs(prediction[row + x] - target[row + x])) * Double(m[(y / P) * cols + x / P])
                }
            }
        }
    }
    let d = (masked * Double(P * P) + 1e-5) * Double(C)
    denominator[0] = Float(d)
    return Float(total / d)
}

/// dprediction (B, C, H, W) += dloss sign(prediction - target) M / denominator (sign(0) = 0, as PyTorch's
/// `l1_loss`).
func maskedL1Backward(dprediction: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
                      target: UnsafePointer<Float>, mask: UnsafePointer<Float>, denominator: Float, dloss: Float,
                      B: Int, C: Int, H: Int, W: Int, P: Int) {
    let cols = W / P, scale = dloss / denominator
    for b in 0..<B {
        let m = mask + b * (H / P) * cols
        for c in 0..<C {
            for y in 0..<H {
                let row = ((b * C + c) * H + y) * W
                for x in 0..<W {
                    let weight = m[(y / P) * cols + x / P]
                    guard weight != 0 else { continue }
                    let d = prediction[row + x] - target[row + x]
                    if d != 0 { dprediction[row + x] += (d > 0 ? scale : -scale) * weight }
                }
            }
        }
    }
}
