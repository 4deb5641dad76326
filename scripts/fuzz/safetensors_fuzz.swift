// libFuzzer target for the safetensors header parser (TandemCheckpoint/SafeTensorsHeader.swift, built
// from source with this file by scripts/fuzz/run). Any input must either parse into a header whose
// tensors tile the data section inside the file, or throw; a crash, a trap or a sanitizer report is a bug.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let header = try? SafeTensorsHeader.parse(bytes: bytes, fileSize: size, path: "fuzz.safetensors") else {
        return 0
    }
    // What the parser promises to its callers, checked on every accepted input.
    var end = header.dataStart
    for name in header.names {
        let t = header.tensors[name]!
        precondition(t.byteRange.lowerBound == end && t.byteRange.upperBound <= size, "tensor \(name) does not tile the data")
        end = t.byteRange.upperBound
    }
    precondition(end == size, "the tensors do not reach the end of the file")
    return 0
}
