#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Elementwise activations: GELU (exact and tanh forms), SiLU, ReLU and tanh, on `FastMath`.

/// Which GELU: `erf` is the exact x Φ(x) (Hugging Face "gelu", BERT and ViT); `tanh` is the
/// approximation 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) of Hendrycks & Gimpel, "Gaussian Error
/// Linear Units" (2016) (Hugging Face "gelu_new", GPT-2).
public enum GELUApproximation: Sendable {
    case erf, tanh
}

/// The activation of a transformer's feed-forward network, by Hugging Face's `ACT2FN` names.
public enum Activation: Sendable, Equatable {
    case gelu(GELUApproximation)
    /// x σ(x) (Hugging Face "swish" and "silu"; Ramachandran et al. 2017), Marian's default.
    case silu
    /// max(x, 0), the original Transformer's (Vaswani et al. 2017).
    case relu

    /// The activation of a Hugging Face `activation_function` / `hidden_act` name, nil for one not supported.
    public init?(huggingFaceName name: String) {
        switch name {
        case "gelu": self = .gelu(.erf)
        case "gelu_new", "gelu_pytorch_tanh": self = .gelu(.tanh)
        case "swish", "silu": self = .silu
        case "relu": self = .relu
        default: return nil
        }
    }
}

// MARK: - GELU

/// GELU of 16 lanes, exact form: 0.5 x (1 + erf(x / √2)).
@_transparent
func geluErf(_ x: Vector) -> Vector {
    0.5 * x * (1 + FastMath.erf(x * 0.707_106_781_186_547_5))
}

/// GELU of 16 lanes, tanh form, through 0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u)): one exp and one division.
@_transparent
func geluTanh(_ x: Vector) -> Vector {
    let u = 0.797_884_560_802_865_4 * x.addingProduct(0.044_715 * x * x, x)
    return x / (1 + FastMath.exp(-2 * u))
}

/// d GELU(x) / dx of the exact form: Φ(x) + x φ(x).
@_transparent
func geluErfDerivative(_ x: Vector) -> Vector {
    let cdf = 0.5 * (1 + FastMath.erf(x * 0.707_106_781_186_547_5))
    let pdf = 0.398_942_280_401_432_7 * FastMath.exp(-0.5 * x * x)
    return cdf.addingProduct(x, pdf)
}

/// d GELU(x) / dx of the tanh form: with s = 1 / (1 + e^(-2u)), d(x s)/dx = s + x 2u' s (1 - s).
@_transparent
func geluTanhDerivative(_ x: Vector) -> Vector {
    let x2 = x * x
    let u = 0.797_884_560_802_865_4 * x.addingProduct(0.044_715 * x2, x)
    let du = 0.797_884_560_802_865_4 * (1 + 3 * 0.044_715 * x2)
    let s = 1 / (1 + FastMath.exp(-2 * u))
    return s.addingProduct(2 * x * du, s * (1 - s))
}

// Each kernel picks the form once, outside its loop, so that the loop body is straight-line vector code.
// The helpers above are `@_transparent` for the reason given in `FastMath`.

/// out (count) = GELU(inp). `out` may be `inp`.
public func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int,
                        approximation: GELUApproximation) {
    switch approximation {
    case .erf:
        for (i, lanes) in chunks(count) { store(geluErf(load(inp + i, lanes: lanes)), to: out + i, lanes: lanes) }
    case .tanh:
        for (i, lanes) in chunks(count) { store(geluTanh(load(inp + i, lanes: lanes)), to: out + i, lanes: lanes) }
    }
}

/// dinp (count) += dout GELU'(inp), where `inp` is the pre-activation given to `geluForward`; with
/// `accumulate` false, stored instead (the same bits as adding into zeros, whatever dinp held); `dinp`
/// may then be `dout`.
public func geluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                         count: Int, approximation: GELUApproximation, accumulate adding: Bool = true) {
    @inline(__always)
    func run(_ derivative: (Vector) -> Vector) {
        for (i, lanes) in chunks(count) {
            let g = derivative(load(inp + i, lanes: lanes)) * load(dout + i, lanes: lanes)
            writeGradient(g, into: dinp + i, lanes: lanes, adding: adding)
        }
    }
    switch approximation {
    case .erf: run(geluErfDerivative)
    case .tanh: run(geluTanhDerivative)
    }
}

// MARK: - SiLU and ReLU

/// out (count) = x σ(x) = x / (1 + e^(-x)); FastMath's exp gives +inf below x = -88.7, so x / inf = -0
/// there, the limit. `out` may be `inp`.
public func siluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    for (i, lanes) in chunks(count) {
        let x = load(inp + i, lanes: lanes)
        store(x / (1 + FastMath.exp(-x)), to: out + i, lanes: lanes)
    }
}

/// dinp (count) += dout σ(x) (1 + x (1 - σ(x))), from the pre-activation x given to `siluForward`; with
/// `accumulate` false, stored instead.
public func siluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                         count: Int, accumulate adding: Bool = true) {
    for (i, lanes) in chunks(count) {
        let x = load(inp + i, lanes: lanes)
        let s = 1 / (1 + FastMath.exp(-x))
        let g = s * (1 + x - x * s) * load(dout + i, lanes: lanes)
        writeGradient(g, into: dinp + i, lanes: lanes, adding: adding)
    }
}

/// out (count) = max(inp, 0). `out` may be `inp`.
public func reluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    for (i, lanes) in chunks(count) {
        let x = load(inp + i, lanes: lanes)
        store(x.replacing(with: 0, where: x .< 0), to: out + i, lanes: lanes)
    }
}

/// dinp (count) += dout where inp > 0 (PyTorch's ReLU passes no gradient at 0); with `accumulate` false, stored.
public func reluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                         count: Int, accumulate adding: Bool = true) {
    for (i, lanes) in chunks(count) {
        let g = load(dout + i, lanes: lanes).replacing(with: 0, where: load(inp + i, lanes: lanes) .<= 0)
        writeGradient(g, into: dinp + i, lanes: lanes, adding: adding)
    }
}

// MARK: - tanh

/// out (count) = tanh(inp). `out` may be `inp`.
public func tanhForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
    for (i, lanes) in chunks(count) { store(FastMath.tanh(load(inp + i, lanes: lanes)), to: out + i, lanes: lanes) }
}

/// dinp (count) += dout (1 - out²), from the saved output of `tanhForward`.
public func tanhBackward(dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                         count: Int) {
    for (i, lanes) in chunks(count) {
        let y = load(out + i, lanes: lanes)
        accumulate((1 - y * y) * load(dout + i, lanes: lanes), into: dinp + i, lanes: lanes)
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

/// Naive `siluForward` and its derivative in Double libm: (x σ(x), σ(x) (1 + x (1 - σ(x)))).
public func siluReference(_ x: Double) -> (value: Double, derivative: Double) {
    let s = 1 / (1 + exp(-x))
    return (x * s, s * (1 + x * (1 - s)))
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

