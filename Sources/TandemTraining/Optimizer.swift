import TandemKernels

/// Hyper-parameters shared by AdamW and LAMB.
public struct OptimizerSettings: Equatable, Sendable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-6
    public var weightDecay: Float = 0.01
    public init() {}
}

/// The optimizers work on the flat parameter and gradient arenas, parameter by parameter (for the decay
/// exclusions and LAMB's per-tensor trust ratio), with first and second moments at the same offsets.
public final class Optimizer {
    public enum Kind: String, Sendable, CaseIterable { case adamw, lamb }
    public let kind: Kind
    public let settings: OptimizerSettings
    public let arena: ParameterArena
    /// First moments, laid out like the arena.
    public let m: UnsafeMutableBufferPointer<Float>
    /// Second moments, laid out like the arena.
    public let v: UnsafeMutableBufferPointer<Float>
    /// Updates applied so far (the `t` of bias correction).
    public var step = 0

    public init(_ kind: Kind, settings: OptimizerSettings, arena: ParameterArena) {
        precondition(arena.isSealed, "seal the parameter arena before creating the optimizer")
        self.kind = kind; self.settings = settings; self.arena = arena
        // Zero pages that become resident only when written: a sharded optimizer never touches the
        // moments of the parameters other ranks own, so they cost no memory on this rank.
        m = .init(start: AlignedMemory.allocatePages(Float.self, count: arena.count), count: arena.count)
        v = .init(start: AlignedMemory.allocatePages(Float.self, count: arena.count), count: arena.count)
    }

    deinit {
        AlignedMemory.deallocatePages(m.baseAddress!, count: m.count)
        AlignedMemory.deallocatePages(v.baseAddress!, count: v.count)
    }

    /// The elements this rank updates when the optimizer is sharded over the ranks of a node, and how it
    /// hands each updated piece to the others (`NodeOptimizerShard.ranges` and `publish`).
    public struct Shard {
        /// Sorted, disjoint arena element ranges.
        public let ranges: [Range<Int>]
        /// Called with each updated piece of `ranges`, right after its update (while it is in cache).
        public let publish: (Range<Int>) -> Void
        public init(ranges: [Range<Int>], publish: @escaping (Range<Int>) -> Void) {
            self.ranges = ranges; self.publish = publish
        }
    }

    /// Frees the whole pages of `m` and `v` that hold no element of `ranges` (sorted, disjoint): a sharded
    /// rank never reads those moments, and the pages read as zeros if touched again.
    public func releaseMoments(outside ranges: [Range<Int>]) {
        precondition(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound <= $1.lowerBound }
                     && (ranges.last?.upperBound ?? 0) <= m.count, "releaseMoments: ranges must be sorted and disjoint")
        let perPage = AlignedMemory.pageSize / MemoryLayout<Float>.stride
        let gaps = zip([0] + ranges.map(\.upperBound), ranges.map(\.lowerBound) + [m.count])
        for (lower, upper) in gaps {
            // Whole pages inside the gap only: a page that also holds an owned element stays.
            let first = (lower + perPage - 1) / perPage * perPage, last = upper / perPage * perPage
            guard last > first else { continue }
            for buffer in [m, v] {
                madvise(UnsafeMutableRawPointer(buffer.baseAddress! + first), (last - first) * MemoryLayout<Float>.stride,
                        MADV_DONTNEED)
            }
        }
    }

    /// AdamW on the arena elements `range` (within one parameter, whose decay is `weightDecay`), as
    /// torch.optim.AdamW: decay first, then w -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
    private func adamw(_ range: Range<Int>, weightDecay: Float, lr: Float, bc1: Double, bc2: Double,
                       gradScale: Float, zeroingGrads: Bool) {
        let i = range.lowerBound, s = settings
        adamwUpdate(weight: arena.values.baseAddress! + i, grad: arena.grads.baseAddress! + i, m: m.baseAddress! + i,
                    v: v.baseAddress! + i, count: range.count, lr: lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps,
                    weightDecay: weightDecay, bc1: bc1, bc2: bc2, gradScale: gradScale, zeroingGrad: zeroingGrads)
    }

    /// Elements updated (and published) at a time in a sharded update: 64 KB of each of the four
    /// buffers, so the published values are still in L2.
    static let shardBlock = 16_384

    /// Applies one update with learning rate `lr` from the gradients in the arena, each multiplied by
    /// `gradScale` first (gradient clipping's factor); with `zeroingGrads` the gradients are zeroed as they
    /// are read, saving the trainer a pass over the arena. AdamW runs as one fused SIMD pass
    /// (`adamwUpdate`), bit-identical to scaling, the scalar loop and zeroing one after the other.
    /// With `shard` (AdamW only) only the shard's elements are updated, each element exactly as without
    /// it, and handed to `shard.publish`; the moments of other elements are left as they are.
    public func update(lr: Float, gradScale: Float = 1, zeroingGrads: Bool = false, shard: Shard? = nil) {
        step += 1
        let s = settings
        let bc1 = 1 - pow(Double(s.beta1), Double(step))
        let bc2 = 1 - pow(Double(s.beta2), Double(step))
        if let shard {
            precondition(kind == .adamw, "only AdamW is elementwise and can be sharded (LAMB needs whole tensors)")
            var r = 0
            let ranges = shard.ranges
            for p in arena.parameters {
                let lo = p.offset, hi = p.offset + p.count
                while r < ranges.count && ranges[r].upperBound <= lo { r += 1 }
                var k = r
                let wd = p.decays ? s.weightDecay : 0
                while k < ranges.count && ranges[k].lowerBound < hi {
                    var a = max(lo, ranges[k].lowerBound)
                    let b = min(hi, ranges[k].upperBound)
                    while a < b {
                        let e = min(b, a + Self.shardBlock)
                        adamw(a..<e, weightDecay: wd, lr: lr, bc1: bc1, bc2: bc2, gradScale: gradScale,
                              zeroingGrads: zeroingGrads)
                        shard.publish(a..<e)
                        a = e
                    }
                    k += 1
                }
            }
            return
        }
        if kind == .lamb && gradScale != 1 {
            scale(arena.grads.baseAddress!, count: arena.grads.count, by: gradScale)
        }
        for p in arena.parameters {
            let w = p.value, g = p.grad
            let mp = m.baseAddress! + p.offset, vp = v.baseAddress! + p.offset
            let wd = p.decays ? s.weightDecay : 0
            switch kind {
            case .adamw:
                adamw(p.offset..<(p.offset + p.count), weightDecay: wd, lr: lr, bc1: bc1, bc2: bc2,
                      gradScale: gradScale, zeroingGrads: zeroingGrads)
            case .lamb:
                // You et al. 2020, Algorithm 2: r = m^/(sqrt(v^)+eps) + wd w; w -= lr * (||w|| / ||r||) r,
                // with the ratio taken as 1 where either norm is zero.
                var wNorm = 0.0, rNorm = 0.0
                for i in 0..<p.count {
                    let gi = g[i]
                    mp[i] = s.beta1 * mp[i] + (1 - s.beta1) * gi
                    vp[i] = s.beta2 * vp[i] + (1 - s.beta2) * gi * gi
                    let r = Float(Double(mp[i]) / bc1) / (Float(Double(vp[i]) / bc2).squareRoot() + s.eps) + wd * w[i]
                    wNorm += Double(w[i]) * Double(w[i]); rNorm += Double(r) * Double(r)
                }
                let trust = (wNorm > 0 && rNorm > 0) ? Float(wNorm.squareRoot() / rNorm.squareRoot()) : 1
                for i in 0..<p.count {
                    let r = Float(Double(mp[i]) / bc1) / (Float(Double(vp[i]) / bc2).squareRoot() + s.eps) + wd * w[i]
                    w[i] -= lr * trust * r
                }
                if zeroingGrads { g.update(repeating: 0, count: p.count) }
            }
        }
    }
}

/// Learning rate at a step: linear warm-up from 0, then linear decay to 0, cosine decay to 0, or constant
/// (HF `get_linear_schedule_with_warmup` / `get_cosine_schedule_with_warmup`; `step` counts from 0).
public struct LRSchedule: Sendable {
    /// What follows the linear warm-up: linear or cosine decay to 0 at `total`, a constant, or
    /// `inverse_sqrt`, peak √(warmup / step) (Vaswani et al. 2017, §5.3: their
    /// d_model^-0.5 min(step^-0.5, step warmup^-1.5) is this schedule with peak d_model^-0.5 warmup^-0.5;
    /// fairseq's `inverse_sqrt`). It ignores `total`; with no warm-up it is peak / √step.
    public enum Decay: String, Sendable, CaseIterable { case linear, cosine, constant, inverseSqrt = "inverse_sqrt" }
    public let peak: Float, warmup: Int, total: Int, decay: Decay

    public init(peak: Float, warmup: Int, total: Int, decay: Decay) {
        self.peak = peak; self.warmup = warmup; self.total = total; self.decay = decay
    }

    public func callAsFunction(_ step: Int) -> Float {
        // As HF: the update at step s uses s / warmup of the peak (so the very first update uses 0).
        if step < warmup { return peak * Float(step) / Float(warmup) }
        if decay == .inverseSqrt { return peak * Float((Double(max(1, warmup)) / Double(max(1, step))).squareRoot()) }
        let progress = Double(step - warmup) / Double(max(1, total - warmup))
        switch decay {
        case .constant: return peak
        case .linear: return peak * Float(max(0, 1 - progress))
        case .cosine: return peak * Float(0.5 * (1 + cos(Double.pi * min(1, progress))))
        case .inverseSqrt: return peak
        }
    }
}

/// The global L2 norm of the gradients and the factor that clips it to `maxNorm` (PyTorch's
/// clip_grad_norm_: maxNorm / (norm + 1e-6) when the norm exceeds it, else 1; `maxNorm` 0 never clips).
public func gradientClipFactor(_ arena: ParameterArena, maxNorm: Float) -> (norm: Float, factor: Float) {
    gradientClipFactor(squares: sumOfSquares(UnsafePointer(arena.grads.baseAddress!), count: arena.grads.count),
                       maxNorm: maxNorm)
}

/// The same from the sum of the squared gradients (a sharded optimizer sums the ranks' shares).
public func gradientClipFactor(squares: Double, maxNorm: Float) -> (norm: Float, factor: Float) {
    let norm = Float(squares.squareRoot())
    return (norm, maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1)
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm`. Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ arena: ParameterArena, maxNorm: Float) -> Float {
    let (norm, factor) = gradientClipFactor(arena, maxNorm: maxNorm)
    if factor != 1 { scale(arena.grads.baseAddress!, count: arena.grads.count, by: factor) }
    return norm
}

#if canImport(Glibc)
import Glibc
#endif
