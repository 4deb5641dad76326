import Foundation

// MARK: - Options

/// Per-sample image augmentation for ViT training: torchvision's `RandomResizedCrop(S, scale, ratio)`,
/// `RandomHorizontalFlip(0.5)`, `ToTensor()` and `Normalize(mean, std)`, as one fused pass.
public struct AugmentationOptions: Equatable, Sendable {
    /// Side S of the square output.
    public var outputSize: Int
    /// Train view: a random crop of area fraction in [scaleMin, scaleMax] and aspect ratio in
    /// [ratioMin, ratioMax], resized to S x S. When false the whole image is resized to S x S.
    public var randomResizedCrop: Bool
    public var scaleMin: Float
    public var scaleMax: Float
    /// Aspect ratio (width / height) bounds, sampled log-uniformly as torchvision does.
    public var ratioMin: Float
    public var ratioMax: Float
    /// Train view: mirror left-right with probability 0.5.
    public var horizontalFlip: Bool
    /// Per channel, in pixel/255 units: outputs are (x/255 - mean[c]) / std[c].
    public var mean: [Float]
    public var std: [Float]

    public init(outputSize: Int, randomResizedCrop: Bool = true, scaleMin: Float = 0.08, scaleMax: Float = 1,
                ratioMin: Float = 3.0 / 4, ratioMax: Float = 4.0 / 3, horizontalFlip: Bool = true,
                mean: [Float], std: [Float]) {
        self.outputSize = outputSize
        self.randomResizedCrop = randomResizedCrop
        self.scaleMin = scaleMin
        self.scaleMax = scaleMax
        self.ratioMin = ratioMin
        self.ratioMax = ratioMax
        self.horizontalFlip = horizontalFlip
        self.mean = mean
        self.std = std
    }
}

// MARK: - Augmenter

/// Turns one u8 HWC image (H x W x C) into a normalised Float32 CHW view (C x S x S).
///
/// Every random choice is a pure function of (seed, epoch, sample index), drawn from `Philox`, so a
/// resumed run on any number of ranks replays the same views:
/// - crop: `block(stream: cropStream, step: epoch, index: sample << 4 | attempt)`, words 0..3 =
///   area fraction, log aspect ratio, top, left (torchvision's 10 attempts, then its centre-crop fallback);
/// - flip: `uniform(stream: flipStream, step: epoch, index: sample) < 0.5`.
///
/// Resampling is Pillow's / torchvision's (`antialias=True`) separable bilinear filter: a triangle of
/// half-width max(1, in/out) around each output pixel's centre (half-pixel convention), weights
/// renormalised at the borders. Upscaling is therefore plain bilinear with edge clamping, downscaling
/// an area-weighted average without aliasing. The horizontal pass runs over the crop's rows into a
/// (C, h, S) scratch; the vertical pass sums S-wide rows of it, normalises and writes CHW.
///
/// Scratch buffers are allocated once in `init`: `train` and `eval` allocate nothing. Not thread-safe:
/// one augmenter per thread.
public final class ImageAugmenter {
    public let options: AugmentationOptions
    public let inputHeight: Int, inputWidth: Int, channels: Int
    public let rng: Philox

    /// Philox streams of the crop and flip draws (distinct from the sampler's 0x5341_4D50, the text
    /// pipeline's 0x4E53_50xx / 0x4D4C_4D4D, and the small integers of dropout and initialisation).
    public static let cropStream: UInt64 = 0x4155_4352, flipStream: UInt64 = 0x4155_464C

    private let S: Int
    private let isIdentitySize: Bool
    private let evalX: FilterTable, evalY: FilterTable     // whole image -> S, computed once
    private let trainX: FilterTable, trainY: FilterTable   // crop -> S, refilled per call
    private let rowF: UnsafeMutablePointer<Float>          // (W*C + 1) one input row as Float
    private let tmp: UnsafeMutablePointer<Float>           // (C, H, S) after the horizontal pass
    private let table: UnsafeMutablePointer<Float>         // (C, 256) (v/255 - mean)/std for every byte v
    // (C) the normalisation fused into the resampler: v * gain + offset = (v/255 - mean)/std up to rounding.
    private let gain: UnsafeMutablePointer<Float>, offset: UnsafeMutablePointer<Float>

    public init(options: AugmentationOptions, inputHeight: Int, inputWidth: Int, channels: Int, seed: UInt64) {
        precondition(options.outputSize > 0 && inputHeight > 0 && inputWidth > 0 && channels > 0, "image sizes must be positive")
        precondition(options.mean.count == channels && options.std.count == channels,
                     "mean and std need one value per channel (\(channels)), got \(options.mean.count) and \(options.std.count)")
        precondition(options.std.allSatisfy { $0 > 0 }, "std must be positive")
        precondition(0 < options.scaleMin && options.scaleMin <= options.scaleMax && options.scaleMax <= 1,
                     "crop scale must satisfy 0 < min <= max <= 1")
        precondition(0 < options.ratioMin && options.ratioMin <= options.ratioMax, "crop ratio must satisfy 0 < min <= max")
        self.options = options
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.channels = channels
        self.rng = Philox(seed: seed)
        let S = options.outputSize
        self.S = S
        isIdentitySize = inputHeight == S && inputWidth == S
        evalX = FilterTable(maxInput: inputWidth, output: S)
        evalY = FilterTable(maxInput: inputHeight, output: S)
        trainX = FilterTable(maxInput: inputWidth, output: S)
        trainY = FilterTable(maxInput: inputHeight, output: S)
        evalX.fill(input: inputWidth)
        evalY.fill(input: inputHeight)
        rowF = .allocate(capacity: inputWidth * channels + 1)   // + 1: the 4-wide loads of the last RGB pixel
        rowF[inputWidth * channels] = 0
        tmp = .allocate(capacity: inputHeight * S * channels)
        table = .allocate(capacity: channels * 256)
        gain = .allocate(capacity: channels)
        offset = .allocate(capacity: channels)
        for c in 0..<channels {
            let m = options.mean[c], s = options.std[c]
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - m) / s }
            gain[c] = Float(1 / (255 * Double(s)))
            offset[c] = Float(-Double(m) / Double(s))
        }
    }

    deinit {
        rowF.deallocate(); tmp.deallocate(); table.deallocate(); gain.deallocate(); offset.deallocate()
    }

    /// Training view of one sample: crop and flip drawn from (seed, epoch, sample), bilinear resample to
    /// S x S, (x/255 - mean)/std, written CHW Float32 (C x S x S) to `out`.
    public func train(_ pixels: UnsafePointer<UInt8>, epoch: Int, sample: Int, into out: UnsafeMutablePointer<Float>) {
        let flip = options.horizontalFlip && flips(epoch: epoch, sample: sample)
        if options.randomResizedCrop {
            render(pixels, box: cropBox(epoch: epoch, sample: sample), flip: flip, into: out)
        } else {
            resample(pixels, top: 0, left: 0, height: inputHeight, xs: evalX, ys: evalY, flip: flip, into: out)
        }
    }

    /// Evaluation view: the whole image resized to S x S when its size differs (no crop, no flip),
    /// normalised, CHW.
    public func eval(_ pixels: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>) {
        if isIdentitySize {
            normalise(pixels, into: out)
        } else {
            resample(pixels, top: 0, left: 0, height: inputHeight, xs: evalX, ys: evalY, flip: false, into: out)
        }
    }

    /// The view of rows [top, top + height) x columns [left, left + width), resampled to S x S, mirrored
    /// when `flip`, normalised, CHW.
    func render(_ pixels: UnsafePointer<UInt8>, box: (top: Int, left: Int, height: Int, width: Int), flip: Bool,
                into out: UnsafeMutablePointer<Float>) {
        precondition(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0
                     && box.top + box.height <= inputHeight && box.left + box.width <= inputWidth, "crop box outside the image")
        trainX.fill(input: box.width)
        trainY.fill(input: box.height)
        resample(pixels, top: box.top, left: box.left, height: box.height, xs: trainX, ys: trainY, flip: flip, into: out)
    }

    // MARK: Draws

    /// torchvision `RandomResizedCrop.get_params`: up to 10 attempts of (area fraction ~ U(scale),
    /// log ratio ~ U(log ratio)), w = round(sqrt(area * ratio)), h = round(sqrt(area / ratio)), accepted
    /// when it fits; then top ~ U{0..H-h}, left ~ U{0..W-w}. Otherwise the centre crop of the whole
    /// image clamped to the ratio range.
    func cropBox(epoch: Int, sample: Int) -> (top: Int, left: Int, height: Int, width: Int) {
        precondition(epoch >= 0 && sample >= 0 && sample < 1 << 59, "epoch and sample must be non-negative")
        let H = inputHeight, W = inputWidth
        let area = Double(H * W)
        let scale0 = Double(options.scaleMin), scale1 = Double(options.scaleMax)
        let logRatio0 = Foundation.log(Double(options.ratioMin)), logRatio1 = Foundation.log(Double(options.ratioMax))
        for attempt in 0..<10 {
            let b = rng.block(stream: Self.cropStream, step: UInt64(epoch), index: UInt64(sample) << 4 | UInt64(attempt))
            let target = area * (scale0 + (scale1 - scale0) * unitInterval(b.0))
            let aspect = Foundation.exp(logRatio0 + (logRatio1 - logRatio0) * unitInterval(b.1))
            let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= W && h > 0 && h <= H {
                return (uniformBelow(b.2, H - h + 1), uniformBelow(b.3, W - w + 1), h, w)
            }
        }
        let inRatio = Double(W) / Double(H)
        var w = W, h = H
        if inRatio < Double(options.ratioMin) {
            h = Int((Double(w) / Double(options.ratioMin)).rounded(.toNearestOrEven))
        } else if inRatio > Double(options.ratioMax) {
            w = Int((Double(h) * Double(options.ratioMax)).rounded(.toNearestOrEven))
        }
        return ((H - h) / 2, (W - w) / 2, h, w)
    }

    /// Whether sample `sample` of epoch `epoch` is mirrored (when flipping is on).
    func flips(epoch: Int, sample: Int) -> Bool {
        rng.uniform(stream: Self.flipStream, step: UInt64(epoch), index: UInt64(sample)) < 0.5
    }

    // MARK: Kernels

    /// (x/255 - mean)/std from HWC u8 to CHW, same size.
    private func normalise(_ pixels: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>) {
        let C = channels, HW = inputHeight * inputWidth
        for c in 0..<C {
            let t = table + c * 256, o = out + c * HW
            for i in 0..<HW { o[i] = t[Int(pixels[i * C + c])] }
        }
    }

    /// Resamples rows [top, top + height) x columns [left, left + xs.input) to S x S with the filter
    /// tables (weights relative to the box), mirrors if asked, normalises and writes CHW.
    private func resample(_ pixels: UnsafePointer<UInt8>, top: Int, left: Int, height: Int,
                          xs: FilterTable, ys: FilterTable, flip: Bool, into out: UnsafeMutablePointer<Float>) {
        let C = channels, S = self.S, W = inputWidth
        let width = xs.input, planeH = height * S
        // Horizontal pass: (height, width, C) u8 -> (C, height, S) Float. The taps of one output pixel
        // are shared by its channels, so this pass reads interleaved pixels and writes planes.
        for r in 0..<height {
            let src = pixels + ((top + r) * W + left) * C
            for i in 0..<width * C { rowF[i] = Float(src[i]) }
            let dst = tmp + r * S
            for ox in 0..<S {
                let first = xs.start[ox] * C, n = xs.count[ox]
                let wt = xs.weights + ox * xs.maxTaps
                let o = dst + (flip ? S - 1 - ox : ox)
                switch C {
                case 1:
                    var a: Float = 0
                    let p = rowF + first
                    for k in 0..<n { a += wt[k] * p[k] }
                    o[0] = a
                case 3:
                    // One 4-wide multiply-add per tap; lane 3 (the next pixel's red, or the row's
                    // padding) is discarded.
                    var a = SIMD4<Float>()
                    var p = UnsafeRawPointer(rowF + first)
                    for k in 0..<n {
                        a += wt[k] * p.loadUnaligned(as: SIMD4<Float>.self)
                        p += 3 * MemoryLayout<Float>.stride
                    }
                    o[0] = a[0]; o[planeH] = a[1]; o[2 * planeH] = a[2]
                default:
                    for c in 0..<C {
                        var a: Float = 0
                        for k in 0..<n { a += wt[k] * rowF[first + k * C + c] }
                        o[c * planeH] = a
                    }
                }
            }
        }
        // Vertical pass, per channel and output row: a weighted sum of S-wide rows, then the
        // normalisation, written straight into the CHW output.
        for c in 0..<C {
            let g = gain[c], b = offset[c]
            let plane = tmp + c * planeH
            for oy in 0..<S {
                let n = ys.count[oy]
                let wt = ys.weights + oy * ys.maxTaps
                let r0 = plane + ys.start[oy] * S
                let o = out + (c * S + oy) * S
                switch n {
                case 1:
                    let w0 = wt[0] * g
                    for i in 0..<S { o[i] = w0 * r0[i] + b }
                case 2:
                    let w0 = wt[0] * g, w1 = wt[1] * g, r1 = r0 + S
                    for i in 0..<S { o[i] = w0 * r0[i] + w1 * r1[i] + b }
                case 3:
                    let w0 = wt[0] * g, w1 = wt[1] * g, w2 = wt[2] * g, r1 = r0 + S, r2 = r1 + S
                    for i in 0..<S { o[i] = w0 * r0[i] + w1 * r1[i] + w2 * r2[i] + b }
                default:
                    let w0 = wt[0], w1 = wt[1], r1 = r0 + S
                    for i in 0..<S { o[i] = w0 * r0[i] + w1 * r1[i] }
                    var k = 2
                    while k < n {
                        let w = wt[k], r = r0 + k * S
                        for i in 0..<S { o[i] += w * r[i] }
                        k += 1
                    }
                    for i in 0..<S { o[i] = o[i] * g + b }
                }
            }
        }
    }
}

// MARK: - Filter tables

/// Per output index of one axis: the first input index (relative to the crop), the number of taps and
/// their weights, for an input extent of up to `maxInput` resampled to `output`.
final class FilterTable {
    let output: Int, maxTaps: Int
    private(set) var input: Int = 0
    let start: UnsafeMutablePointer<Int>    // (output)
    let count: UnsafeMutablePointer<Int>    // (output)
    let weights: UnsafeMutablePointer<Float> // (output, maxTaps)

    init(maxInput: Int, output: Int) {
        self.output = output
        // The triangle of half-width `support` covers at most 2 * support + 1 input pixels.
        let support = max(Double(maxInput) / Double(output), 1)
        maxTaps = Int((2 * support).rounded(.up)) + 2
        start = .allocate(capacity: output)
        count = .allocate(capacity: output)
        weights = .allocate(capacity: output * maxTaps)
    }

    deinit { start.deallocate(); count.deallocate(); weights.deallocate() }

    /// Pillow's `precompute_coeffs` for the bilinear (triangle) filter, which torchvision's
    /// `antialias=True` matches: centre = (o + 0.5) * scale, half-width = max(scale, 1), weight of
    /// input x = tri((x + 0.5 - centre) / max(scale, 1)), normalised to sum 1.
    func fill(input: Int) {
        precondition(input > 0 && Int((2 * max(Double(input) / Double(output), 1)).rounded(.up)) + 2 <= maxTaps)
        self.input = input
        let scale = Double(input) / Double(output)
        let filterScale = max(scale, 1)
        let support = filterScale
        let invFilterScale = 1 / filterScale
        for o in 0..<output {
            let centre = (Double(o) + 0.5) * scale
            // Truncation toward zero, as Pillow's (int) casts.
            let lo = max(Int(centre - support + 0.5), 0)
            let hi = min(Int(centre + support + 0.5), input)
            let n = hi - lo
            let w = weights + o * maxTaps
            var total = 0.0
            for k in 0..<n { total += max(0, 1 - abs((Double(lo + k) - centre + 0.5) * invFilterScale)) }
            let inv = total > 0 ? 1 / total : 0
            for k in 0..<n { w[k] = Float(max(0, 1 - abs((Double(lo + k) - centre + 0.5) * invFilterScale)) * inv) }
            start[o] = lo
            count[o] = n
        }
    }
}

// MARK: - Uniform helpers

/// A 32-bit word as a Double in [0, 1).
@inline(__always) func unitInterval(_ x: UInt32) -> Double { Double(x) * (1.0 / 4_294_967_296.0) }

/// A 32-bit word as an integer in 0..<bound (multiply-shift; bias below bound / 2^32).
@inline(__always) func uniformBelow(_ x: UInt32, _ bound: Int) -> Int {
    Int((UInt64(x) &* UInt64(bound)) >> 32)
}

// MARK: - Benchmark

extension ImageAugmenter {
    /// Single-thread throughput of `train` (random resized crop + flip) and `eval` for the usual sizes:
    /// MNIST 28x28x1 -> 28, CIFAR 32x32x3 -> 32, ImageNet-like 256x256x3 -> 224. One line per case,
    /// images per second of one thread's CPU time. For `tandem bench`.
    public static func benchmark(secondsPerCase: Double = 0.5) -> String {
        let cases: [(name: String, H: Int, W: Int, C: Int, S: Int)] = [
            ("28x28x1 -> 28", 28, 28, 1, 28), ("32x32x3 -> 32", 32, 32, 3, 32), ("256x256x3 -> 224", 256, 256, 3, 224),
        ]
        var lines: [String] = []
        for (name, H, W, C, S) in cases {
            var state: UInt64 = 0x1234_5678
            let pixels = (0..<H * W * C).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            let options = AugmentationOptions(outputSize: S, mean: [Float](repeating: 0.5, count: C),
                                              std: [Float](repeating: 0.25, count: C))
            let augmenter = ImageAugmenter(options: options, inputHeight: H, inputWidth: W, channels: C, seed: 1)
            let out = UnsafeMutablePointer<Float>.allocate(capacity: C * S * S)
            defer { out.deallocate() }
            // Per core: the thread's CPU time, so that other processes on a shared machine do not count.
            func rate(_ body: (Int) -> Void) -> Double { ThreadCPUTime.rate(seconds: secondsPerCase, batch: 16, body) }
            let train = pixels.withUnsafeBufferPointer { p in rate { augmenter.train(p.baseAddress!, epoch: 0, sample: $0, into: out) } }
            let eval = pixels.withUnsafeBufferPointer { p in rate { _ in augmenter.eval(p.baseAddress!, into: out) } }
            lines.append(String(format: "augment %@: train (random resized crop + flip) %.0f images/s, eval %.0f images/s (per core)",
                                name, train, eval))
        }
        return lines.joined(separator: "\n")
    }
}
