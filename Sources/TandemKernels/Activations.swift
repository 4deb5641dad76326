#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Elementwise activations: GELU (exact and tanh forms), tanh, sigmoid; all on `FastMath`.

/// Which GELU: `erf` is the exact x Φ(x) (Hugging Face "gelu", BERT and ViT); `tanh` is the
/// approximation 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) of Hendrycks & Gimpel, "Gaussian Error
/// Linear Units" (2016) (Hugging Face "gelu_new", GPT-2).
public enum GELUApproximation: Sendable {
    case erf, tanh
}

// MARK: - GELU

@usableFromInline let sqrtHalf: Float = 0.707_106_781_186_547_5
@usableFromInline let sqrtTwoOverPi: Float = 0.797_884_560_802_865_4
@usableFromInline let invSqrtTwoPi: Float = 0.398_942_280_401_432_7
@usableFromInline let geluCubic: Float = 0.044_715

/// GELU of 16 lanes. The tanh form uses 0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u)), one exp and one division.
@inline(__always)
func gelu(_ x: Vector, _ approximation: GELUApproximation) -> Vector {
    switch approximation {
    case .erf:
        return 0.5 * x * (1 + FastMath.erf(x * sqrtHalf))
    case .tanh:
        let u = sqrtTwoOverPi * x.addingProduct(geluCubic * x * x, x)
        return x / (1 + FastMath.exp(-2 * u))
    }
}

/// d GELU(x) / dx for 16 lanes.
/// erf: Φ(x) + x φ(x). tanh: with s = 1 / (1 + e^(-2u)), d(x s)/dx = s + x 2u' s (1 - s).
@inline(__always)
func geluDerivative(_ x: Vector, _ approximation: GELUApproximation) -> Vector {
    switch approximation {
    case .erf:
        let cdf = 0.5 * (1 + FastMath.erf(x * sqrtHalf))
        let pdf = invSqrtTwoPi * FastMath.exp(-0.5 * x * x)
        return cdf.addingProduct(x, pdf)
    case .tanh:
        let x2 = x * x
        let u = sqrtTwoOverPi * x.addingProduct(geluCubic * x2, x)
        let du = sqrtTwoOverPi * (1 + 3 * geluCubic * x2)
        let s = 1 / (1 + FastMath.exp(-2 * u))
        return s.addingProduct(2 * x * du, s * (1 - s))
    }
}

/// out (count) = GELU(inp). `out` may be `inp`.
public func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int,
                        approximation: GELUApproximation) {
    forEachChunk(count) { i, lanes in
        store(gelu(load(inp + i, lanes: lanes), approximation), to: out + i, lanes: lanes)
    }
}

/// dinp (count) += dout GELU'(inp), where `inp` is the pre-activation given to `geluForward`.
public func geluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                         count: Int, approximation: GELUApproximation) {
    forEachChunk(count) { i, lanes in
        let g = geluDerivative(load(inp + i, lanes: lanes), approximation) * load(dout + i, lanes: lanes)
        accumulate(g, into: dinp + i, lanes: lanes)
    }
}

/// out (N, C) = GELU(inp + bias), bias (C) broadcast over rows: the bias add of a Linear layer fused with
/// its activation, one pass over memory instead of two. The pre-activation inp + bias is not stored:
/// `biasGeluBackward` recomputes it from `inp` and `bias`, so the caller keeps `inp` (the Linear output
/// without bias) alive for backward.
public func biasGeluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                            N: Int, C: Int, approximation: GELUApproximation) {
    for n in 0..<N {
        let o = out + n * C, x = inp + n * C
        forEachChunk(C) { i, lanes in
            let pre = load(x + i, lanes: lanes) + load(bias + i, lanes: lanes)
            store(gelu(pre, approximation), to: o + i, lanes: lanes)
        }
    }
}

/// Gradients of `biasGeluForward`, accumulated: with g = dout GELU'(inp + bias), dinp (N, C) += g and
/// dbias (C) += column sums of g. A nil gradient is skipped.
public func biasGeluBackward(dinp: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
                             inp: UnsafePointer<Float>, bias: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                             N: Int, C: Int, approximation: GELUApproximation) {
    for n in 0..<N {
        let x = inp + n * C, d = dout + n * C
        forEachChunk(C) { i, lanes in
            let pre = load(x + i, lanes: lanes) + load(bias + i, lanes: lanes)
            let g = geluDerivative(pre, approximation) * load(d + i, lanes: lanes)
            if let dinp { accumulate(g, into: dinp + n * C + i, lanes: lanes) }
            if let dbias { accumulate(g, into: dbias + i, lanes: lanes) }
        }
    }
}

// MARK: - tanh and sigmoid

/// out (count) = tanh(inp). `out` may be `inp`.
public func tanhForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    forEachChunk(count) { i, lanes in store(FastMath.tanh(load(inp + i, lanes: lanes)), to: out + i, lanes: lanes) }
}

/// dinp (count) += dout (1 - out²), from the saved output of `tanhForward`.
public func tanhBackward(dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                         count: Int) {
    forEachChunk(count) { i, lanes in
        let y = load(out + i, lanes: lanes)
        accumulate((1 - y * y) * load(dout + i, lanes: lanes), into: dinp + i, lanes: lanes)
    }
}

/// out (count) = 1 / (1 + e^(-inp)). `out` may be `inp`.
public func sigmoidForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    forEachChunk(count) { i, lanes in store(FastMath.sigmoid(load(inp + i, lanes: lanes)), to: out + i, lanes: lanes) }
}

/// dinp (count) += dout out (1 - out), from the saved output of `sigmoidForward`.
public func sigmoidBackward(dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                            count: Int) {
    forEachChunk(count) { i, lanes in
        let y = load(out + i, lanes: lanes)
        accumulate(y * (1 - y) * load(dout + i, lanes: lanes), into: dinp + i, lanes: lanes)
    }
}

// MARK: - Reference

/// Naive `geluForward` with Double libm.
public func geluForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int,
                                 approximation: GELUApproximation) {
    for i in 0..<count { out[i] = Float(geluReference(Double(inp[i]), approximation).value) }
}

/// Naive `geluBackward` with Double libm.
public func geluBackwardReference(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                  dout: UnsafePointer<Float>, count: Int, approximation: GELUApproximation) {
    for i in 0..<count {
        dinp[i] += Float(geluReference(Double(inp[i]), approximation).derivative * Double(dout[i]))
    }
}

/// Naive `biasGeluForward`.
public func biasGeluForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>, N: Int, C: Int, approximation: GELUApproximation) {
    for n in 0..<N {
        for c in 0..<C {
            out[n * C + c] = Float(geluReference(Double(inp[n * C + c] + bias[c]), approximation).value)
        }
    }
}

/// Naive `biasGeluBackward`, Double accumulation.
public func biasGeluBackwardReference(dinp: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
                                      inp: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                      dout: UnsafePointer<Float>, N: Int, C: Int,
                                      approximation: GELUApproximation) {
    for c in 0..<C {
        var acc = 0.0
        for n in 0..<N {
            let g = geluReference(Double(inp[n * C + c] + bias[c]), approximation).derivative
                * Double(dout[n * C + c])
            dinp?[n * C + c] += Float(g)
            acc += g
        }
        dbias?[c] += Float(acc)
    }
}

/// GELU and its derivative in Double, straight from the definitions.
func geluReference(_ x: Double, _ approximation: GELUApproximation) -> (value: Double, derivative: Double) {
    switch approximation {
    case .erf:
        let cdf = 0.5 * (1 + erf(x / 2.0.squareRoot()))
        let pdf = exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
        return (x * cdf, cdf + x * pdf)
    case .tanh:
        let c = (2 / Double.pi).squareRoot()
        let u = c * (x + 0.044715 * x * x * x)
        let t = tanh(u)
        let du = c * (1 + 3 * 0.044715 * x * x)
        return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
    }
}

/// Naive `tanhForward` with Double libm.
public func tanhForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { out[i] = Float(tanh(Double(inp[i]))) }
}

/// Naive `tanhBackward`.
public func tanhBackwardReference(dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>,
                                  dout: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { dinp[i] += Float((1 - Double(out[i]) * Double(out[i])) * Double(dout[i])) }
}

/// Naive `sigmoidForward` with Double libm.
public func sigmoidForwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { out[i] = Float(1 / (1 + exp(-Double(inp[i])))) }
}

/// Naive `sigmoidBackward`.
public func sigmoidBackwardReference(dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>,
                                     dout: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { dinp[i] += Float(Double(out[i]) * (1 - Double(out[i])) * Double(dout[i])) }
}
