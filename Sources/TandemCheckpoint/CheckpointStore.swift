#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `MANIFEST.json` of a checkpoint directory: the size and SHA-256 of every other file in it.
///
/// ```json
/// {
///   "format": "tandem-checkpoint-manifest",
///   "version": 1,
///   "step": 1000,
///   "files": {
///     "config.json": {"size": 612, "sha256": "9f86d0..."},
///     "model.safetensors": {"size": 17563912, "sha256": "2c26b4..."}
///   }
/// }
/// ```
public struct CheckpointManifest: Equatable, Sendable {
    public static let format = "tandem-checkpoint-manifest"
    public static let version = 1

    /// One file's record.
    public struct Entry: Equatable, Sendable {
        public let name: String
        public let size: Int
        /// Lower-case hexadecimal SHA-256 of the file's bytes.
        public let sha256: String
    }

    public let step: Int
    /// Files sorted by name.
    public let files: [Entry]

    /// A manifest for checkpoint `step`; files are sorted by name.
    public init(step: Int, files: [Entry]) {
        self.step = step
        self.files = files.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }

    /// The JSON text, one file a line.
    public var json: String {
        var s = "{\n  \"format\": \(jsonQuoted(Self.format)),\n  \"version\": \(Self.version),\n  \"step\": \(step),\n  \"files\": {"
        for (i, f) in files.enumerated() {
            s += (i == 0 ? "\n" : ",\n") + "    \(jsonQuoted(f.name)): {\"size\": \(f.size), \"sha256\": \(jsonQuoted(f.sha256))}"
        }
        return s + (files.isEmpty ? "}\n}\n" : "\n  }\n}\n")
    }

    /// Parses manifest text; `path` is used in error messages.
    public static func parse(_ text: String, path: String) throws -> CheckpointManifest {
        func fail(_ message: String) -> CheckpointError { CheckpointError(path: path, message) }
        let json: JSONValue
        do { json = try JSONParser.parse(text) } catch let e as JSONSyntaxError {
            throw fail("invalid JSON: \(e)")
        }
        guard json["format"]?.stringValue == format else { throw fail("\"format\" is not \(jsonQuoted(format))") }
        guard let v = json["version"]?.intValue, v == version else { throw fail("unsupported \"version\" (expected \(version))") }
        guard let step = json["step"]?.intValue, step >= 0 else { throw fail("\"step\" is not a non-negative integer") }
        guard case let .object(pairs)? = json["files"] else { throw fail("\"files\" is not an object") }
        let files = try pairs.map { name, value -> Entry in
            guard isPlainFileName(name) else { throw fail("file name \(jsonQuoted(name)) is not a plain file name") }
            guard let size = value["size"]?.intValue, size >= 0 else { throw fail("file \(jsonQuoted(name)) has no valid \"size\"") }
            guard let sha = value["sha256"]?.stringValue, sha.count == 64,
                  sha.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw fail("file \(jsonQuoted(name)) has no valid \"sha256\"")
            }
            return Entry(name: name, size: size, sha256: sha)
        }
        return CheckpointManifest(step: step, files: files)
    }

    /// A name that stays inside the checkpoint directory: no slash, not "." or "..", not empty.
    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.utf8.contains(0)
    }
}

/// A checkpoint that resume selection passed over, and the file that failed.
public struct SkippedCheckpoint: Sendable, CustomStringConvertible {
    public let directory: String
    public let error: CheckpointError
    public var description: String { "skipping \(directory): \(error)" }
}

/// The outcome of `CheckpointStore.latestValid`: the checkpoint to resume from (nil when none
/// verifies) and every newer one skipped on the way, newest first.
public struct ResumeSelection: Sendable {
    public let directory: String?
    public let manifest: CheckpointManifest?
    public let skipped: [SkippedCheckpoint]
}

/// Reading a checkpoint root (`CKPT_ROOT/step-%08d/...`, `CKPT_ROOT/latest`): listing, verification
/// and resume selection.
public enum CheckpointStore {
    public static let manifestName = "MANIFEST.json"
    /// A small text file in CKPT_ROOT holding the newest complete checkpoint's directory name and a
    /// newline (a text file rather than a symlink: it survives copies to file systems without links).
    public static let latestName = "latest"
    /// Prefix of directories being written (or left by a crash); never read, removed by the next save.
    public static let temporaryPrefix = ".tmp-"

    /// `step-%08d`.
    public static func directoryName(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    /// The step of a `step-NNNNNNNN` name, or nil for any other name.
    public static func step(ofDirectoryName name: String) -> Int? {
        guard name.hasPrefix("step-") else { return nil }
        let digits = name.dropFirst(5)
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int(digits)
    }

    /// The `step-*` directories under `root`, by ascending step; a missing root has none.
    public static func checkpoints(root: String) throws -> [(step: Int, path: String)] {
        guard FS.isDirectory(root) else { return [] }
        return try FS.list(root).compactMap { name in
            guard let step = step(ofDirectoryName: name), FS.isDirectory(FS.join(root, name)) else { return nil }
            return (step, FS.join(root, name))
        }.sorted { $0.step < $1.step }
    }

    /// The directory `latest` names, or nil when there is no readable `latest`.
    public static func latestPointer(root: String) -> String? {
        guard let file = try? MappedFile(path: FS.join(root, latestName)) else { return nil }
        let name = String(decoding: file.bytes, as: UTF8.self).trimmingWhitespace
        guard CheckpointManifest.isPlainFileName(name) else { return nil }
        return FS.join(root, name)
    }

    /// Checks a checkpoint directory against its manifest: every listed file present, with the listed
    /// size and SHA-256. Throws naming the first file that fails; returns the manifest.
    @discardableResult
    public static func verify(_ directory: String) throws -> CheckpointManifest {
        let manifest = try readManifest(directory)
        let name = String(directory.split(separator: "/").last ?? "")
        if let step = step(ofDirectoryName: name), step != manifest.step {
            throw CheckpointError(path: FS.join(directory, manifestName),
                                  "records step \(manifest.step), but the directory is \(name)")
        }
        for entry in manifest.files {
            try verify(entry, in: directory)
        }
        return manifest
    }

    /// Reads and parses `directory/MANIFEST.json`.
    public static func readManifest(_ directory: String) throws -> CheckpointManifest {
        let path = FS.join(directory, manifestName)
        guard FS.exists(path) else {
            throw CheckpointError(path: path, "missing: the checkpoint is incomplete")
        }
        let file = try MappedFile(path: path)
        return try CheckpointManifest.parse(String(decoding: file.bytes, as: UTF8.self), path: path)
    }

    /// Checks one manifest entry; throws naming the file.
    public static func verify(_ entry: CheckpointManifest.Entry, in directory: String) throws {
        let path = FS.join(directory, entry.name)
        guard FS.exists(path) else { throw CheckpointError(path: path, "missing (listed in \(manifestName))") }
        guard let size = FS.fileSize(path) else { throw CheckpointError(path: path, "not a regular file") }
        guard size == entry.size else {
            throw CheckpointError(path: path, "size \(size) bytes differs from \(entry.size) in \(manifestName) "
                                  + (size < entry.size ? "(truncated)" : "(extended)"))
        }
        let digest = SHA256.hex(try SHA256.hash(file: path))
        guard digest == entry.sha256 else {
            throw CheckpointError(path: path, "SHA-256 \(digest) differs from \(entry.sha256) in \(manifestName) (corrupt)")
        }
    }

    /// The newest checkpoint under `root` whose manifest verifies, and the newer ones skipped (each with
    /// the file that failed). Scans the `step-*` directories rather than trusting `latest`, so a crash
    /// between the directory rename and the `latest` update loses nothing. Temporary directories are ignored.
    public static func latestValid(root: String) throws -> ResumeSelection {
        var skipped: [SkippedCheckpoint] = []
        for (_, path) in try checkpoints(root: root).reversed() {
            do {
                let manifest = try verify(path)
                return ResumeSelection(directory: path, manifest: manifest, skipped: skipped)
            } catch let e as CheckpointError {
                skipped.append(SkippedCheckpoint(directory: path, error: e))
            }
        }
        return ResumeSelection(directory: nil, manifest: nil, skipped: skipped)
    }

    /// The checkpoint `--resume` asks for: `"auto"` is `latestValid(root:)` (no directory when none
    /// verifies); anything else is a checkpoint directory that must verify, or this throws naming the
    /// file that failed.
    public static func resolveResume(_ spec: String, root: String) throws -> ResumeSelection {
        if spec == "auto" { return try latestValid(root: root) }
        guard FS.isDirectory(spec) else { throw CheckpointError(path: spec, "not a checkpoint directory") }
        let manifest = try verify(spec)
        return ResumeSelection(directory: spec, manifest: manifest, skipped: [])
    }
}

extension String {
    var trimmingWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
