/// A safetensors file opened for reading through a read-only memory map: the header is parsed and
/// validated on open, tensor data is only touched when asked for. Little-endian hosts only (x86-64,
/// arm64), like the format.
public final class SafeTensorsFile {
    public let path: String
    public let header: SafeTensorsHeader
    private let file: MappedFile

    /// Opens and validates `path` (see `SafeTensorsHeader.parse`).
    public init(path: String) throws {
        self.path = path
        do {
            file = try MappedFile(path: path)
        } catch let e as CheckpointError {
            throw SafeTensorsError(path: path, e.message)
        }
        header = try SafeTensorsHeader.parse(bytes: file.bytes, fileSize: file.bytes.count, path: path)
    }

    /// Tensors by name.
    public var tensors: [String: TensorInfo] { header.tensors }
    /// Tensor names in data order.
    public var names: [String] { header.names }
    /// The `__metadata__` map.
    public var metadata: [String: String] { header.metadata }

    /// The tensor called `name`, or an error naming the file and the tensor.
    public func info(_ name: String) throws -> TensorInfo {
        guard let t = header.tensors[name] else {
            throw SafeTensorsError(path: path, "no tensor \(jsonQuoted(name))")
        }
        return t
    }

    /// The raw little-endian bytes of a tensor, valid while this object lives. Not necessarily aligned
    /// to the element size: files from other writers need not pad their header.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let t = try info(name)
        return UnsafeRawBufferPointer(rebasing: file.bytes[t.byteRange])
    }

    // MARK: - Floating point

    /// A floating-point tensor (F32, F16, BF16 or F64) converted to Float, in row-major order.
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        return try [Float](unsafeUninitializedCapacity: t.count) { buffer, initialized in
            try copyFloats(name, into: buffer)
            initialized = t.count
        }
    }

    /// Converts a floating-point tensor to Float into `destination`, whose count must equal the
    /// tensor's element count (F32 is a plain copy).
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        let t = try info(name)
        guard destination.count == t.count else {
            throw SafeTensorsError(path: path, "tensor \(jsonQuoted(name)) has \(t.count) elements \(t.shape), "
                                   + "the destination holds \(destination.count)")
        }
        guard t.count > 0 else { return }
        let src = UnsafeRawBufferPointer(rebasing: file.bytes[t.byteRange]).baseAddress!
        let dst = destination.baseAddress!
        switch t.dtype {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: t.count * 4)
        case .f16:
            for i in 0..<t.count { dst[i] = floatFromHalfBits(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bf16:
            for i in 0..<t.count {
                dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            }
        case .f64:
            for i in 0..<t.count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        default:
            throw SafeTensorsError(path: path, "tensor \(jsonQuoted(name)) has dtype \(t.dtype.rawValue), not a floating-point type")
        }
    }

    // MARK: - Integers

    /// An integer or BOOL tensor widened to Int64 (I64, I32, I16, I8, U8, BOOL).
    public func int64s(_ name: String) throws -> [Int64] {
        let t = try info(name)
        let src = UnsafeRawBufferPointer(rebasing: file.bytes[t.byteRange])
        switch t.dtype {
        case .i64: return (0..<t.count).map { src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) }
        case .i32: return (0..<t.count).map { Int64(src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        case .i16: return (0..<t.count).map { Int64(src.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self)) }
        case .i8: return (0..<t.count).map { Int64(Int8(bitPattern: src[$0])) }
        case .u8, .bool: return (0..<t.count).map { Int64(src[$0]) }
        default:
            throw SafeTensorsError(path: path, "tensor \(jsonQuoted(name)) has dtype \(t.dtype.rawValue), not an integer type")
        }
    }

    /// An integer or BOOL tensor as Int32; I64 values outside Int32's range are an error naming the
    /// element, so a batch file written with I64 ids reads the same as one written with I32.
    public func int32s(_ name: String) throws -> [Int32] {
        let t = try info(name)
        if t.dtype == .i32 {
            let src = UnsafeRawBufferPointer(rebasing: file.bytes[t.byteRange])
            return (0..<t.count).map { src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
        }
        let wide = try int64s(name)
        return try wide.enumerated().map { i, v in
            guard let narrow = Int32(exactly: v) else {
                throw SafeTensorsError(path: path, "tensor \(jsonQuoted(name)) element \(i) = \(v) does not fit in Int32")
            }
            return narrow
        }
    }

    /// A U8 or BOOL tensor's bytes.
    public func uint8s(_ name: String) throws -> [UInt8] {
        let t = try info(name)
        guard t.dtype == .u8 || t.dtype == .bool else {
            throw SafeTensorsError(path: path, "tensor \(jsonQuoted(name)) has dtype \(t.dtype.rawValue), not U8 or BOOL")
        }
        return Array(UnsafeRawBufferPointer(rebasing: file.bytes[t.byteRange]))
    }

    /// A BOOL (or U8) tensor as Bool: any non-zero byte is true.
    public func bools(_ name: String) throws -> [Bool] { try uint8s(name).map { $0 != 0 } }
}

/// IEEE 754 binary16 bits to Float, exactly (every half value is a Float): normals, subnormals,
/// infinities and NaNs (payload kept).
@inlinable
public func floatFromHalfBits(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1f
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0x1f {
        return Float(bitPattern: sign | 0x7f80_0000 | mantissa << 13)
    }
    if exponent == 0 {
        // Subnormal (or zero): mantissa x 2^-24, exact in Float.
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign != 0 ? -magnitude : magnitude
    }
    return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
}

/// Float to IEEE 754 binary16 bits, rounding to nearest even; overflow gives infinity, NaN stays NaN.
public func halfBitsFromFloat(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exponent = Int((bits >> 23) & 0xff)
    let mantissa = bits & 0x7f_ffff
    if exponent == 0xff { return sign | 0x7c00 | (mantissa != 0 ? 0x200 | UInt16(mantissa >> 13) : 0) }
    let e = exponent - 127 + 15
    if e >= 0x1f { return sign | 0x7c00 }
    if e <= 0 {
        // Subnormal half: shift the full significand (implicit 1 included) into place, rounding to nearest even.
        if e < -10 { return sign }
        let significand = mantissa | 0x80_0000
        let shift = UInt32(14 - e)
        var half = significand >> shift
        let remainder = significand & ((1 << shift) - 1)
        let halfway = UInt32(1) << (shift - 1)
        if remainder > halfway || (remainder == halfway && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
    var half = UInt32(e) << 10 | mantissa >> 13
    let remainder = mantissa & 0x1fff
    if remainder > 0x1000 || (remainder == 0x1000 && half & 1 == 1) { half += 1 }
    return sign | UInt16(half)
}

/// Float to bfloat16 bits (the upper half of the Float), rounding to nearest even; NaN stays NaN.
public func bfloat16BitsFromFloat(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    if f.isNaN { return UInt16(bits >> 16) | 0x40 }
    let rounded = bits &+ 0x7fff &+ ((bits >> 16) & 1)
    return UInt16(rounded >> 16)
}
