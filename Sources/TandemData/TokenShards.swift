import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The binary layout of a token shard, a pair of files `NAME.bin` and `NAME.idx`. All integers are little-endian.
///
/// `NAME.bin`, the token ids (T tokens of W bytes each):
/// ```
/// offset  size  field
///      0     8  magic "TDTOKBIN"
///      8     4  version (u32) = 1
///     12     4  W, bytes per token id (u32): 2 when the vocabulary has at most 65536 ids, else 4
///     16   W*T  token ids (u16 or u32), sentence after sentence, document after document
/// ```
/// `NAME.idx`, the boundaries (S sentences in D documents):
/// ```
/// offset      size       field
///      0         8       magic "TDTOKIDX"
///      8         4       version (u32) = 1
///     12         4       W (u32), equal to the .bin's
///     16         8       T, number of tokens (u64)
///     24         8       S, number of sentences (u64)
///     32         8       D, number of documents (u64)
///     40    8*(S+1)      sentence starts (u64): token index of each sentence's first token, then T
///  40+8*(S+1) 8*(D+1)    document starts (u64): sentence index of each document's first sentence, then S
/// ```
/// Sentence starts come before document starts so that the writer can stream them; documents are few.
public enum TokenShardFormat {
    /// The first 8 bytes of each file, the version after them, and the header sizes.
    public static let binMagic = Array("TDTOKBIN".utf8)
    public static let idxMagic = Array("TDTOKIDX".utf8)
    public static let version: UInt32 = 1
    public static let binHeaderSize = 16
    public static let idxHeaderSize = 40

    /// Bytes per token id for a vocabulary of `vocabSize` ids.
    public static func tokenWidth(vocabSize: Int) -> Int { vocabSize <= 65536 ? 2 : 4 }
}

// MARK: - Writer

/// Streams documents of tokenized sentences into `NAME.bin` + `NAME.idx` (see `TokenShardFormat`).
/// Only the document starts stay in memory; tokens and sentence starts go to the files as they come.
public final class TokenShardWriter {
    /// The files being written.
    public let binPath: String
    public let idxPath: String
    /// Bytes per token id: 2 or 4.
    public let tokenWidth: Int
    /// What has been written so far.
    public private(set) var tokenCount = 0
    public private(set) var sentenceCount = 0
    public private(set) var documentCount = 0

    private var bin: UnsafeMutablePointer<FILE>?
    private var idx: UnsafeMutablePointer<FILE>?
    private var documentStarts: [UInt64] = []
    private var inDocument = false
    private var scratch: [UInt8] = []
    private let vocabSize: Int

    /// Creates (truncates) `directory/name.bin` and `directory/name.idx` for ids below `vocabSize`.
    public init(directory: String, name: String, vocabSize: Int) throws {
        binPath = (directory as NSString).appendingPathComponent(name + ".bin")
        idxPath = (directory as NSString).appendingPathComponent(name + ".idx")
        self.vocabSize = vocabSize
        tokenWidth = TokenShardFormat.tokenWidth(vocabSize: vocabSize)
        guard let b = fopen(binPath, "wb") else { throw DataError.io(path: binPath, reason: "cannot create: \(String(cString: strerror(errno)))") }
        guard let i = fopen(idxPath, "wb") else { fclose(b); throw DataError.io(path: idxPath, reason: "cannot create: \(String(cString: strerror(errno)))") }
        bin = b
        idx = i
        var header = TokenShardFormat.binMagic
        appendLE(&header, TokenShardFormat.version)
        appendLE(&header, UInt32(tokenWidth))
        try write(header, to: b, path: binPath)
        // The counts are filled in by `finish`; the first sentence start is 0.
        try write([UInt8](repeating: 0, count: TokenShardFormat.idxHeaderSize), to: i, path: idxPath)
        var zero: [UInt8] = []
        appendLE(&zero, UInt64(0))
        try write(zero, to: i, path: idxPath)
    }

    deinit {
        if let bin { fclose(bin) }
        if let idx { fclose(idx) }
    }

    /// Starts a new document; the previous one ends. A document without sentences is not recorded.
    public func beginDocument() {
        inDocument = false
    }

    /// Appends one sentence to the current document. Empty sentences are skipped.
    public func addSentence(_ ids: [Int32]) throws {
        guard !ids.isEmpty, let bin, let idx else { return }
        if !inDocument {
            documentStarts.append(UInt64(sentenceCount))
            documentCount += 1
            inDocument = true
        }
        scratch.removeAll(keepingCapacity: true)
        for id in ids {
            precondition(id >= 0 && Int(id) < vocabSize, "token id \(id) outside the vocabulary of \(vocabSize)")
            if tokenWidth == 2 { appendLE(&scratch, UInt16(truncatingIfNeeded: id)) } else { appendLE(&scratch, UInt32(bitPattern: id)) }
        }
        try write(scratch, to: bin, path: binPath)
        tokenCount += ids.count
        sentenceCount += 1
        scratch.removeAll(keepingCapacity: true)
        appendLE(&scratch, UInt64(tokenCount))
        try write(scratch, to: idx, path: idxPath)
    }

    /// Writes the document starts and the header counts, then closes both files.
    public func finish() throws {
        guard let bin, let idx else { return }
        defer { self.bin = nil; self.idx = nil }
        var tail: [UInt8] = []
        for start in documentStarts + [UInt64(sentenceCount)] { appendLE(&tail, start) }
        try write(tail, to: idx, path: idxPath)
        var header = TokenShardFormat.idxMagic
        appendLE(&header, TokenShardFormat.version)
        appendLE(&header, UInt32(tokenWidth))
        appendLE(&header, UInt64(tokenCount))
        appendLE(&header, UInt64(sentenceCount))
        appendLE(&header, UInt64(documentCount))
        guard fseek(idx, 0, SEEK_SET) == 0 else { throw DataError.io(path: idxPath, reason: "cannot seek") }
        try write(header, to: idx, path: idxPath)
        let binFailed = fflush(bin) != 0 || fsync(fileno(bin)) != 0
        let idxFailed = fflush(idx) != 0 || fsync(fileno(idx)) != 0
        fclose(bin)
        fclose(idx)
        if binFailed { throw DataError.io(path: binPath, reason: "cannot write: \(String(cString: strerror(errno)))") }
        if idxFailed { throw DataError.io(path: idxPath, reason: "cannot write: \(String(cString: strerror(errno)))") }
    }

    private func write(_ bytes: [UInt8], to file: UnsafeMutablePointer<FILE>, path: String) throws {
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        if written != bytes.count { throw DataError.io(path: path, reason: "cannot write: \(String(cString: strerror(errno)))") }
    }
}

@inline(__always) func appendLE<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T) {
    var v = value.littleEndian
    withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
}

// MARK: - Reader

/// A read-only memory map of a whole file.
final class MappedFile {
    let path: String
    let base: UnsafeRawPointer
    let size: Int

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw DataError.io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError.io(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))") }
        size = Int(info.st_size)
        if size == 0 {
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 8))
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw DataError.io(path: path, reason: "cannot mmap: \(String(cString: strerror(errno)))") }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if size == 0 { UnsafeMutableRawPointer(mutating: base).deallocate() } else { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    @inline(__always) func u32(at offset: Int) -> UInt32 { UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    @inline(__always) func u64(at offset: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
}

/// The token ids of a range of a shard: a view into the memory map, never a copy. It keeps the map alive.
public struct TokenSlice: RandomAccessCollection {
    let file: MappedFile
    let offset: Int       // byte offset of the first token in the .bin
    let width: Int
    /// Number of tokens in the slice.
    public let count: Int

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    @inline(__always) public subscript(i: Int) -> Int32 {
        precondition(i >= 0 && i < count, "token index \(i) out of 0..<\(count)")
        let at = offset + i * width
        if width == 2 { return Int32(UInt16(littleEndian: file.base.loadUnaligned(fromByteOffset: at, as: UInt16.self))) }
        return Int32(bitPattern: UInt32(littleEndian: file.base.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
    }
}

/// Reads a shard written by `TokenShardWriter` through mmap: validates both headers and sizes (a truncated
/// or foreign file is an error naming it) and exposes documents -> sentences -> token slices without copying.
public final class TokenShardReader {
    /// The mapped files.
    public let binPath: String
    public let idxPath: String
    /// Bytes per token id: 2 or 4.
    public let tokenWidth: Int
    /// The counts of the index header, checked against the file sizes.
    public let tokenCount: Int
    public let sentenceCount: Int
    public let documentCount: Int

    private let bin: MappedFile
    private let idx: MappedFile
    private let sentenceStartsOffset = TokenShardFormat.idxHeaderSize
    private let documentStartsOffset: Int

    /// Opens `directory/name.bin` and `directory/name.idx`.
    public convenience init(directory: String, name: String) throws {
        try self.init(binPath: (directory as NSString).appendingPathComponent(name + ".bin"),
                      idxPath: (directory as NSString).appendingPathComponent(name + ".idx"))
    }

    /// Opens a shard from its two paths.
    public init(binPath: String, idxPath: String) throws {
        self.binPath = binPath
        self.idxPath = idxPath
        bin = try MappedFile(path: binPath)
        idx = try MappedFile(path: idxPath)
        func bad(_ path: String, _ reason: String) -> DataError { .invalidFormat(path: path, reason: reason) }
        guard bin.size >= TokenShardFormat.binHeaderSize else { throw bad(binPath, "truncated: \(bin.size) bytes, shorter than the header") }
        guard Array(UnsafeRawBufferPointer(start: bin.base, count: 8)) == TokenShardFormat.binMagic else { throw bad(binPath, "not a token shard (bad magic)") }
        guard bin.u32(at: 8) == TokenShardFormat.version else { throw bad(binPath, "unsupported version \(bin.u32(at: 8))") }
        let width = Int(bin.u32(at: 12))
        guard width == 2 || width == 4 else { throw bad(binPath, "token width \(width), expected 2 or 4") }
        guard idx.size >= TokenShardFormat.idxHeaderSize else { throw bad(idxPath, "truncated: \(idx.size) bytes, shorter than the header") }
        guard Array(UnsafeRawBufferPointer(start: idx.base, count: 8)) == TokenShardFormat.idxMagic else { throw bad(idxPath, "not a token shard index (bad magic)") }
        guard idx.u32(at: 8) == TokenShardFormat.version else { throw bad(idxPath, "unsupported version \(idx.u32(at: 8))") }
        guard Int(idx.u32(at: 12)) == width else { throw bad(idxPath, "token width \(idx.u32(at: 12)) differs from \(binPath)'s \(width)") }
        let tokens = idx.u64(at: 16), sentences = idx.u64(at: 24), documents = idx.u64(at: 32)
        guard tokens < 1 << 48, sentences < 1 << 48, documents < 1 << 48 else { throw bad(idxPath, "implausible counts in the header") }
        tokenWidth = width
        tokenCount = Int(tokens)
        sentenceCount = Int(sentences)
        documentCount = Int(documents)
        let expectedIdx = TokenShardFormat.idxHeaderSize + 8 * (sentenceCount + 1) + 8 * (documentCount + 1)
        guard idx.size == expectedIdx else {
            throw bad(idxPath, idx.size < expectedIdx ? "truncated: \(idx.size) bytes, the header needs \(expectedIdx)" : "\(idx.size) bytes, the header needs \(expectedIdx)")
        }
        let expectedBin = TokenShardFormat.binHeaderSize + width * tokenCount
        guard bin.size == expectedBin else {
            throw bad(binPath, bin.size < expectedBin ? "truncated: \(bin.size) bytes, \(idxPath) needs \(expectedBin)" : "\(bin.size) bytes, \(idxPath) needs \(expectedBin)")
        }
        documentStartsOffset = TokenShardFormat.idxHeaderSize + 8 * (sentenceCount + 1)
        var previous: UInt64 = 0
        for s in 0...sentenceCount {
            let v = idx.u64(at: sentenceStartsOffset + 8 * s)
            guard v >= previous, v <= tokens, s > 0 || v == 0 else { throw bad(idxPath, "sentence start \(s) is out of order") }
            previous = v
        }
        guard previous == tokens else { throw bad(idxPath, "sentence starts end at \(previous), not at the \(tokens) tokens") }
        previous = 0
        for d in 0...documentCount {
            let v = idx.u64(at: documentStartsOffset + 8 * d)
            guard v >= previous, v <= sentences, d > 0 || v == 0 else { throw bad(idxPath, "document start \(d) is out of order") }
            previous = v
        }
        guard previous == sentences else { throw bad(idxPath, "document starts end at \(previous), not at the \(sentences) sentences") }
    }

    /// The sentence indices of document `d`.
    public func sentences(ofDocument d: Int) -> Range<Int> {
        precondition(d >= 0 && d < documentCount, "document \(d) out of 0..<\(documentCount) in \(idxPath)")
        return Int(idx.u64(at: documentStartsOffset + 8 * d))..<Int(idx.u64(at: documentStartsOffset + 8 * (d + 1)))
    }

    /// The token indices of sentence `s`.
    public func tokenRange(ofSentence s: Int) -> Range<Int> {
        precondition(s >= 0 && s < sentenceCount, "sentence \(s) out of 0..<\(sentenceCount) in \(idxPath)")
        return Int(idx.u64(at: sentenceStartsOffset + 8 * s))..<Int(idx.u64(at: sentenceStartsOffset + 8 * (s + 1)))
    }

    /// The tokens of sentence `s`.
    public func tokens(ofSentence s: Int) -> TokenSlice { tokens(in: tokenRange(ofSentence: s)) }

    /// Widens tokens [start, start + n) of the shard into `out`, for consumers that want a flat stream.
    public func copyTokens(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && n >= 0 && start + n <= tokenCount, "tokens \(start)..<\(start + n) out of 0..<\(tokenCount) in \(binPath)")
        let base = bin.base + TokenShardFormat.binHeaderSize + start * tokenWidth
        if tokenWidth == 2 {
            for i in 0..<n { out[i] = Int32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        } else {
            for i in 0..<n { out[i] = Int32(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        }
    }

    /// The tokens at indices `range` of the shard.
    public func tokens(in range: Range<Int>) -> TokenSlice {
        precondition(range.lowerBound >= 0 && range.upperBound <= tokenCount, "tokens \(range) out of 0..<\(tokenCount) in \(binPath)")
        return TokenSlice(file: bin, offset: TokenShardFormat.binHeaderSize + range.lowerBound * tokenWidth, width: tokenWidth, count: range.count)
    }
}
