import Foundation

// MARK: - Options

/// Batch-level mixing for ViT training, as timm's `Mixup` (mode "batch", mix probability 1).
public struct MixingOptions: Equatable, Sendable {
    /// Beta(alpha, alpha) parameter of mixup; 0 turns mixup off.
    public var mixupAlpha: Float
    /// Beta(alpha, alpha) parameter of cutmix; 0 turns cutmix off.
    public var cutmixAlpha: Float
    /// When both are on: the probability that a batch uses cutmix rather than mixup (timm's 0.5).
    public var switchProbability: Float
    /// eps of the smoothed one-hot targets: 1 - eps + eps/K on the label, eps/K elsewhere.
    public var labelSmoothing: Float

    public init(mixupAlpha: Float = 0, cutmixAlpha: Float = 0, switchProbability: Float = 0.5, labelSmoothing: Float = 0) {
        self.mixupAlpha = mixupAlpha
        self.cutmixAlpha = cutmixAlpha
        self.switchProbability = switchProbability
        self.labelSmoothing = labelSmoothing
    }

    /// Mixup or cutmix is on (label smoothing alone is the loss's business).
    public var isActive: Bool { mixupAlpha > 0 || cutmixAlpha > 0 }
}

// MARK: - Mixer

/// Mixes a normalised (B, C, S, S) batch in place with its reverse (sample b with sample B-1-b) and
/// writes the matching soft targets (B, K), as timm's `Mixup` in batch mode.
///
/// All draws are a pure function of (seed, epoch, batchIndex), on Philox stream `mixStream`, step
/// `epoch`, index `batchIndex << 32 | k`: k = 0 gives the mixup/cutmix switch and the cutmix box centre,
/// odd and even k > 0 the Marsaglia–Tsang attempts of the two Gamma variates of lambda ~ Beta(alpha, alpha).
///
/// Limitation: like timm (which mixes within each process's batch), pairs are formed inside the batch
/// given here, a rank's micro-batch. `batchIndex` should be the global micro-batch index; the same
/// samples are then mixed the same way after a resume, and on another number of ranks only where the
/// micro-batches are the same (same micro-batch size, same sample order).
public final class BatchMixer {
    public let options: MixingOptions
    public let classes: Int, channels: Int, size: Int
    public let rng: Philox

    /// Philox stream of every mixing draw (distinct from the augmenter's, the sampler's and the text pipeline's).
    public static let mixStream: UInt64 = 0x4D49_584C

    /// The draws of one batch: lambda after the cutmix area correction, and the cutmix box
    /// (rows [top, bottom), columns [left, right)) when the batch uses cutmix.
    struct Draw {
        var lambda: Float
        var box: (top: Int, left: Int, bottom: Int, right: Int)?
    }

    public init(options: MixingOptions, classes: Int, channels: Int, size: Int, seed: UInt64) {
        precondition(classes > 0 && channels > 0 && size > 0, "classes, channels and size must be positive")
        precondition(options.mixupAlpha >= 0 && options.cutmixAlpha >= 0, "mixing alphas must be >= 0")
        precondition(options.labelSmoothing >= 0 && options.labelSmoothing < 1, "label smoothing must be in [0, 1)")
        self.options = options
        self.classes = classes
        self.channels = channels
        self.size = size
        self.rng = Philox(seed: seed)
    }

    /// Mixes `pixels` (B, C, S, S) in place, sample b with sample B-1-b, with lambda ~ Beta(alpha, alpha)
    /// drawn from (seed, epoch, batchIndex); cutmix pastes a box of area about (1 - lambda) and corrects
    /// lambda to the pasted area. Writes `targets` (B, K) = lambda * onehot_eps(y_b) +
    /// (1 - lambda) * onehot_eps(y_{B-1-b}). Inactive options leave the pixels alone and write the
    /// (smoothed) one-hot targets.
    public func mix(pixels: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>, batch B: Int, epoch: Int,
                    batchIndex: Int, targets: UnsafeMutablePointer<Float>) {
        precondition(B > 0)
        let draw = self.draw(epoch: epoch, batchIndex: batchIndex)
        let lam = draw.lambda
        let S = size, C = channels, sample = C * S * S
        if options.isActive {
            for b in 0..<B / 2 {
                let x = pixels + b * sample, y = pixels + (B - 1 - b) * sample
                if let box = draw.box {
                    // Swap the box between the pair: each receives its partner's patch.
                    for c in 0..<C {
                        for r in box.top..<box.bottom {
                            let off = c * S * S + r * S
                            for col in box.left..<box.right { swap(&x[off + col], &y[off + col]) }
                        }
                    }
                } else {
                    let mu = 1 - lam
                    for i in 0..<sample {
                        let a = x[i], z = y[i]
                        x[i] = lam * a + mu * z
                        y[i] = lam * z + mu * a
                    }
                }
            }
        }
        let K = classes, eps = options.labelSmoothing
        let off = eps / Float(K), on = 1 - eps
        for b in 0..<B {
            let row = targets + b * K
            for k in 0..<K { row[k] = off }
            let ya = Int(labels[b]), yb = Int(labels[B - 1 - b])
            precondition(ya >= 0 && ya < K && yb >= 0 && yb < K, "label out of range 0..<\(K)")
            row[ya] += lam * on
            row[yb] += (1 - lam) * on
        }
    }

    /// The batch's draws: timm's `_params_per_batch` then `rand_bbox` (cut = int(S * sqrt(1 - lambda)),
    /// centre ~ U{0..S-1}, box = centre -+ cut/2 clipped) and the area correction.
    func draw(epoch: Int, batchIndex: Int) -> Draw {
        guard options.isActive else { return Draw(lambda: 1, box: nil) }
        precondition(epoch >= 0 && batchIndex >= 0 && batchIndex < 1 << 31, "epoch and batch index must be non-negative")
        let step = UInt64(epoch), base = UInt64(batchIndex) << 32
        let b0 = rng.block(stream: Self.mixStream, step: step, index: base)
        let cutmix: Bool
        if options.mixupAlpha > 0 && options.cutmixAlpha > 0 {
            cutmix = unitInterval(b0.0) < Double(options.switchProbability)
        } else {
            cutmix = options.cutmixAlpha > 0
        }
        let alpha = Double(cutmix ? options.cutmixAlpha : options.mixupAlpha)
        let lam = Self.beta(alpha, rng: rng, stream: Self.mixStream, step: step, index: base)
        guard cutmix else { return Draw(lambda: Float(lam), box: nil) }
        let S = size
        let cut = Int(Double(S) * (1 - lam).squareRoot())
        let cy = uniformBelow(b0.1, S), cx = uniformBelow(b0.2, S)
        let top = min(max(cy - cut / 2, 0), S), bottom = min(max(cy + cut / 2, 0), S)
        let left = min(max(cx - cut / 2, 0), S), right = min(max(cx + cut / 2, 0), S)
        let pasted = Double((bottom - top) * (right - left)) / Double(S * S)
        return Draw(lambda: Float(1 - pasted), box: (top, left, bottom, right))
    }

    // MARK: Beta and Gamma

    /// Beta(alpha, alpha) = X / (X + Y) with X, Y ~ Gamma(alpha): X from the odd counters
    /// `index + 1, index + 3, ...`, Y from the even ones `index + 2, index + 4, ...`.
    static func beta(_ alpha: Double, rng: Philox, stream: UInt64, step: UInt64, index: UInt64) -> Double {
        let x = gamma(alpha, rng: rng, stream: stream, step: step, index: index + 1)
        let y = gamma(alpha, rng: rng, stream: stream, step: step, index: index + 2)
        let s = x + y
        return s > 0 ? x / s : 0.5
    }

    /// Gamma(alpha, 1) by Marsaglia & Tsang, "A simple method for generating gamma variables" (2000);
    /// for alpha < 1, Gamma(alpha + 1) * U^(1/alpha). Attempt t uses the block at counter
    /// `index + 2t`: words 0, 1 give the normal (Box–Muller), word 2 the acceptance uniform, word 3 (of
    /// the first block) the alpha < 1 boost.
    static func gamma(_ alpha: Double, rng: Philox, stream: UInt64, step: UInt64, index: UInt64) -> Double {
        precondition(alpha > 0)
        let boosted = alpha < 1
        let d = (boosted ? alpha + 1 : alpha) - 1.0 / 3
        let c = 1 / (9 * d).squareRoot()
        var boost = 1.0
        var t: UInt64 = 0
        while true {
            let b = rng.block(stream: stream, step: step, index: index &+ 2 * t)
            if t == 0 && boosted {
                let u = (Double(b.3) + 1) / 4_294_967_297.0   // (0, 1)
                boost = Foundation.pow(u, 1 / alpha)
            }
            t += 1
            let u1 = (Double(b.0) + 1) / 4_294_967_297.0
            let u2 = Double(b.1) / 4_294_967_296.0
            let x = (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
            let v0 = 1 + c * x
            if v0 <= 0 { continue }
            let v = v0 * v0 * v0
            let u = (Double(b.2) + 1) / 4_294_967_297.0
            let x2 = x * x
            if u < 1 - 0.0331 * x2 * x2 || Foundation.log(u) < 0.5 * x2 + d * (1 - v + Foundation.log(v)) {
                return d * v * boost
            }
        }
    }
}
