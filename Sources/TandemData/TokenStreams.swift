import Foundation

/// A stream of token ids that training windows are cut from.
public protocol TokenSource: AnyObject {
    /// Number of tokens.
    var count: Int { get }
    /// Vocabulary size the ids come from.
    var vocabSize: Int { get }
    /// Copies tokens [start, start + n) into `out`.
    func copy(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>)
    /// Where the tokens come from, for messages.
    var origin: String { get }
}

/// The bytes of a text file as tokens (vocabulary 256), memory-mapped: a byte-level language model needs
/// no tokenizer, which makes it the smallest real training job.
public final class ByteTokens: TokenSource {
    public let origin: String
    private let data: Data

    public init(path: String) throws {
        origin = path
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw ConfigError("\(path): cannot read training text (\(error.localizedDescription))")
        }
        guard data.count >= 2 else { throw ConfigError("\(path): the text is empty") }
    }

    public var count: Int { data.count }
    public var vocabSize: Int { 256 }

    public func copy(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>) {
        data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            for i in 0..<n { out[i] = Int32(bytes[start + i]) }
        }
    }
}
