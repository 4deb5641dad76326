/// Vectorised `exp`, `erf` and `tanh` (and `sigmoid` built on `exp`) on 16 Floats at a time.
///
/// libm's `expf`/`tanhf`/`erff` cost a call per element and cannot be vectorised, which makes an
/// elementwise kernel over a 4096x768 activation 10-40x slower than memory bandwidth allows. These
/// use only multiplies, adds, one division at most and integer bit manipulation, so with
/// `-target-cpu native` each call compiles to a straight run of AVX-512 instructions.
///
/// Polynomial coefficients were fitted by us (weighted least squares on Chebyshev nodes, relative
/// error) and the stated bounds are measured against Double libm over dense sweeps in
/// `FastMathTests`, which fail if a bound is exceeded.
public enum FastMath {
    /// The vector type every function works on.
    public typealias Vector = SIMD16<Float>

    // MARK: - exp

    /// e^x for each lane.
    ///
    /// Cody–Waite reduction x = n ln2 + r with |r| <= ln2/2, a degree-7 polynomial for e^r, and the
    /// exponent n written into the float's exponent bits.
    /// - Max relative error 2.0e-7 (about 2 ulp) for x in [-86.98, 88.72] (normal results).
    /// - x < -86.9894 (results below 2^-125.5) returns exactly 0; x > 88.7228 returns +inf;
    ///   -inf gives 0, +inf gives +inf, NaN gives NaN.
    @inlinable @inline(__always)
    public static func exp(_ x: Vector) -> Vector {
        // Clamping keeps n in [-126, 128] so the exponent field n + 126 below stays in [0, 254]:
        // field 0 gives the flushed zero, 88.8 still overflows to inf after the final doubling.
        let xc = clamp(x, -87.5, 88.8)
        // Adding 1.5 * 2^23 rounds x * log2(e) to the nearest integer n, which is then the low bits of t.
        let magic = Vector(repeating: 12_582_912)
        let t = magic.addingProduct(xc, Vector(repeating: 1.442_695_04))
        let n = t - magic
        var r = xc.addingProduct(n, Vector(repeating: -0.693_145_751_953_125))
        r = r.addingProduct(n, Vector(repeating: -1.428_606_765_330_187e-6))
        // e^r = 1 + r + r^2 P(r).
        var p = Vector(repeating: 0.000_198_264_941)
        p = Vector(repeating: 0.001_394_602_94).addingProduct(p, r)
        p = Vector(repeating: 0.008_333_429_69).addingProduct(p, r)
        p = Vector(repeating: 0.041_666_269_3).addingProduct(p, r)
        p = Vector(repeating: 0.166_666_657).addingProduct(p, r)
        p = Vector(repeating: 0.5).addingProduct(p, r)
        p = (r + 1).addingProduct(p, r * r)
        // 2^(n-1) from the bits (n + 126) << 23; the doubling afterwards reaches 2^128 (overflow).
        let tBits = unsafeBitCast(t, to: SIMD16<Int32>.self)
        let nInt = tBits &- SIMD16<Int32>(repeating: 0x4B40_0000)
        let scale = unsafeBitCast((nInt &+ 126) &<< 23, to: Vector.self)
        let result = p * scale * 2
        return result.replacing(with: x, where: x .!= x)
    }

    // MARK: - tanh

    /// tanh(x) for each lane.
    ///
    /// |x| < 0.625: x + x^3 Q(x^2) (degree-5 Q); otherwise sign(x) (1 - 2 / (e^(2|x|) + 1)), which has
    /// no cancellation there since tanh(0.625) > 0.55. |x| >= 10 gives ±1 exactly (tanh(10) rounds to 1).
    /// - Max relative error 2.5e-7 (about 2 ulp) over all finite x; tanh(±inf) = ±1, NaN gives NaN.
    @inlinable @inline(__always)
    public static func tanh(_ x: Vector) -> Vector {
        let a = clamp(magnitude(x), 0, 10)
        let s = a * a
        var q = Vector(repeating: 0.002_138_226_99)
        q = Vector(repeating: -0.008_171_789_35).addingProduct(q, s)
        q = Vector(repeating: 0.021_698_210_4).addingProduct(q, s)
        q = Vector(repeating: -0.053_946_252_9).addingProduct(q, s)
        q = Vector(repeating: 0.133_332_014).addingProduct(q, s)
        q = Vector(repeating: -0.333_333_313).addingProduct(q, s)
        let small = a.addingProduct(q, s * a)
        let e = exp(a + a)
        let large = 1 - 2 / (e + 1)
        let result = large.replacing(with: small, where: a .< 0.625)
        return withSign(of: x, magnitude: result).replacing(with: x, where: x .!= x)
    }

    // MARK: - erf

    /// erf(x) for each lane.
    ///
    /// |x| < 1: x E(x^2) (degree-6 E); 1 <= |x| < 4: 1 - e^(-x^2) erfcx(|x|) with erfcx fitted by a
    /// degree-10 polynomial in (|x| - 2.5) / 1.5; |x| >= 4 gives ±1 (erfc(4) is below half an ulp of 1).
    /// - Max absolute error 1.5e-7 and max relative error 2.5e-7 over all finite x;
    ///   erf(±inf) = ±1, NaN gives NaN.
    @inlinable @inline(__always)
    public static func erf(_ x: Vector) -> Vector {
        let a = clamp(magnitude(x), 0, 4)
        let s = a * a
        var e = Vector(repeating: 7.847_259_26e-5)
        e = Vector(repeating: -0.000_800_818_903).addingProduct(e, s)
        e = Vector(repeating: 0.005_188_099_11).addingProduct(e, s)
        e = Vector(repeating: -0.026_853_691_8).addingProduct(e, s)
        e = Vector(repeating: 0.112_835_824).addingProduct(e, s)
        e = Vector(repeating: -0.376_126_26).addingProduct(e, s)
        e = Vector(repeating: 1.128_379_11).addingProduct(e, s)
        var result = a * e
        // The tail costs an exp and 10 multiply-adds: skip it when no lane needs it.
        let tail = a .>= 1
        if any(tail) {
            let t = (a - 2.5) * (1 / 1.5)
            var c = Vector(repeating: 8.638_994_77e-5)
            c = Vector(repeating: -0.000_243_507_282).addingProduct(c, t)
            c = Vector(repeating: 0.000_392_562_099).addingProduct(c, t)
            c = Vector(repeating: -0.000_919_999_555).addingProduct(c, t)
            c = Vector(repeating: 0.002_404_656_26).addingProduct(c, t)
            c = Vector(repeating: -0.005_608_488_34).addingProduct(c, t)
            c = Vector(repeating: 0.012_491_442_3).addingProduct(c, t)
            c = Vector(repeating: -0.026_998_681_9).addingProduct(c, t)
            c = Vector(repeating: 0.056_110_061_7).addingProduct(c, t)
            c = Vector(repeating: -0.111_521_333).addingProduct(c, t)
            c = Vector(repeating: 0.210_806_37).addingProduct(c, t)
            let far = 1 - exp(-s) * c
            result.replace(with: far, where: tail)
        }
        return withSign(of: x, magnitude: result).replacing(with: x, where: x .!= x)
    }

    // MARK: - sigmoid

    /// 1 / (1 + e^(-x)) for each lane. Max relative error 3.5e-7 for x >= -88.7 (exp's bound plus one
    /// rounded add and division); x < -88.73 gives 0 (e^(-x) overflows), sigmoid(±inf) = 1 or 0, NaN gives NaN.
    @inlinable @inline(__always)
    public static func sigmoid(_ x: Vector) -> Vector {
        1 / (1 + exp(-x))
    }

    // MARK: - Lane helpers

    /// Each lane limited to [lo, hi]; NaN stays NaN. Written as compare-and-blend because the standard
    /// library's `pointwiseMin`/`clamped` compile to a scalar loop.
    @inlinable @inline(__always)
    public static func clamp(_ x: Vector, _ lo: Float, _ hi: Float) -> Vector {
        x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    }

    /// The lane-wise maximum of `a` and `b` (compare-and-blend; see `clamp`).
    @inlinable @inline(__always)
    public static func maximum(_ a: Vector, _ b: Vector) -> Vector {
        a.replacing(with: b, where: b .> a)
    }


    /// |x| for each lane, by clearing the sign bit.
    @inlinable @inline(__always)
    static func magnitude(_ x: Vector) -> Vector {
        unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: Vector.self)
    }

    /// `magnitude` (non-negative) with the sign bit of `x`.
    @inlinable @inline(__always)
    static func withSign(of x: Vector, magnitude: Vector) -> Vector {
        let sign = unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x8000_0000
        return unsafeBitCast(unsafeBitCast(magnitude, to: SIMD16<UInt32>.self) | sign, to: Vector.self)
    }
}
