#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One file of a checkpoint: its name and a closure that writes its bytes into a sink. The closure
/// runs on the thread that calls `CheckpointWriter.save`, so a trainer can snapshot its arena, hand
/// closures over the snapshot to a background thread and keep training.
public struct CheckpointFile {
    public let name: String
    public let write: (FileSink) throws -> Void

    /// A file called `name` (a plain name, not MANIFEST.json) whose bytes `write` produces.
    public init(_ name: String, write: @escaping (FileSink) throws -> Void) {
        self.name = name
        self.write = write
    }

    /// A file from bytes in memory.
    public static func bytes(_ name: String, _ bytes: [UInt8]) -> CheckpointFile {
        CheckpointFile(name) { try $0.write(bytes) }
    }

    /// A UTF-8 text file (config.json, trainer_state.json).
    public static func text(_ name: String, _ text: String) -> CheckpointFile {
        bytes(name, Array(text.utf8))
    }

    /// A safetensors file; borrowed tensors in `writer` must stay valid until the save returns.
    public static func safetensors(_ name: String, _ writer: SafeTensorsWriter) -> CheckpointFile {
        CheckpointFile(name) { try writer.write(to: $0) }
    }
}

/// Which checkpoints a save keeps: the newest `keep` (0 keeps all), plus every one whose step is a
/// multiple of `keepEvery` (0: none), plus always the one just written.
public struct RetentionPolicy: Equatable, Sendable {
    public var keep: Int
    public var keepEvery: Int

    /// `checkpoint.keep` and `checkpoint.keep_every` of the training config.
    public init(keep: Int = 0, keepEvery: Int = 0) {
        precondition(keep >= 0 && keepEvery >= 0, "keep and keepEvery must be >= 0")
        self.keep = keep
        self.keepEvery = keepEvery
    }

    /// The steps to delete out of `steps`, given that `current` was just written.
    public func stepsToDelete(_ steps: [Int], current: Int) -> [Int] {
        guard keep > 0 else { return [] }
        let newest = Set(steps.sorted(by: >).prefix(keep))
        return steps.filter { s in
            s != current && !newest.contains(s) && !(keepEvery > 0 && s % keepEvery == 0)
        }.sorted()
    }
}

/// What a save did.
public struct CheckpointSaveResult: Sendable {
    /// The committed directory, `CKPT_ROOT/step-%08d`.
    public let directory: String
    public let manifest: CheckpointManifest
    /// Older checkpoint directories removed by the retention policy.
    public let removed: [String]
    /// Failures to remove old checkpoints or stale temporary directories; the save itself succeeded.
    public let cleanupErrors: [CheckpointError]
}

/// Writes checkpoint directories under a root, atomically (DESIGN.md, "Formats"):
/// 1. the files and `MANIFEST.json` go into `CKPT_ROOT/.tmp-step-%08d-PID/`, each fsynced as written;
/// 2. the temporary directory is fsynced and renamed to `step-%08d`, then CKPT_ROOT is fsynced;
/// 3. `latest` is written as `latest.tmp`, fsynced and renamed over `latest`, and CKPT_ROOT fsynced again;
/// 4. the retention policy removes old checkpoints, and stale `.tmp-*` entries are removed.
/// A failure in 1-2 removes the temporary directory and throws (path and errno text), leaving the
/// previous checkpoints and `latest` as they were. One writer per root at a time.
public struct CheckpointWriter {
    public let root: String
    public var retention: RetentionPolicy

    /// A writer for checkpoints under `root` (created on the first save).
    public init(root: String, retention: RetentionPolicy = RetentionPolicy()) {
        self.root = root
        self.retention = retention
    }

    /// Writes `files` plus `MANIFEST.json` as checkpoint `step`. An existing directory for the same
    /// step (a run resumed from an older checkpoint) is replaced: moved aside under a `.tmp-` name,
    /// the new one renamed in, the old one removed.
    @discardableResult
    public func save(step: Int, files: [CheckpointFile]) throws -> CheckpointSaveResult {
        precondition(step >= 0, "negative step \(step)")
        var seen = Set<String>()
        for f in files {
            guard CheckpointManifest.isPlainFileName(f.name), f.name != CheckpointStore.manifestName else {
                throw CheckpointError(path: FS.join(root, f.name), "not a valid checkpoint file name")
            }
            guard seen.insert(f.name).inserted else {
                throw CheckpointError(path: FS.join(root, f.name), "given twice")
            }
        }
        if !FS.isDirectory(root) {
            try FS.makeDirectories(root)
            // A new root's own directory entry must be durable too, or a crash can lose the whole tree.
            try FS.fsyncPath(FS.parentDirectory(root), directory: true)
        }
        var cleanupErrors = removeStaleTemporaries()

        let name = CheckpointStore.directoryName(step: step)
        let final = FS.join(root, name)
        let pid = getpid()
        let temporary = FS.join(root, "\(CheckpointStore.temporaryPrefix)\(name)-\(pid)")
        let replaced = FS.join(root, "\(CheckpointStore.temporaryPrefix)replaced-\(name)-\(pid)")

        let manifest: CheckpointManifest
        do {
            guard mkdir(temporary, 0o755) == 0 else { throw CheckpointError.posix(temporary, "mkdir") }
            var entries: [CheckpointManifest.Entry] = []
            for f in files {
                let (size, digest) = try FS.writeFile(FS.join(temporary, f.name), f.write)
                entries.append(.init(name: f.name, size: size, sha256: SHA256.hex(digest)))
            }
            manifest = CheckpointManifest(step: step, files: entries)
            _ = try FS.writeFile(FS.join(temporary, CheckpointStore.manifestName)) { try $0.write(manifest.json) }
            try FS.fsyncPath(temporary, directory: true)
            try commit(temporary, to: final, replacedPath: replaced)
            try FS.fsyncPath(root, directory: true)
        } catch {
            try? FS.removeTree(temporary)
            throw error
        }
        do { try FS.removeTree(replaced) } catch let e as CheckpointError { cleanupErrors.append(e) }

        try writeLatest(name)

        var removed: [String] = []
        let existing = try CheckpointStore.checkpoints(root: root)
        let doomed = Set(retention.stepsToDelete(existing.map(\.step), current: step))
        for (s, path) in existing where doomed.contains(s) {
            do {
                try FS.removeTree(path)
                removed.append(path)
            } catch let e as CheckpointError {
                cleanupErrors.append(e)
            }
        }
        return CheckpointSaveResult(directory: final, manifest: manifest, removed: removed, cleanupErrors: cleanupErrors)
    }

    /// Renames `temporary` to `final`; an existing `final` is moved to `replacedPath` first and moved
    /// back if the second rename fails.
    private func commit(_ temporary: String, to final: String, replacedPath: String) throws {
        guard FS.exists(final) else {
            try FS.rename(temporary, final)
            return
        }
        try FS.removeTree(replacedPath)
        try FS.rename(final, replacedPath)
        do {
            try FS.rename(temporary, final)
        } catch {
            try? FS.rename(replacedPath, final)
            throw error
        }
    }

    /// Points `latest` at `name`: written as `latest.tmp`, fsynced, renamed over `latest`, root fsynced.
    /// On failure the checkpoint itself is committed (resume scans directories and finds it) but
    /// `latest` still names the previous one; the error says so.
    private func writeLatest(_ name: String) throws {
        let latest = FS.join(root, CheckpointStore.latestName)
        let temporary = latest + ".tmp"
        do {
            try FS.removeFile(temporary)
            _ = try FS.writeFile(temporary) { try $0.write(name + "\n") }
            try FS.rename(temporary, latest)
            try FS.fsyncPath(root, directory: true)
        } catch let e as CheckpointError {
            try? FS.removeFile(temporary)
            throw CheckpointError(path: e.path, e.message + " (\(name) is complete, but \(latest) was not updated)")
        }
    }

    /// Removes `.tmp-*` entries left by earlier saves that crashed or failed.
    private func removeStaleTemporaries() -> [CheckpointError] {
        var errors: [CheckpointError] = []
        do {
            for name in try FS.list(root) where name.hasPrefix(CheckpointStore.temporaryPrefix) {
                do { try FS.removeTree(FS.join(root, name)) } catch let e as CheckpointError { errors.append(e) } catch {}
            }
        } catch let e as CheckpointError {
            errors.append(e)
        } catch {}
        return errors
    }
}
