/// An element type of a safetensors tensor, spelled as in the file (`"F32"`, `"BF16"`, ...).
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool { self == .f64 || self == .f32 || self == .f16 || self == .bf16 }
}

/// A safetensors format or read error; the message names the file and the tensor or key concerned.
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

/// One tensor of a safetensors file.
public struct TensorInfo: Equatable, Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// `data_offsets` as written: relative to the start of the data section.
    public let dataOffsets: Range<Int>
    /// The tensor's bytes as absolute file offsets: `dataOffsets` shifted by 8 + header length.
    public let byteRange: Range<Int>
    /// Elements: the product of `shape` (1 for a scalar).
    public var count: Int { shape.reduce(1, *) }
}

/// The validated header of a safetensors file (https://github.com/huggingface/safetensors, "Format"):
/// an 8-byte little-endian length N, N bytes of JSON `{name: {dtype, shape, data_offsets}, "__metadata__":
/// {string: string}}`, then the data section, which the tensors must tile exactly.
public struct SafeTensorsHeader: Sendable {
    /// The largest header accepted, as in the reference implementation: 100 MB.
    public static let maxHeaderLength = 100_000_000

    /// Tensors by name.
    public let tensors: [String: TensorInfo]
    /// Tensor names in data order (ascending offsets).
    public let names: [String]
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// N: the header's length in bytes, padding included.
    public let headerLength: Int
    /// Where the data section starts in the file: 8 + N.
    public var dataStart: Int { 8 + headerLength }

    /// Parses and validates a header. `bytes` holds the start of the file (at least 8 + N bytes, or the
    /// whole file); `fileSize` is the file's full size; `path` is only used in error messages. A pure
    /// function of its arguments, so a fuzzer can call it directly.
    ///
    /// Checks: N <= `maxHeaderLength` and 8 + N <= `fileSize`; the header is UTF-8 JSON, an object
    /// starting with `{` (trailing spaces allowed); no duplicate keys; each tensor has a known `dtype`,
    /// a `shape` of non-negative integers and `data_offsets` `[begin, end]` with
    /// end - begin = product(shape) x dtype size; sorted by offset, the tensors tile the data section
    /// with no overlap and no hole, ending exactly at the end of the file; `__metadata__` maps strings
    /// to strings.
    public static func parse(bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> SafeTensorsHeader {
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError(path: path, message) }

        guard fileSize >= 8, bytes.count >= 8 else {
            throw fail("truncated: \(fileSize) bytes, too short for the 8-byte header length")
        }
        var n64: UInt64 = 0
        for i in (0..<8).reversed() { n64 = n64 << 8 | UInt64(bytes[i]) }
        guard n64 <= UInt64(maxHeaderLength) else {
            throw fail("header length \(n64) exceeds the limit of \(maxHeaderLength) bytes")
        }
        let n = Int(n64)
        guard 8 + n <= fileSize else {
            throw fail("header length \(n) runs past the end of the file (\(fileSize) bytes)")
        }
        guard 8 + n <= bytes.count else {
            throw fail("header length \(n) runs past the \(bytes.count) bytes given to the parser")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)])
        guard headerBytes.first == UInt8(ascii: "{") else { throw fail("header does not start with '{'") }

        let json: JSONValue
        do {
            json = try JSONParser.parse(headerBytes)
        } catch let e as JSONSyntaxError {
            throw fail("invalid header JSON at byte \(8 + e.offset): \(e.message)")
        }
        guard case let .object(entries) = json else { throw fail("header is not a JSON object") }

        let dataStart = 8 + n
        let dataLength = fileSize - dataStart
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        for (key, value) in entries {
            if key == "__metadata__" {
                guard case let .object(pairs) = value else {
                    throw fail("__metadata__ is \(value.kindName), not an object of strings")
                }
                for (mk, mv) in pairs {
                    guard let s = mv.stringValue else {
                        throw fail("__metadata__ key \(jsonQuoted(mk)) is \(mv.kindName), not a string")
                    }
                    metadata[mk] = s
                }
                continue
            }
            let info = try parseEntry(key, value, dataStart: dataStart, fail: fail)
            tensors[key] = info
        }

        // Sorted by (begin, end) the ranges must follow each other exactly: this rejects overlaps
        // and holes, and the last one must end where the file ends.
        let ordered = tensors.values.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
                < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
        }
        var cursor = 0
        var previous: String?
        for t in ordered {
            let r = t.dataOffsets
            if r.lowerBound < cursor {
                throw fail("tensor \(jsonQuoted(t.name)) data_offsets [\(r.lowerBound), \(r.upperBound)] overlap "
                           + "tensor \(jsonQuoted(previous ?? "")) which ends at \(cursor)")
            }
            if r.lowerBound > cursor {
                let after = previous.map { "after tensor \(jsonQuoted($0))" } ?? "at the start of the data section"
                throw fail("hole of \(r.lowerBound - cursor) bytes \(after), before tensor \(jsonQuoted(t.name)) "
                           + "at data offset \(r.lowerBound)")
            }
            if r.upperBound > dataLength {
                throw fail("tensor \(jsonQuoted(t.name)) data_offsets [\(r.lowerBound), \(r.upperBound)] run past "
                           + "the data section of \(dataLength) bytes")
            }
            cursor = r.upperBound
            previous = t.name
        }
        if cursor != dataLength {
            throw fail("tensors cover \(cursor) bytes of the \(dataLength)-byte data section: "
                       + "\(dataLength - cursor) trailing bytes after tensor \(jsonQuoted(previous ?? ""))")
        }
        return SafeTensorsHeader(tensors: tensors, names: ordered.map(\.name), metadata: metadata, headerLength: n)
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataStart: Int,
                                   fail: (String) -> SafeTensorsError) throws -> TensorInfo {
        let what = "tensor \(jsonQuoted(name))"
        guard case .object = value else { throw fail("\(what) is \(value.kindName), not an object") }
        guard let dtypeValue = value["dtype"] else { throw fail("\(what) has no dtype") }
        guard let dtypeName = dtypeValue.stringValue else { throw fail("\(what) dtype is \(dtypeValue.kindName), not a string") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw fail("\(what) has unknown dtype \(jsonQuoted(dtypeName)) (known: "
                       + SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        func naturals(_ key: String) throws -> [Int] {
            guard let v = value[key] else { throw fail("\(what) has no \(key)") }
            guard case let .array(items) = v else { throw fail("\(what) \(key) is \(v.kindName), not an array") }
            return try items.map {
                guard let i = $0.intValue, i >= 0 else {
                    throw fail("\(what) \(key) holds \($0.serialized), not a non-negative integer")
                }
                return i
            }
        }
        let shape = try naturals("shape")
        let offsets = try naturals("data_offsets")
        guard offsets.count == 2 else { throw fail("\(what) data_offsets has \(offsets.count) entries, not [begin, end]") }
        guard offsets[0] <= offsets[1] else { throw fail("\(what) data_offsets [\(offsets[0]), \(offsets[1])] end before they begin") }
        var bytes = dtype.size
        for d in shape {
            let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("\(what) shape \(shape) overflows the byte count") }
            bytes = p
        }
        guard offsets[1] - offsets[0] == bytes else {
            throw fail("\(what) data_offsets [\(offsets[0]), \(offsets[1])] span \(offsets[1] - offsets[0]) bytes, "
                       + "but \(dtype.rawValue) \(shape) needs \(bytes)")
        }
        // The upper bound is checked against the data section later; bounding it here keeps the
        // absolute range from overflowing.
        guard offsets[1] <= Int.max - dataStart else { throw fail("\(what) data_offsets overflow") }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: offsets[0]..<offsets[1],
                          byteRange: (dataStart + offsets[0])..<(dataStart + offsets[1]))
    }
}
