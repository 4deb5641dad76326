import Foundation
import TandemTensor

/// BEiT's blockwise masking (Bao et al. 2022, §2.3 and Algorithm 1; unilm's `beit/masking_generator.py`
/// `MaskingGenerator`): rectangles of patches are masked one after another until `numMaskingPatches` are
/// masked. Each draw picks a target area uniform between `minNumPatches` and the patches still to mask
/// (at most `maxNumPatches`), an aspect ratio log-uniform in [minAspect, maxAspect], the rectangle
/// h = round(√(area r)), w = round(√(area / r)) (strictly smaller than the grid), and a uniform position;
/// the rectangle is kept when it masks at least one new patch and no more than are still to mask.
///
/// Two differences from unilm, both documented choices: a rectangle smaller than min(minNumPatches,
/// patches still to mask) is rejected (unilm keeps the 14-patch rectangles that rounding makes of a
/// 16-patch area at aspect 3), so every block has at least min_num_patches patches except the last
/// ones, which may be as small as the remainder; and unilm gives up after one round of 10 failed draws,
/// this after `maxAttempts` consecutive failed draws (1000 by default). The count never exceeds
/// numMaskingPatches and falls short only when maxAttempts draws in a row place nothing: at BEiT's
/// setting (75 of 14x14, blocks of 16) that happened to 680 of 2000 samples after 10 draws, 9 after 100,
/// none after 1000, at the same speed (the last patches are what needs the draws).
///
/// The draws are a pure function of (seed, epoch, sample) through Philox, one block of four words per
/// draw, so any rank, and a resumed run, masks a sample the same way.
public struct BlockMasking: Sendable {
    public static let stream: UInt64 = 0x4245_4954

    /// The patch grid: rows and columns.
    public let height: Int, width: Int
    public let numMaskingPatches: Int
    public let minNumPatches: Int
    public let maxNumPatches: Int
    public let minAspect: Double, maxAspect: Double
    public let maxAttempts: Int
    public let seed: UInt64

    /// A rectangle of patches: rows top..<top + height, columns left..<left + width.
    public struct Block: Equatable, Sendable {
        public let top: Int, left: Int, height: Int, width: Int
        public var area: Int { height * width }
    }

    /// unilm's arguments (max_num_patches nil: num_masking_patches; max_aspect nil: 1 / min_aspect).
    /// Errors name the setting: sizes out of range, or a setting under which no first block can ever be
    /// placed (no rectangle smaller than the grid with the allowed aspect ratios has between
    /// min(min_num_patches, limit) and limit patches, limit = min(num_masking_patches, max_num_patches)),
    /// which would mask nothing.
    public init(height: Int, width: Int, numMaskingPatches: Int, minNumPatches: Int = 16, maxNumPatches: Int? = nil,
                minAspect: Double = 0.3, maxAspect: Double? = nil, maxAttempts: Int = 1000, seed: UInt64) throws {
        let maxAspect = maxAspect ?? 1 / minAspect, maxNumPatches = maxNumPatches ?? numMaskingPatches
        guard height >= 2, width >= 2 else {
            throw DataError.invalidArgument("block masking: a \(height)x\(width) patch grid has no block smaller than itself (blocks must be narrower and shorter than the grid)")
        }
        guard numMaskingPatches >= 1, numMaskingPatches <= height * width else {
            throw DataError.invalidArgument("block masking: num_masking_patches = \(numMaskingPatches) must lie in 1...\(height * width), the patches of a \(height)x\(width) grid")
        }
        guard minNumPatches >= 1, maxNumPatches >= 1, maxAttempts >= 1 else {
            throw DataError.invalidArgument("block masking: min_num_patches (\(minNumPatches)), max_num_patches (\(maxNumPatches)) and the attempts (\(maxAttempts)) must be positive")
        }
        guard minAspect > 0, maxAspect >= minAspect else {
            throw DataError.invalidArgument("block masking: the aspect ratios [\(minAspect), \(maxAspect)] must be positive and in order")
        }
        self.height = height; self.width = width; self.numMaskingPatches = numMaskingPatches
        self.minNumPatches = minNumPatches; self.maxNumPatches = maxNumPatches
        self.minAspect = minAspect; self.maxAspect = maxAspect; self.maxAttempts = maxAttempts; self.seed = seed
        let limit = min(numMaskingPatches, maxNumPatches), smallest = min(minNumPatches, limit)
        let placeable = (1..<height).contains { h in
            (1..<width).contains { w in
                let ratio = Double(h) / Double(w)
                return h * w >= smallest && h * w <= limit && ratio >= minAspect * (1 - 1e-12) && ratio <= maxAspect * (1 + 1e-12)
            }
        }
        guard placeable else {
            throw DataError.invalidArgument("block masking would mask nothing: no block of \(smallest)...\(limit) patches "
                + "(min_num_patches \(minNumPatches), num_masking_patches \(numMaskingPatches), max_num_patches \(maxNumPatches)) "
                + "with aspect ratio in [\(minAspect), \(maxAspect)] fits a \(height)x\(width) patch grid below its full height and width")
        }
    }

    /// BEiT's setting on a grid x grid patch grid: `ratio` of the patches (rounded; BEiT masks 75 of 196,
    /// 38%), blocks of at least 16 patches, aspect ratios in [0.3, 1/0.3].
    public init(grid: Int, ratio: Double = 0.4, seed: UInt64) throws {
        try self.init(height: grid, width: grid, numMaskingPatches: Int((ratio * Double(grid * grid)).rounded()), seed: seed)
    }

    /// Patches per image, NP.
    public var numPatches: Int { height * width }

    /// Writes the (NP) mask of `sample` in `epoch`, row-major, 1 masked and 0 kept, to `out` and returns
    /// how many patches it masked (numMaskingPatches unless maxAttempts draws in a row failed).
    /// `onBlock` sees every block kept, in order, with the patches still to mask before it.
    @discardableResult
    public func fill(epoch: Int, sample: Int, into out: UnsafeMutablePointer<Float>,
                     onBlock: ((_ block: Block, _ remainingBefore: Int) -> Void)? = nil) -> Int {
        out.update(repeating: 0, count: numPatches)
        let rng = Philox(seed: seed)
        let step = UInt64(truncatingIfNeeded: epoch) &<< 40 ^ UInt64(truncatingIfNeeded: sample)
        let logMin = Foundation.log(minAspect), logMax = Foundation.log(maxAspect)
        var count = 0, failures = 0, draw: UInt64 = 0
        while count < numMaskingPatches && failures < maxAttempts {
            let remaining = min(numMaskingPatches - count, maxNumPatches)
            let words = rng.block(stream: Self.stream, step: step, index: draw)
            draw += 1
            failures += 1
            // Python's random.uniform(a, b) = a + (b - a) U, whichever of a, b is larger.
            let area = Double(minNumPatches) + Double(remaining - minNumPatches) * unit(words.0)
            let aspect = Foundation.exp(logMin + (logMax - logMin) * unit(words.1))
            // Python's round: halves to even.
            let h = Int((area * aspect).squareRoot().rounded(.toNearestOrEven))
            let w = Int((area / aspect).squareRoot().rounded(.toNearestOrEven))
            guard h >= 1, w >= 1, h < height, w < width, h * w >= min(minNumPatches, remaining) else { continue }
            let top = below(height - h + 1, words.2), left = below(width - w + 1, words.3)
            var fresh = 0
            for i in top..<top + h { for j in left..<left + w where out[i * width + j] == 0 { fresh += 1 } }
            guard fresh > 0, fresh <= remaining else { continue }
            for i in top..<top + h { for j in left..<left + w { out[i * width + j] = 1 } }
            onBlock?(Block(top: top, left: left, height: h, width: w), numMaskingPatches - count)
            count += fresh
            failures = 0
        }
        return count
    }

    /// The mask of `sample` in `epoch` as NP Bools (a convenience over `fill`).
    public func mask(epoch: Int, sample: Int) -> [Bool] {
        var out = [Float](repeating: 0, count: numPatches)
        out.withUnsafeMutableBufferPointer { _ = fill(epoch: epoch, sample: sample, into: $0.baseAddress!) }
        return out.map { $0 != 0 }
    }

    /// A 32-bit word as a uniform in [0, 1).
    private func unit(_ word: UInt32) -> Double { Double(word) / 4_294_967_296 }
    /// A 32-bit word as a uniform integer in 0..<bound (multiply-shift).
    private func below(_ bound: Int, _ word: UInt32) -> Int { Int((UInt64(word) &* UInt64(bound)) >> 32) }
}
