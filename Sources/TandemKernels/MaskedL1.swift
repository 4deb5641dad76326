/// SimMIM's reconstruction loss (Xie et al. 2022; HF `ViTForMaskedImageModeling`): with the patch mask
/// m (B, NP) upsampled to pixels, M (B, 1, H, W) = m repeated P x P,
/// loss = Σ |prediction - target| M / (Σ M + 1e-5) / C over prediction and target (B, C, H, W).

/// Returns the masked L1 loss of prediction and target (B, C, H, W) under the patch mask (B, (H/P)(W/P))
/// and writes its denominator (Σ M + 1e-5) C to `denominator[0]`; the sums run in Double.
public func maskedL1Forward(denominator: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
                            target: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                            B: Int, C: Int, H: Int, W: Int, P: Int) -> Float {
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
/// `l1_loss`), with the denominator `maskedL1Forward` wrote. The target gets no gradient.
public func maskedL1Backward(dprediction: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
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

// MARK: - Reference

/// The pixel mask M (B, H, W) of a patch mask (B, (H/P)(W/P)).
func pixelMask(_ mask: UnsafePointer<Float>, B: Int, H: Int, W: Int, P: Int) -> [Double] {
    var M = [Double](repeating: 0, count: B * H * W)
    for b in 0..<B { for y in 0..<H { for x in 0..<W {
        M[(b * H + y) * W + x] = Double(mask[(b * (H / P) + y / P) * (W / P) + x / P])
    } } }
    return M
}

/// Naive `maskedL1Forward`: the mask upsampled to pixels first, then the formula in Double.
public func maskedL1ForwardReference(denominator: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
                                     target: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                                     B: Int, C: Int, H: Int, W: Int, P: Int) -> Float {
    let M = pixelMask(mask, B: B, H: H, W: W, P: P)
    var total = 0.0
    for b in 0..<B { for c in 0..<C { for p in 0..<H * W {
        let i = (b * C + c) * H * W + p
        total += abs(Double(prediction[i]) - Double(target[i])) * M[b * H * W + p]
    } } }
    let d = (M.reduce(0, +) + 1e-5) * Double(C)
    denominator[0] = Float(d)
    return Float(total / d)
}

/// Naive `maskedL1Backward`, in Double.
public func maskedL1BackwardReference(dprediction: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
                                      target: UnsafePointer<Float>, mask: UnsafePointer<Float>, denominator: Float,
                                      dloss: Float, B: Int, C: Int, H: Int, W: Int, P: Int) {
    let M = pixelMask(mask, B: B, H: H, W: W, P: P)
    for b in 0..<B { for c in 0..<C { for p in 0..<H * W {
        let i = (b * C + c) * H * W + p
        let d = Double(prediction[i]) - Double(target[i])
        let sign: Double = d > 0 ? 1 : d < 0 ? -1 : 0
        dprediction[i] += Float(Double(dloss) * sign * M[b * H * W + p] / Double(denominator))
    } } }
}
