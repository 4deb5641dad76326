/// Nearest-neighbour upsampling by 2 on channels-last images, PyTorch's
/// `nn.Upsample(scale_factor=2, mode="nearest")`: output pixel (2h + i, 2w + j), i, j in {0, 1}, is a
/// copy of input pixel (h, w). The VQ-VAE decoder's way back up between convolutions.

/// out (B, 2H, 2W, C) from inp (B, H, W, C), each pixel's C floats copied to its 2 x 2 children.
public func upsampleNearest2xForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, B: Int, H: Int,
                                     W: Int, C: Int) {
    for b in 0..<B {
        for h in 0..<H {
            // Output row 2h is built from the input row, then copied whole to row 2h + 1.
            let x = inp + (b * H + h) * W * C, y = out + (b * 2 * H + 2 * h) * 2 * W * C
            for w in 0..<W {
                (y + 2 * w * C).update(from: x + w * C, count: C)
                (y + (2 * w + 1) * C).update(from: x + w * C, count: C)
            }
            (y + 2 * W * C).update(from: y, count: 2 * W * C)
        }
    }
}

/// dinp (B, H, W, C) += the sum of dout (B, 2H, 2W, C) over each pixel's 2 x 2 children.
public func upsampleNearest2xBackward(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, B: Int, H: Int,
                                      W: Int, C: Int) {
    for b in 0..<B {
        for h in 0..<H {
            let dx = dinp + (b * H + h) * W * C, dy = dout + (b * 2 * H + 2 * h) * 2 * W * C
            for w in 0..<W {
                // The children in output rows 2h and 2h + 1 (2W pixels further), columns 2w and 2w + 1.
                for i in 0..<2 {
                    for j in 0..<2 {
                        residualBackward(da: dx + w * C, db: nil, dout: dy + (i * 2 * W + 2 * w + j) * C, count: C)
                    }
                }
            }
        }
    }
}

// MARK: - Reference

/// Naive `upsampleNearest2xForward`, element by element from the index formula out[y, x] = inp[y / 2, x / 2].
public func upsampleNearest2xForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, B: Int,
                                              H: Int, W: Int, C: Int) {
    for b in 0..<B {
        for y in 0..<2 * H {
            for x in 0..<2 * W {
                for c in 0..<C { out[((b * 2 * H + y) * 2 * W + x) * C + c] = inp[((b * H + y / 2) * W + x / 2) * C + c] }
            }
        }
    }
}

/// Naive `upsampleNearest2xBackward` in Double.
public func upsampleNearest2xBackwardReference(dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, B: Int,
                                               H: Int, W: Int, C: Int) {
    var dx = [Double](repeating: 0, count: B * H * W * C)
    for b in 0..<B {
        for y in 0..<2 * H {
            for x in 0..<2 * W {
                for c in 0..<C { dx[((b * H + y / 2) * W + x / 2) * C + c] += Double(dout[((b * 2 * H + y) * 2 * W + x) * C + c]) }
            }
        }
    }
    for i in 0..<dx.count { dinp[i] += Float(dx[i]) }
}
