/// What `tandem inspect` prints for a checkpoint directory or a single safetensors file, and whether
/// everything checked out.
public struct CheckpointInspection: Sendable {
    /// The human-readable report.
    public let report: String
    /// Every problem found (manifest mismatches, unreadable files); empty when the checkpoint is sound.
    public let problems: [String]
    public var isValid: Bool { problems.isEmpty }
}

/// Inspects `path`: a checkpoint directory (manifest status per file, step from trainer_state.json,
/// a config.json summary, and every safetensors file's tensors with dtype, shape and element count,
/// and total parameters) or a single safetensors file.
public func inspectCheckpoint(_ path: String) -> CheckpointInspection {
    var lines: [String] = []
    var problems: [String] = []
    func problem(_ s: String) { problems.append(s); lines.append("  ERROR " + s) }

    guard FS.isDirectory(path) else {
        lines.append("safetensors file \(path)")
        describeSafeTensors(path, problem: problem).forEach { lines.append($0) }
        return CheckpointInspection(report: lines.joined(separator: "\n") + "\n", problems: problems)
    }

    lines.append("checkpoint \(path)")
    let trainerState = FS.join(path, "trainer_state.json")
    if FS.exists(trainerState) {
        if let json = readJSON(trainerState, problem: problem) {
            let fields = ["step", "epoch", "sample_cursor", "world_size"].compactMap { key in
                json[key].map { "\(key) \($0.serialized)" }
            }
            lines.append("trainer state: " + (fields.isEmpty ? "(no step recorded)" : fields.joined(separator: ", ")))
        }
    } else {
        lines.append("trainer state: no trainer_state.json")
    }

    let config = FS.join(path, "config.json")
    if FS.exists(config) {
        if let json = readJSON(config, problem: problem), case let .object(pairs) = json {
            let scalars = pairs.filter {
                switch $0.value { case .object: return false; case let .array(a): return a.count <= 4; default: return true }
            }
            lines.append("config.json: \(pairs.count) fields")
            for (key, value) in scalars { lines.append("  \(key): \(value.serialized)") }
        }
    } else {
        lines.append("config.json: absent")
    }

    lines.append("manifest:")
    do {
        let manifest = try CheckpointStore.readManifest(path)
        lines.append("  step \(manifest.step), \(manifest.files.count) files")
        let nameWidth = manifest.files.map(\.name.count).max() ?? 0
        for entry in manifest.files {
            do {
                try CheckpointStore.verify(entry, in: path)
                let padding = String(repeating: " ", count: nameWidth - entry.name.count)
                lines.append("  ok    \(entry.name)\(padding)  \(entry.size) bytes  sha256 \(entry.sha256)")
            } catch let e as CheckpointError {
                problem("\(entry.name): \(e.message)")
            } catch {
                problem("\(entry.name): \(error)")
            }
        }
        let listed = Set(manifest.files.map(\.name) + [CheckpointStore.manifestName])
        for name in (try? FS.list(path)) ?? [] where !listed.contains(name) {
            lines.append("  note  \(name) is not listed in the manifest")
        }
    } catch let e as CheckpointError {
        problem("\(CheckpointStore.manifestName): \(e.message)")
    } catch {
        problem("\(CheckpointStore.manifestName): \(error)")
    }

    for name in ((try? FS.list(path)) ?? []) where name.hasSuffix(".safetensors") {
        lines.append("\(name):")
        describeSafeTensors(FS.join(path, name), problem: problem).forEach { lines.append($0) }
    }
    return CheckpointInspection(report: lines.joined(separator: "\n") + "\n", problems: problems)
}

/// The report of `inspectCheckpoint(dir)`.
public func inspectReport(_ dir: String) -> String { inspectCheckpoint(dir).report }

/// One line per tensor and a summary line; an unreadable file is reported through `problem` instead.
private func describeSafeTensors(_ path: String, problem: (String) -> Void) -> [String] {
    var lines: [String] = []
    do {
        let file = try SafeTensorsFile(path: path)
        var total = 0
        var byType: [SafeTensorsDType: Int] = [:]
        let width = file.names.map(\.count).max() ?? 0
        for name in file.names {
            let t = file.tensors[name]!
            total += t.count
            byType[t.dtype, default: 0] += t.count
            let padding = String(repeating: " ", count: width - name.count)
            lines.append("  \(name)\(padding)  \(t.dtype.rawValue) \(Shape(t.shape))  \(t.count)")
        }
        let types = byType.keys.sorted { $0.rawValue < $1.rawValue }.map { "\($0.rawValue) \(byType[$0]!)" }
        let fileName = String(path.split(separator: "/").last ?? "")
        let unit = fileName == "model.safetensors" ? "parameters" : "elements"
        lines.append("  \(fileName): \(file.names.count) tensors, \(total) \(unit) (\(types.joined(separator: ", ")))")
        if !file.metadata.isEmpty {
            let meta = file.metadata.keys.sorted().map { "\($0)=\(file.metadata[$0]!)" }
            lines.append("  metadata: " + meta.joined(separator: ", "))
        }
    } catch {
        problem("\(error)")
    }
    return lines
}

private func readJSON(_ path: String, problem: (String) -> Void) -> JSONValue? {
    do {
        let file = try MappedFile(path: path)
        return try JSONParser.parse(UnsafeRawBufferPointer(file.bytes))
    } catch {
        problem("\(path): \(error)")
        return nil
    }
}
