/// Patch extraction for ViT (Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021): turning images
/// into rows of flattened P x P patches makes Hugging Face's `ViTPatchEmbeddings` (a Conv2d with
/// kernel = stride = P) a plain `linearForward` with the conv weight (OC, C, P, P) viewed as (OC, C*P*P).

/// out (B, NP, C*P*P) from pixels (B, C, H, W), NP = (H/P) (W/P) patches in row-major order (patch row,
/// then patch column), each flattened in (c, py, px) order to match the conv weight. H and W must be
/// multiples of P (checked).
public func patchesForward(out: UnsafeMutablePointer<Float>, pixels: UnsafePointer<Float>,
                           B: Int, C: Int, H: Int, W: Int, P: Int) {
    precondition(P > 0 && H % P == 0 && W % P == 0, "patches: \(H)x\(W) image is not a multiple of P = \(P)")
    forEachPatchRow(B: B, C: C, H: H, W: W, P: P) { dst, src in (out + dst).update(from: pixels + src, count: P) }
}

/// dpixels (B, C, H, W) += the gradient of `patchesForward`, dout (B, NP, C*P*P) scattered back (patches
/// do not overlap, so each pixel receives exactly one element).
public func patchesBackward(dpixels: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                            B: Int, C: Int, H: Int, W: Int, P: Int) {
    precondition(P > 0 && H % P == 0 && W % P == 0, "patches: \(H)x\(W) image is not a multiple of P = \(P)")
    forEachPatchRow(B: B, C: C, H: H, W: W, P: P) { dst, src in
        for (i, lanes) in chunks(P) { accumulate(load(dout + dst + i, lanes: lanes), into: dpixels + src + i, lanes: lanes) }
    }
}

/// Calls `body(outOffset, pixelOffset)` for every run of P contiguous pixels: one image row of one patch
/// in one channel.
@inline(__always)
func forEachPatchRow(B: Int, C: Int, H: Int, W: Int, P: Int, _ body: (Int, Int) -> Void) {
    let rows = H / P, cols = W / P, patchSize = C * P * P
    for b in 0..<B {
        for pr in 0..<rows {
            for pc in 0..<cols {
                let dst = (b * rows * cols + pr * cols + pc) * patchSize
                for c in 0..<C {
                    for py in 0..<P {
                        body(dst + (c * P + py) * P, ((b * C + c) * H + pr * P + py) * W + pc * P)
                    }
                }
            }
        }
    }
}

// MARK: - Reference

/// Naive `patchesForward`, element by element from the index formula.
public func patchesForwardReference(out: UnsafeMutablePointer<Float>, pixels: UnsafePointer<Float>,
                                    B: Int, C: Int, H: Int, W: Int, P: Int) {
    let cols = W / P, np = (H / P) * cols, k = C * P * P
    for b in 0..<B {
        for patch in 0..<np {
            for e in 0..<k {
                let c = e / (P * P), py = (e / P) % P, px = e % P
                let y = (patch / cols) * P + py, x = (patch % cols) * P + px
                out[(b * np + patch) * k + e] = pixels[((b * C + c) * H + y) * W + x]
            }
        }
    }
}

/// Naive `patchesBackward`.
public func patchesBackwardReference(dpixels: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
                                     B: Int, C: Int, H: Int, W: Int, P: Int) {
    let cols = W / P, np = (H / P) * cols, k = C * P * P
    for b in 0..<B {
        for patch in 0..<np {
            for e in 0..<k {
                let c = e / (P * P), py = (e / P) % P, px = e % P
                let y = (patch / cols) * P + py, x = (patch % cols) * P + px
                dpixels[((b * C + c) * H + y) * W + x] += dout[(b * np + patch) * k + e]
            }
        }
    }
}
