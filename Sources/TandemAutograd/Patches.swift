import TandemKernels

// Images as rows of patches and back (Dosovitskiy et al. 2021): patches as rows make a Conv2d with
// kernel = stride = P one `linear`, and the inverse turns channels-last rows back into images (a pixel
// shuffle). Shapes follow Hugging Face's `modeling_vit.py`.

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
}
