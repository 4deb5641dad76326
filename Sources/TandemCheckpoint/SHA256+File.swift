extension SHA256 {
    /// The digest of a file, read through a memory map in 16 MB steps.
    public static func hash(file path: String) throws -> [UInt8] {
        let file = try MappedFile(path: path)
        var s = SHA256()
        var offset = 0
        let step = 16 << 20
        while offset < file.bytes.count {
            let end = min(offset + step, file.bytes.count)
            s.update(UnsafeRawBufferPointer(rebasing: file.bytes[offset..<end]))
            offset = end
        }
        return s.finalize()
    }
}
