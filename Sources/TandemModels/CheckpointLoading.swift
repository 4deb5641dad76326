/// What loading a transformers checkpoint did besides copying: the parameters left at their init and
/// the checkpoint tensors it did not use.
public struct CheckpointLoadReport: Equatable, Sendable {
    /// Whether the checkpoint's names carried the model prefix (`bert.`, `vit.`: a model with heads).
    public var prefixed: Bool
    /// Our parameters that the checkpoint lacks and that keep their init (optional ones only).
    public var keptInit: [String]
    /// Checkpoint tensors that were not loaded (e.g. `embeddings.position_ids`, a pooler, another head).
    public var ignored: [String]
}

/// Fills `parameters` (registered under HF names starting with `prefix`) from a transformers checkpoint,
/// given its tensor shapes and a way to copy a tensor as Float32. Names may carry the prefix or not (a
/// base model without heads); `aliases` lists a second name HF may store a parameter under (the alias
/// counts as used along with it). A missing tensor is an error unless `isOptional` says it may keep its
/// init; a shape that differs is an error naming the tensor and `origin`.
func loadCheckpointTensors(
    _ parameters: [Parameter], prefix: String, aliases: [String: String] = [:], isOptional: (Parameter) -> Bool,
    shapes: [String: [Int]], origin: String, error: (String) -> Error,
    copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void
) throws -> CheckpointLoadReport {
    let prefixed = shapes.keys.contains { $0.hasPrefix(prefix) }
    var used = Set<String>()
    var keptInit: [String] = []
    for p in parameters {
        var candidates = [!prefixed && p.name.hasPrefix(prefix) ? String(p.name.dropFirst(prefix.count)) : p.name]
        if let alias = aliases[p.name] { candidates.append(alias) }
        guard let name = candidates.first(where: { shapes[$0] != nil }), let shape = shapes[name] else {
            guard isOptional(p) else { throw error("\(origin): missing tensor \(candidates[0]) (\(p.shape))") }
            keptInit.append(p.name)
            continue
        }
        guard shape == p.shape.dims else {
            throw error("\(origin): tensor \(name) has shape \(Shape(shape)) but the config needs \(p.shape)")
        }
        try copy(name, p.values)
        used.insert(name)
    }
    for (name, alias) in aliases where used.contains(name) || used.contains(alias) {
        used.insert(name); used.insert(alias)
    }
    return CheckpointLoadReport(prefixed: prefixed, keptInit: keptInit, ignored: shapes.keys.filter { !used.contains($0) }.sorted())
}
