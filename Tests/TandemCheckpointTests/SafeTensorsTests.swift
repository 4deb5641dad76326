import Foundation
import TandemCheckpoint
import XCTest

final class SafeTensorsTests: XCTestCase {
    // MARK: - Round trip

    func testRoundTripEveryDType() throws {
        let dir = TestDirectory()
        defer { dir.remove() }
        let weights: [Float] = (0..<12).map { Float($0) * 0.25 - 1 }
        var w = SafeTensorsWriter()
        weights.withUnsafeBufferPointer { w.add("layer.weight", shape: [3, 4], borrowing: $0) }
        w.add("f64", shape: [2], doubles: [0.1, -3.25])
        w.add("f16", shape: [5], halfFloats: [1, -2.5, 65504, 0x1p-24, 0.1])
        w.add("bf16", shape: [3], bfloat16: [1, -0.15625, 0x1p127])
        w.add("i64", shape: [2, 2], int64s: [-(1 << 40), -1, 0, 1 << 40])
        w.add("i32", shape: [3], int32s: [-7, 0, .max])
        w.add("i16", shape: [2], int16s: [-300, 300])
        w.add("i8", shape: [2], int8s: [-128, 127])
        w.add("u8", shape: [4], uint8s: [0, 1, 128, 255])
        w.add("mask", shape: [3], bools: [true, false, true])
        w.add("scalar", shape: [], floats: [3.5])
        w.add("empty", shape: [0, 3], floats: [])
        let path = dir.file("all.safetensors")
        try weights.withUnsafeBufferPointer { _ in try w.write(toPath: path) }

        let f = try SafeTensorsFile(path: path)
        XCTAssertEqual(f.metadata, ["format": "pt"])
        XCTAssertEqual(f.tensors.count, 12)
        XCTAssertEqual(f.header.dataStart % 8, 0, "header padded to 8 bytes")
        for t in f.tensors.values {
            XCTAssertEqual(t.byteRange.lowerBound % t.dtype.size, 0, "\(t.name) aligned to its element size")
        }
        XCTAssertEqual(try f.info("layer.weight").shape, [3, 4])
        XCTAssertEqual(try f.floats("layer.weight"), weights)
        XCTAssertEqual(try f.floats("f64"), [Float(0.1), -3.25])
        XCTAssertEqual(try f.floats("f16").prefix(4), [1, -2.5, 65504, 0x1p-24])
        XCTAssertEqual(try f.floats("f16")[4], 0.0999755859375, "0.1 rounds to the nearest half")
        XCTAssertEqual(try f.floats("bf16"), [1, -0.15625, 0x1p127])
        XCTAssertEqual(try f.int64s("i64"), [-(1 << 40), -1, 0, 1 << 40])
        XCTAssertEqual(try f.int32s("i32"), [-7, 0, .max])
        XCTAssertEqual(try f.int64s("i32"), [-7, 0, Int64(Int32.max)])
        XCTAssertEqual(try f.int64s("i16"), [-300, 300])
        XCTAssertEqual(try f.int64s("i8"), [-128, 127])
        XCTAssertEqual(try f.uint8s("u8"), [0, 1, 128, 255])
        XCTAssertEqual(try f.bools("mask"), [true, false, true])
        XCTAssertEqual(try f.int32s("mask"), [1, 0, 1])
        XCTAssertEqual(try f.floats("scalar"), [3.5])
        XCTAssertEqual(try f.info("scalar").shape, [])
        XCTAssertEqual(try f.floats("empty"), [])
        XCTAssertEqual(try f.rawBytes("u8").count, 4)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int, w.fileSize)
    }

    func testWriterOrdersByElementSizeThenName() throws {
        var w = SafeTensorsWriter(metadata: [:])
        w.add("b", shape: [1], uint8s: [1])
        w.add("a", shape: [1], floats: [1])
        w.add("c", shape: [1], int64s: [1])
        w.add("d", shape: [1], floats: [2])
        let dir = TestDirectory()
        defer { dir.remove() }
        try w.write(toPath: dir.file("o.safetensors"))
        let f = try SafeTensorsFile(path: dir.file("o.safetensors"))
        XCTAssertEqual(f.names, ["c", "a", "d", "b"])
        XCTAssertEqual(f.metadata, [:])
    }

    func testConversionErrorsNameTensor() throws {
        var w = SafeTensorsWriter()
        w.add("ids", shape: [2], int64s: [1, 1 << 40])
        w.add("x", shape: [2], floats: [1, 2])
        let dir = TestDirectory()
        defer { dir.remove() }
        let path = dir.file("b.safetensors")
        try w.write(toPath: path)
        let f = try SafeTensorsFile(path: path)
        assertError(try f.int32s("ids"), contains: ["\"ids\"", "element 1", path])
        assertError(try f.floats("ids"), contains: ["\"ids\"", "I64", path])
        assertError(try f.int64s("x"), contains: ["\"x\"", "F32"])
        assertError(try f.floats("nope"), contains: ["no tensor \"nope\"", path])
        var small = [Float](repeating: 0, count: 3)
        assertError(try small.withUnsafeMutableBufferPointer { try f.copyFloats("x", into: $0) }, contains: ["\"x\"", "2 elements"])
        var exact = [Float](repeating: 0, count: 2)
        try exact.withUnsafeMutableBufferPointer { try f.copyFloats("x", into: $0) }
        XCTAssertEqual(exact, [1, 2])
    }

    func testHalfConversionIsExactAndRoundsToNearestEven() {
        // Every finite half converts to Float and back unchanged.
        for bits in UInt16(0)...UInt16.max {
            let f = floatFromHalfBits(bits)
            if f.isNaN { XCTAssertTrue(floatFromHalfBits(halfBitsFromFloat(f)).isNaN); continue }
            if halfBitsFromFloat(f) != bits { XCTFail("half \(bits) -> \(f) -> \(halfBitsFromFloat(f))"); return }
        }
        XCTAssertEqual(halfBitsFromFloat(1 + 0x1p-11), 0x3c00, "tie rounds to even (down)")
        XCTAssertEqual(halfBitsFromFloat(1 + 3 * 0x1p-11), 0x3c02, "tie rounds to even (up)")
        XCTAssertEqual(halfBitsFromFloat(65520), 0x7c00, "rounds up to infinity")
        XCTAssertEqual(halfBitsFromFloat(0x1p-25), 0, "half the smallest subnormal ties to zero")
        XCTAssertEqual(halfBitsFromFloat(0x1.8p-25), 1)
        XCTAssertEqual(bfloat16BitsFromFloat(1 + 0x1p-8), 0x3f80, "tie rounds to even")
        XCTAssertEqual(bfloat16BitsFromFloat(1 + 0x1.8p-8), 0x3f81)
        XCTAssertTrue(Float(bitPattern: UInt32(bfloat16BitsFromFloat(.nan)) << 16).isNaN)
    }

    // MARK: - Interop with the reference `safetensors` library

    /// The table of scripts/fixtures/make_safetensors_fixtures.py.
    func testReadsPythonWrittenFixture() throws {
        let f = try SafeTensorsFile(path: fixturesDirectory + "/python_dtypes.safetensors")
        XCTAssertEqual(f.metadata, ["format": "pt", "source": "make_safetensors_fixtures.py"])
        XCTAssertEqual(Set(f.tensors.keys), ["f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "bool", "scalar", "empty"])
        XCTAssertEqual(try f.info("f32").shape, [2, 3])
        XCTAssertEqual(try f.info("f32").dtype, .f32)
        XCTAssertEqual(try f.floats("f64"), [Float(0.1), -3.25])
        XCTAssertEqual(try f.floats("f32"), [-1, -0.5, 0, 0.5, 1, 1.5])
        XCTAssertEqual(try f.floats("f16"), [1, -2.5, 65504, 0x1p-24])
        XCTAssertEqual(try f.floats("bf16"), [1, -0.15625, 0x1p127])
        XCTAssertEqual(try f.int64s("i64"), [-(1 << 40), -1, 0, 1 << 40])
        XCTAssertEqual(try f.info("i64").shape, [2, 2])
        XCTAssertEqual(try f.int32s("i32"), [-7, 0, .max])
        XCTAssertEqual(try f.int64s("i16"), [-300, 300])
        XCTAssertEqual(try f.int64s("i8"), [-128, 127])
        XCTAssertEqual(try f.uint8s("u8"), [0, 1, 128, 255])
        XCTAssertEqual(try f.bools("bool"), [true, false, true])
        XCTAssertEqual(try f.floats("scalar"), [3.5])
        XCTAssertEqual(try f.info("scalar").shape, [])
        XCTAssertEqual(try f.info("empty").shape, [0, 3])
    }

    /// Python's reference library reads what our writer wrote (skipped where Python or its
    /// `safetensors` package is missing, e.g. in CI; the committed fixture covers the other direction).
    func testPythonReadsOurFile() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/env"),
              (try? runProcess("/usr/bin/env", ["python3", "-c", "import safetensors, numpy"]))?.status == 0 else {
            throw XCTSkip("python3 with safetensors and numpy is not installed")
        }
        let dir = TestDirectory()
        defer { dir.remove() }
        var w = SafeTensorsWriter(metadata: ["format": "pt", "note": "swift \"quoted\" \\ é"])
        w.add("bert.embeddings.word_embeddings.weight", shape: [2, 3], floats: [1, 2, 3, -4, 5.5, 0.25])
        w.add("input_ids", shape: [1, 3], int64s: [101, 7592, 102])
        w.add("attention_mask", shape: [1, 3], int32s: [1, 1, 0])
        w.add("bool_masked_pos", shape: [3], bools: [false, true, false])
        w.add("pixels", shape: [2], uint8s: [0, 255])
        w.add("h", shape: [2], halfFloats: [0.5, -1])
        w.add("b", shape: [2], bfloat16: [0.5, -1])
        w.add("d", shape: [1], doubles: [0.1])
        let path = dir.file("ours.safetensors")
        try w.write(toPath: path)

        let result = try runProcess("/usr/bin/env", ["python3", repositoryRoot + "/scripts/fixtures/make_safetensors_fixtures.py", "--dump", path])
        XCTAssertEqual(result.status, 0)
        let json = try JSONParser.parse(result.output)
        XCTAssertEqual(json["metadata"], JSONValue.object([("format", .string("pt")), ("note", .string("swift \"quoted\" \\ é"))]))
        let tensors = try XCTUnwrap(json["tensors"])
        func check(_ name: String, _ dtype: String, _ shape: [Int], _ values: [Double]) {
            XCTAssertEqual(tensors[name]?["dtype"], JSONValue.string(dtype), name)
            XCTAssertEqual(tensors[name]?["shape"], JSONValue.array(shape.map { JSONValue.integer($0) }), name)
            guard case let .array(items)? = tensors[name]?["values"] else { return XCTFail("\(name) has no values") }
            let numbers: [Double] = items.map { $0.numberValue ?? ($0 == JSONValue.bool(true) ? 1 : 0) }
            XCTAssertEqual(numbers, values, name)
        }
        check("bert.embeddings.word_embeddings.weight", "F32", [2, 3], [1, 2, 3, -4, 5.5, 0.25])
        check("input_ids", "I64", [1, 3], [101, 7592, 102])
        check("attention_mask", "I32", [1, 3], [1, 1, 0])
        check("bool_masked_pos", "BOOL", [3], [0, 1, 0])
        check("pixels", "U8", [2], [0, 255])
        check("h", "F16", [2], [0.5, -1])
        check("b", "BF16", [2], [0.5, -1])
        check("d", "F64", [1], [0.1])
    }

    // MARK: - Header validation

    /// A file with header `json` (padded to 8 bytes unless `pad` is false) and `data` bytes of data.
    private func file(_ json: String, data: Int, length: UInt64? = nil) -> [UInt8] {
        var header = Array(json.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
        let n = length ?? UInt64(header.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + header + [UInt8](repeating: 7, count: data)
    }

    /// Writes `bytes` to a file, opens it, and checks the error names the file and holds `fragments`.
    private func assertRejected(_ bytes: [UInt8], _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        let dir = TestDirectory("rejected")
        defer { dir.remove() }
        let path = dir.write("bad.safetensors", bytes)
        assertError(try SafeTensorsFile(path: path), contains: [path] + fragments, file: file, line: line)
        // The pure parser gives the same answer on the bytes alone.
        let parse = { try bytes.withUnsafeBytes { try SafeTensorsHeader.parse(bytes: $0, fileSize: bytes.count, path: "mem") } }
        assertError(try parse(), contains: ["mem: "] + fragments, file: file, line: line)
    }

    func testAcceptsValidHandWrittenHeader() throws {
        let bytes = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}}"#, data: 9)
        let header = try bytes.withUnsafeBytes { try SafeTensorsHeader.parse(bytes: $0, fileSize: bytes.count, path: "mem") }
        XCTAssertEqual(header.names, ["a", "b"])
        XCTAssertEqual(header.tensors["b"]?.byteRange, (header.dataStart + 8)..<(header.dataStart + 9))
    }

    func testRejectsTruncatedFile() {
        assertRejected([], ["truncated", "0 bytes"])
        assertRejected([1, 2, 3, 4, 5], ["truncated", "5 bytes"])
    }

    func testRejectsHeaderLengthPastEnd() {
        assertRejected(file(#"{}"#, data: 0, length: 64), ["header length 64", "past the end"])
    }

    func testRejectsHugeHeaderLength() {
        assertRejected(file(#"{}"#, data: 0, length: 1 << 40), ["exceeds the limit"])
    }

    func testRejectsBadJSON() {
        assertRejected(file(#"{"a":{"dtype":"F32",}}"#, data: 0), ["invalid header JSON"])
        assertRejected(file(#"["a"]"#, data: 0), ["does not start with '{'"])
        assertRejected(file(#"{"a":1} x"#, data: 0), ["invalid header JSON", "after the JSON value"])
        assertRejected(file("{\"a\u{1}\":1}", data: 0), ["invalid header JSON", "control character"])
        assertRejected(file(String(repeating: "{\"a\":", count: 100) + "1" + String(repeating: "}", count: 100), data: 0),
                       ["nesting deeper"])
    }

    func testRejectsInvalidUTF8() {
        var bytes = file(#"{"__metadata__":{"k":"vX"}}"#, data: 0)
        bytes[bytes.firstIndex(of: UInt8(ascii: "X"))!] = 0xff
        assertRejected(bytes, ["not valid UTF-8"])
    }

    func testRejectsEntryThatIsNotAnObject() {
        assertRejected(file(#"{"w":[1,2]}"#, data: 0), ["tensor \"w\"", "not an object"])
    }

    func testRejectsUnknownDType() {
        assertRejected(file(#"{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#, data: 1),
                       ["tensor \"w\"", "unknown dtype \"F8_E4M3\""])
    }

    func testRejectsMissingOrMalformedFields() {
        assertRejected(file(#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, data: 4), ["tensor \"w\" has no dtype"])
        assertRejected(file(#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, data: 4), ["tensor \"w\" has no shape"])
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: 4), ["tensor \"w\" shape", "non-negative"])
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: 4), ["tensor \"w\" shape"])
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, data: 4), ["tensor \"w\" data_offsets", "[begin, end]"])
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, data: 4), ["tensor \"w\"", "end before"])
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#, data: 4),
                       ["tensor \"w\"", "overflows"])
    }

    func testRejectsSizeMismatch() {
        assertRejected(file(#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, data: 12),
                       ["tensor \"w\"", "span 12 bytes", "F32 [2, 2] needs 16"])
    }

    func testRejectsOverlappingRanges() {
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8),
                       ["tensor \"b\"", "overlap", "tensor \"a\""])
    }

    func testRejectsHole() {
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, data: 12),
                       ["hole of 4 bytes", "after tensor \"a\"", "before tensor \"b\""])
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8),
                       ["hole of 4 bytes", "start of the data section"])
    }

    func testRejectsDataPastEndAndTrailingBytes() {
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 4),
                       ["tensor \"a\"", "run past the data section of 4 bytes"])
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: 6),
                       ["2 trailing bytes", "tensor \"a\""])
    }

    func testRejectsDuplicateName() {
        assertRejected(file(#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: 2),
                       ["duplicate key \"w\""])
    }

    func testRejectsNonStringMetadata() {
        assertRejected(file(#"{"__metadata__":{"format":"pt","n":3}}"#, data: 0), ["__metadata__ key \"n\"", "not a string"])
        assertRejected(file(#"{"__metadata__":["pt"]}"#, data: 0), ["__metadata__ is an array"])
    }

    func testRejectsDirectoryAndMissingFile() {
        let dir = TestDirectory()
        defer { dir.remove() }
        assertError(try SafeTensorsFile(path: dir.path), contains: [dir.path, "not a regular file"])
        assertError(try SafeTensorsFile(path: dir.file("none")), contains: [dir.file("none"), "No such file"])
    }

    func testJSONParser() throws {
        let v = try JSONParser.parse(#" {"a": [1, -2.5e1, true, false, null], "s": "x\u00e9\ud83d\ude00\n"} "#)
        XCTAssertEqual(v["a"], .array([.integer(1), .number(-25), .bool(true), .bool(false), .null]))
        XCTAssertEqual(v["s"], .string("xé😀\n"))
        XCTAssertEqual(try JSONParser.parse(v.serialized), v)
        for bad in ["", "{", "[1,]", "01", "1.", "\"\\ud800\"", "tru", "{\"a\" 1}", "\"\\q\""] {
            XCTAssertThrowsError(try JSONParser.parse(bad), "accepted \(bad)")
        }
    }
}

/// Checks that `expression` throws an error whose description contains every fragment.
func assertError<T>(_ expression: @autoclosure () throws -> T, contains fragments: [String],
                    file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try expression()
        XCTFail("no error; expected one containing \(fragments)", file: file, line: line)
    } catch {
        let text = "\(error)"
        for fragment in fragments where !text.contains(fragment) {
            XCTFail("error \"\(text)\" does not contain \"\(fragment)\"", file: file, line: line)
        }
    }
}

/// A short deterministic stand-in for the libFuzzer run: every prefix of a real file and random byte
/// mutations of it must either parse or throw, never trap.
final class SafeTensorsMutationTests: XCTestCase {
    func testPrefixesAndMutationsNeverTrap() throws {
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixturesDirectory + "/python_dtypes.safetensors")))
        func parses(_ bytes: [UInt8]) -> Bool {
            (try? bytes.withUnsafeBytes { try SafeTensorsHeader.parse(bytes: $0, fileSize: bytes.count, path: "fuzz") }) != nil
        }
        XCTAssertTrue(parses(original))
        for length in 0..<original.count { XCTAssertFalse(parses(Array(original.prefix(length))), "prefix \(length)") }
        let headerEnd = 8 + Int(original[0]) + Int(original[1]) << 8
        let rng = Philox(seed: 7)
        var accepted = 0
        for i in 0..<3000 {
            var bytes = original
            let position = Int(rng.next64(stream: 0, step: UInt64(i), index: 0) % UInt64(headerEnd))
            bytes[position] = UInt8(truncatingIfNeeded: rng.next64(stream: 1, step: UInt64(i), index: 0))
            if parses(bytes) { accepted += 1 }
        }
        XCTAssertLessThan(accepted, 3000, "some mutations must be rejected")
    }
}
