import Foundation

/// The `manifest.json` of a shard directory (token shards and image shards): written atomically as
/// pretty JSON with sorted keys, read back with an error naming the file and the command that makes it.
enum ManifestFile {
    static func path(_ directory: String) -> String { (directory as NSString).appendingPathComponent("manifest.json") }

    static func write<T: Encodable>(_ manifest: T, directory: String) throws {
        let path = path(directory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { try encoder.encode(manifest).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw DataError.io(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// The manifest's bytes and path; `missing` says what the directory lacks (e.g. "no shard manifest
    /// (run tandem prepare-text)").
    static func contents(directory: String, missing: String) throws -> (data: Data, path: String) {
        let path = path(directory)
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: missing) }
        return (data, path)
    }
}
