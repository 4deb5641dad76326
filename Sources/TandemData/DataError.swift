import Foundation

/// An error of the data pipeline. Every case names the file (or the key inside it) concerned, so that
/// the executable can print it as is and exit non-zero.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file could not be opened, read or written.
    case io(path: String, reason: String)
    /// A file exists but its content is not what the format requires.
    case invalidFormat(path: String, reason: String)
    /// A shard directory was tokenized with another vocabulary than the one this run uses.
    case vocabMismatch(path: String, expected: String, found: String)
    /// A caller-supplied argument is out of range.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .io(path, reason): return "\(path): \(reason)"
        case let .invalidFormat(path, reason): return "\(path): \(reason)"
        case let .vocabMismatch(path, expected, found):
            return "\(path): shards were made with another vocabulary (vocab hash \(found), this run's vocabulary has \(expected))"
        case let .invalidArgument(reason): return reason
        }
    }
}
