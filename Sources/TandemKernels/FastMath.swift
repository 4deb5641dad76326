/// Vectorised `exp`, `erf` and `tanh` on 16 Floats at a time.
///
/// libm's `expf`/`tanhf`/`erff` cost a call per element and cannot be vectorised, which makes an
/// elementwise kernel over a 4096x768 activation 10-40x slower than memory bandwidth allows. These
/// use only multiply-adds, one division at most, compares and integer bit manipulation, so with
/// `-target-cpu native` each call compiles to a straight run of AVX-512 instructions.
///
/// The functions are `@_transparent` (mandatory inlining): with `@inline(__always)` the optimiser still
/// left some of them as calls inside the kernels' loops, and a call passes a SIMD16 through four
/// XMM registers, which costs more than the function itself.
///
/// Coefficients were fitted by us (weighted least squares on Chebyshev nodes, iterated for the
/// rational fits) and the stated bounds are measured against Double libm over dense sweeps in
/// `FastMathTests`, which fail if a bound is exceeded.
public enum FastMath {
    /// The vector type every function works on.
    public typealias Vector = SIMD16<Float>

    // MARK: - exp

    /// e^x for each lane.
    ///
    /// Cody–Waite reduction x = n ln2 + r with |r| <= ln2/2, e^r = 1 + r + r² P(r) with a degree-4 P
    /// (so degree 6 in all), and the exponent n written into the float's exponent bits.
    /// - Max relative error 2.0e-7 (about 2 ulp) for x in [-86.98, 88.72] (normal results).
    /// - x < -86.9894 (results below 2^-125.5) returns exactly 0; x > 88.7228 returns +inf;
    ///   -inf gives 0, +inf gives +inf, NaN gives NaN.
    @_transparent
    public static func exp(_ x: Vector) -> Vector {
        // Clamping keeps n in [-126, 128] so the exponent field n + 126 below stays in [0, 254]:
        // field 0 gives the flushed zero, 88.8 still overflows to inf. NaN passes the clamp and the
        // arithmetic below unchanged.
        let xc = clamp(x, -87.5, 88.8)
        // Adding 1.5 * 2^23 rounds x * log2(e) to the nearest integer n, which is then the low bits of t.
        let magic = Vector(repeating: 12_582_912)
        let t = magic.addingProduct(xc, Vector(repeating: 1.442_695_04))
        let n = t - magic
        var r = xc.addingProduct(n, Vector(repeating: -0.693_145_751_953_125))
        r = r.addingProduct(n, Vector(repeating: -1.428_606_765_330_187e-6))
        // 2 e^r = 2 + 2r + r² (2P(r)): the factor 2 (exact in the coefficients) lets the scale below be
        // 2^(n-1), whose exponent field n + 126 stays representable up to n = 128.
        var p = Vector(repeating: 0.002_750_277_76)
        p = Vector(repeating: 0.016_737_842_9).addingProduct(p, r)
        p = Vector(repeating: 0.083_339_065_4).addingProduct(p, r)
        p = Vector(repeating: 0.333_330_364).addingProduct(p, r)
        p = Vector(repeating: 0.999_999_762).addingProduct(p, r)
        p = Vector(repeating: 2).addingProduct(r, 2).addingProduct(p, r * r)
        // bits(t) - bits(magic) = n, so (bits(t) + 126 - bits(magic)) << 23 is 2^(n-1).
        let tBits = unsafeBitCast(t, to: SIMD16<Int32>.self)
        let scale = unsafeBitCast((tBits &+ (126 - 0x4B40_0000)) &<< 23, to: Vector.self)
        return p * scale
    }

    // MARK: - tanh

    /// tanh(x) for each lane.
    ///
    /// x P(x²) / Q(x²) with degrees 5 and 3 (a rational fit of ours on [0, 9]) on x clamped to [-9, 9],
    /// the result clamped to [-1, 1]; tanh(9) is within half an ulp of 1.
    /// - Max absolute and relative error 4.5e-7 (about 4 ulp) over all finite x;
    ///   tanh(±inf) = ±1, NaN gives NaN.
    @_transparent
    public static func tanh(_ x: Vector) -> Vector {
        let a = clamp(x, -9, 9)
        let s = a * a
        var p = Vector(repeating: 1.812_533_8e-11)
        p = Vector(repeating: -1.272_918_57e-8).addingProduct(p, s)
        p = Vector(repeating: 9.250_697_99e-6).addingProduct(p, s)
        p = Vector(repeating: 0.002_919_014_31).addingProduct(p, s)
        p = Vector(repeating: 0.129_176_661).addingProduct(p, s)
        p = Vector(repeating: 1).addingProduct(p, s)
        var q = Vector(repeating: 0.000_227_852_433)
        q = Vector(repeating: 0.023_756_178_1).addingProduct(q, s)
        q = Vector(repeating: 0.462_509_602).addingProduct(q, s)
        q = Vector(repeating: 1).addingProduct(q, s)
        return clamp(a * p / q, -1, 1)
    }

    // MARK: - erf

    /// erf(x) for each lane.
    ///
    /// x P(x²) / Q(x²) with degrees 5 and 5 (a rational fit of ours on [0, 4]) on x clamped to [-4, 4],
    /// the result clamped to [-1, 1]; erfc(4) = 1.5e-8 is below half an ulp of 1.
    /// - Max absolute error 4.5e-7 and max relative error 4.5e-7 (about 4 ulp) over all finite x;
    ///   erf(±inf) = ±1, NaN gives NaN.
    @_transparent
    public static func erf(_ x: Vector) -> Vector {
        let a = clamp(x, -4, 4)
        let s = a * a
        var p = Vector(repeating: 1.980_080_47e-6)
        p = Vector(repeating: 0.000_286_443_392).addingProduct(p, s)
        p = Vector(repeating: 0.003_948_563_24).addingProduct(p, s)
        p = Vector(repeating: 0.053_299_192_3).addingProduct(p, s)
        p = Vector(repeating: 0.195_011_616).addingProduct(p, s)
        p = Vector(repeating: 1.128_379_11).addingProduct(p, s)
        var q = Vector(repeating: 3.745_068_53e-5)
        q = Vector(repeating: 0.001_202_267_36).addingProduct(q, s)
        q = Vector(repeating: 0.015_335_541_2).addingProduct(q, s)
        q = Vector(repeating: 0.115_960_181).addingProduct(q, s)
        q = Vector(repeating: 0.506_156_325).addingProduct(q, s)
        q = Vector(repeating: 1).addingProduct(q, s)
        return clamp(a * p / q, -1, 1)
    }

    // MARK: - Lane helpers

    /// Each lane limited to [lo, hi]; NaN stays NaN. Written as compare-and-blend because the standard
    /// library's `pointwiseMin`/`clamped` compile to a scalar loop.
    @_transparent
    public static func clamp(_ x: Vector, _ lo: Float, _ hi: Float) -> Vector {
        x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    }

    /// The lane-wise maximum of `a` and `b` (compare-and-blend; see `clamp`).
    @_transparent
    public static func maximum(_ a: Vector, _ b: Vector) -> Vector {
        a.replacing(with: b, where: b .> a)
    }
}
