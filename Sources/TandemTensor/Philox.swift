/// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel random numbers: as easy as
/// 1, 2, 3" (SC 2011), also used by cuRAND and JAX. Every draw is a pure function of
/// (seed, stream, step, index): there is no state to carry, so any random number (a dropout mask, a
/// masked token, an augmentation) can be replayed exactly on any rank after a resume.
///
/// The 64-bit key is (seed, stream mixed in), the 128-bit counter is (step, index): Random123's counter
/// words (index low, index high, step low, step high), its key words the low and high halves of the mix.
public struct Philox: Sendable, Hashable, Codable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Four independent 32-bit words for counter (step, index) on `stream`.
    @inlinable
    public func block(stream: UInt64, step: UInt64, index: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        // The stream is folded into the key with a SplitMix64 finaliser so that neighbouring streams get
        // unrelated keys.
        var z = seed &+ (stream &+ 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Philox.philox4x32_10(
            counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                      UInt32(truncatingIfNeeded: step), UInt32(truncatingIfNeeded: step >> 32)),
            key: (UInt32(truncatingIfNeeded: z), UInt32(truncatingIfNeeded: z >> 32)))
    }

    /// The Philox4x32-10 bijection itself, Random123's `philox4x32_R(10, ctr, key)` with the words in
    /// its order: ten rounds of two 32x32->64-bit products (multipliers 0xD2511F53, 0xCD9E8D57) whose
    /// high halves are xored with the other counter words and the key, the key bumped by the Weyl
    /// constants (0x9E3779B9, 0xBB67AE85) between rounds.
    @inlinable @inline(__always)
    public static func philox4x32_10(counter: (UInt32, UInt32, UInt32, UInt32),
                                     key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            c1 = UInt32(truncatingIfNeeded: p1)
            c3 = UInt32(truncatingIfNeeded: p0)
            c0 = n0; c2 = n2
            k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    /// A uniform Float in [0, 1) with 24 random bits.
    @inlinable
    public func uniform(stream: UInt64, step: UInt64, index: UInt64) -> Float {
        Float(block(stream: stream, step: step, index: index).0 >> 8) * (1.0 / 16_777_216.0)
    }

    /// A uniform 64-bit word.
    @inlinable
    public func next64(stream: UInt64, step: UInt64, index: UInt64) -> UInt64 {
        let b = block(stream: stream, step: step, index: index)
        return UInt64(b.0) | (UInt64(b.1) << 32)
    }

    /// A uniform integer in 0..<bound, by Lemire's multiply-shift (bias below 2^-32 for bounds under 2^32).
    @inlinable
    public func below(_ bound: Int, stream: UInt64, step: UInt64, index: UInt64) -> Int {
        precondition(bound > 0)
        let x = next64(stream: stream, step: step, index: index)
        return Int(x.multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// A standard normal Float (Box–Muller over two 32-bit words of the same block).
    @inlinable
    public func normal(stream: UInt64, step: UInt64, index: UInt64) -> Float {
        let b = block(stream: stream, step: step, index: index)
        let u1 = (Double(b.0) + 1) / 4_294_967_297.0   // (0, 1]
        let u2 = Double(b.1) / 4_294_967_296.0
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@usableFromInline func _log(_ x: Double) -> Double { log(x) }
@usableFromInline func _cos(_ x: Double) -> Double { cos(x) }
