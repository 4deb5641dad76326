import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams a file descriptor line by line without holding the file: reads chunks of `chunkSize` bytes and
/// calls `line` with each line's bytes, without its "\n" (a last line without "\n" is passed too).
/// `chunk` receives the size of every chunk read, for progress reports. `name` names the input in errors.
func readLines(fd: Int32, name: String, chunkSize: Int = 4 << 20, chunk: (Int) -> Void = { _ in },
               line: (UnsafeRawBufferPointer) throws -> Void) throws {
    var buffer = [UInt8](repeating: 0, count: chunkSize)
    var carry: [UInt8] = []
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, chunkSize) }
        if n < 0 {
            if errno == EINTR { continue }
            throw DataError.io(path: name, reason: "cannot read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        try buffer.withUnsafeBytes { all in
            var lineStart = 0
            for i in 0..<n where all[i] == 0x0A {
                if carry.isEmpty {
                    try line(UnsafeRawBufferPointer(rebasing: all[lineStart..<i]))
                } else {
                    // The line began in the previous chunk.
                    carry += all[lineStart..<i]
                    try carry.withUnsafeBytes { try line($0) }
                    carry.removeAll(keepingCapacity: true)
                }
                lineStart = i + 1
            }
            carry += all[lineStart..<n]
        }
        chunk(n)
    }
    if !carry.isEmpty { try carry.withUnsafeBytes { try line($0) } }
}

/// `readLines` over the file at `path`; a missing file or a directory is an error naming it.
func readLines(path: String, chunkSize: Int = 4 << 20, chunk: (Int) -> Void = { _ in }, line: (UnsafeRawBufferPointer) throws -> Void) throws {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw DataError.io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    try readLines(fd: fd, name: path, chunkSize: chunkSize, chunk: chunk, line: line)
}

extension TextTokenizer {
    /// `tandem tokenize`: reads lines from `input` and writes one line of space-separated decimal ids per
    /// input line to `output` (with WordPiece's [CLS] ... [SEP] when `addSpecialTokens`), streaming.
    /// Returns the number of input bytes and lines.
    @discardableResult
    public func tokenizeLines(input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO, addSpecialTokens: Bool = false) throws -> (bytes: Int, lines: Int) {
        var ids: [Int32] = []
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)
        var bytes = 0, lines = 0
        func flush() throws {
            var done = 0
            while done < out.count {
                let n = out.withUnsafeBytes { write(output, $0.baseAddress! + done, $0.count - done) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw DataError.io(path: "standard output", reason: "cannot write: \(String(cString: strerror(errno)))")
                }
                done += n
            }
            out.removeAll(keepingCapacity: true)
        }
        try readLines(fd: input, name: "standard input", chunk: { bytes += $0 }) { line in
            ids.removeAll(keepingCapacity: true)
            appendTokenizeIDs(utf8: line, special: addSpecialTokens, to: &ids)
            for (k, id) in ids.enumerated() {
                if k > 0 { out.append(0x20) }
                appendDecimal(&out, id)
            }
            out.append(0x0A)
            lines += 1
            if out.count >= 1 << 20 { try flush() }
        }
        try flush()
        return (bytes, lines)
    }
}

/// Appends the decimal digits of a non-negative id (token ids are never negative).
@inline(__always) private func appendDecimal(_ out: inout [UInt8], _ value: Int32) {
    var v = UInt32(bitPattern: value)
    var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var count = 0
    withUnsafeMutableBytes(of: &digits) { d in
        repeat {
            d[count] = UInt8(0x30 + v % 10)
            v /= 10
            count += 1
        } while v > 0
        for k in stride(from: count - 1, through: 0, by: -1) { out.append(d[k]) }
    }
}
