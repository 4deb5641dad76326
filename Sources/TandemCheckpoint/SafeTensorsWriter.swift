/// Builds a safetensors file from tensors given as memory the caller owns or as arrays.
///
/// Layout: the header is JSON with `__metadata__` first (default `{"format":"pt"}`, which
/// `transformers` expects) and then the tensors in data order, padded with spaces so the data section
/// starts at a multiple of 8. Data order is by element size, largest first, then by name (byte-wise),
/// as in the reference implementation, so every tensor starts at a multiple of its element size.
public struct SafeTensorsWriter {
    private enum Storage {
        /// Memory owned by the caller; it must stay valid and unchanged until the file is written.
        case borrowed(UnsafeRawBufferPointer)
        case owned([UInt8])
    }

    private struct Entry {
        let name: String
        let dtype: SafeTensorsDType
        let shape: [Int]
        let storage: Storage
    }

    private var entries: [Entry] = []
    private var names = Set<String>()
    /// `__metadata__` entries, written in sorted key order.
    public var metadata: [String: String]

    /// A writer with no tensors yet; `metadata` becomes `__metadata__` (none when empty).
    public init(metadata: [String: String] = ["format": "pt"]) { self.metadata = metadata }

    /// The tensors' names in the order they were added.
    public var tensorNames: [String] { entries.map(\.name) }

    private mutating func append(_ name: String, _ dtype: SafeTensorsDType, _ shape: [Int], _ storage: Storage, bytes: Int) {
        precondition(name != "__metadata__", "a tensor cannot be called __metadata__")
        precondition(names.insert(name).inserted, "tensor \(name) added twice")
        precondition(shape.allSatisfy { $0 >= 0 }, "tensor \(name): negative dimension in \(shape)")
        let expected = shape.reduce(1, *) * dtype.size
        precondition(bytes == expected, "tensor \(name): \(bytes) bytes given, \(dtype.rawValue) \(shape) needs \(expected)")
        entries.append(Entry(name: name, dtype: dtype, shape: shape, storage: storage))
    }

    /// Adds a tensor whose little-endian bytes stay in the caller's memory until `write` (no copy):
    /// for slices of the parameter arena. The memory must not change or be freed before then.
    public mutating func add(_ name: String, dtype: SafeTensorsDType, shape: [Int], borrowing bytes: UnsafeRawBufferPointer) {
        append(name, dtype, shape, .borrowed(bytes), bytes: bytes.count)
    }

    /// Adds an F32 tensor borrowed from the caller's memory (see `add(_:dtype:shape:borrowing:)`).
    public mutating func add(_ name: String, shape: [Int], borrowing floats: UnsafeBufferPointer<Float>) {
        add(name, dtype: .f32, shape: shape, borrowing: UnsafeRawBufferPointer(floats))
    }

    /// Adds a tensor from little-endian bytes, copied.
    public mutating func add(_ name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        append(name, dtype, shape, .owned(bytes), bytes: bytes.count)
    }

    private static func bytes<T>(of values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// Adds an F32 tensor, copied.
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        add(name, dtype: .f32, shape: shape, bytes: Self.bytes(of: floats))
    }

    /// Adds an F64 tensor, copied.
    public mutating func add(_ name: String, shape: [Int], doubles: [Double]) {
        add(name, dtype: .f64, shape: shape, bytes: Self.bytes(of: doubles))
    }

    /// Adds an F16 tensor, rounding each value to nearest even.
    public mutating func add(_ name: String, shape: [Int], halfFloats floats: [Float]) {
        add(name, dtype: .f16, shape: shape, bytes: Self.bytes(of: floats.map(halfBitsFromFloat)))
    }

    /// Adds a BF16 tensor, rounding each value to nearest even.
    public mutating func add(_ name: String, shape: [Int], bfloat16 floats: [Float]) {
        add(name, dtype: .bf16, shape: shape, bytes: Self.bytes(of: floats.map(bfloat16BitsFromFloat)))
    }

    /// Adds an I64 tensor (token ids, labels), copied.
    public mutating func add(_ name: String, shape: [Int], int64s: [Int64]) {
        add(name, dtype: .i64, shape: shape, bytes: Self.bytes(of: int64s))
    }

    /// Adds an I32 tensor, copied.
    public mutating func add(_ name: String, shape: [Int], int32s: [Int32]) {
        add(name, dtype: .i32, shape: shape, bytes: Self.bytes(of: int32s))
    }

    /// Adds an I16 tensor, copied.
    public mutating func add(_ name: String, shape: [Int], int16s: [Int16]) {
        add(name, dtype: .i16, shape: shape, bytes: Self.bytes(of: int16s))
    }

    /// Adds an I8 tensor, copied.
    public mutating func add(_ name: String, shape: [Int], int8s: [Int8]) {
        add(name, dtype: .i8, shape: shape, bytes: Self.bytes(of: int8s))
    }

    /// Adds a U8 tensor (pixels), copied.
    public mutating func add(_ name: String, shape: [Int], uint8s: [UInt8]) {
        add(name, dtype: .u8, shape: shape, bytes: uint8s)
    }

    /// Adds a BOOL tensor (one byte each, 0 or 1).
    public mutating func add(_ name: String, shape: [Int], bools: [Bool]) {
        add(name, dtype: .bool, shape: shape, bytes: bools.map { $0 ? 1 : 0 })
    }

    // MARK: - Output

    private var ordered: [Entry] {
        entries.sorted {
            $0.dtype.size != $1.dtype.size ? $0.dtype.size > $1.dtype.size : Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8))
        }
    }

    /// The 8-byte length followed by the padded JSON header.
    public func headerBytes() -> [UInt8] {
        var pairs: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            pairs.append(("__metadata__", .object(metadata.keys.sorted().map { ($0, .string(metadata[$0]!)) })))
        }
        var offset = 0
        for e in ordered {
            let size = e.shape.reduce(1, *) * e.dtype.size
            pairs.append((e.name, .object([
                ("dtype", .string(e.dtype.rawValue)),
                ("shape", .array(e.shape.map { .integer($0) })),
                ("data_offsets", .array([.integer(offset), .integer(offset + size)])),
            ])))
            offset += size
        }
        var json = Array(JSONValue.object(pairs).serialized.utf8)
        json += [UInt8](repeating: UInt8(ascii: " "), count: (8 - json.count % 8) % 8)
        var out: [UInt8] = []
        out.reserveCapacity(8 + json.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64(i)))) }
        return out + json
    }

    /// The size of the file `write` produces.
    public var fileSize: Int {
        headerBytes().count + entries.reduce(0) { $0 + $1.shape.reduce(1, *) * $1.dtype.size }
    }

    /// Writes the file through a checkpoint sink (used inside `CheckpointWriter.save`).
    public func write(to sink: FileSink) throws {
        try sink.write(headerBytes())
        for e in ordered {
            switch e.storage {
            case let .borrowed(p): try sink.write(p)
            case let .owned(a): try sink.write(a)
            }
        }
    }

    /// Writes the file to `path` (replacing it) and fsyncs it. Not atomic: checkpoints go through
    /// `CheckpointWriter`, which is.
    public func write(toPath path: String) throws {
        try FS.removeFile(path)
        _ = try FS.writeFile(path) { try write(to: $0) }
    }
}
