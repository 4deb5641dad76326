import TandemTensor

/// SimMIM's random masking (Xie et al. 2022, `MaskGenerator`): the image is cut into a grid of mask
/// patches of `maskPatchSize` pixels, ceil(ratio x count) of them are chosen uniformly without
/// replacement, and the choice is spread over the model's patches (each mask patch covers
/// (maskPatchSize / patchSize)² of them). The draw is a pure function of (seed, epoch, sample), so a
/// resumed run, on any number of ranks, masks the same patches.
public struct PatchMasking: Sendable {
    public static let stream: UInt64 = 0x4D49_4D4B

    public let imageSize: Int
    public let patchSize: Int
    public let maskPatchSize: Int
    public let ratio: Float
    public let seed: UInt64

    /// Errors name the config key: the mask patch must be a multiple of the model's patch and tile the image.
    public init(imageSize: Int, patchSize: Int, maskPatchSize: Int, ratio: Float, seed: UInt64) throws {
        guard maskPatchSize % patchSize == 0, imageSize % maskPatchSize == 0 else {
            throw DataError.invalidArgument("data.mask_patch_size = \(maskPatchSize) must be a multiple of the model's patch_size (\(patchSize)) and divide image_size (\(imageSize))")
        }
        guard ratio > 0, ratio < 1 else { throw DataError.invalidArgument("data.mask_ratio = \(ratio) must lie strictly between 0 and 1") }
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.maskPatchSize = maskPatchSize
        self.ratio = ratio
        self.seed = seed
    }

    /// Mask patches per side.
    public var grid: Int { imageSize / maskPatchSize }
    /// Masked mask-patches per image.
    public var maskedCount: Int { Int((Float(grid * grid) * ratio).rounded(.up)) }

    /// Writes the (NP) model-patch mask of `sample` in `epoch` (1 masked, 0 kept) to `out`, in row-major
    /// patch order. `scratch` holds grid² Ints. A partial Fisher-Yates over the mask patches.
    public func fill(epoch: Int, sample: Int, into out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Int>) {
        let g = grid, n = g * g, scale = maskPatchSize / patchSize, side = g * scale
        for i in 0..<n { scratch[i] = i }
        out.update(repeating: 0, count: side * side)
        let rng = Philox(seed: seed)
        let step = UInt64(truncatingIfNeeded: epoch) &<< 40 ^ UInt64(truncatingIfNeeded: sample)
        for k in 0..<maskedCount {
            let j = k + rng.below(n - k, stream: Self.stream, step: step, index: UInt64(k))
            scratch.swapAt(k, j)
            let cell = scratch[k], row = cell / g, col = cell % g
            for dy in 0..<scale {
                for dx in 0..<scale { out[(row * scale + dy) * side + col * scale + dx] = 1 }
            }
        }
    }
}

private extension UnsafeMutablePointer<Int> {
    func swapAt(_ i: Int, _ j: Int) { let t = self[i]; self[i] = self[j]; self[j] = t }
}
