import Foundation
import TandemTensor
import Yams

/// An error in a training configuration: it names the file, the key and, where known, the line.
public struct ConfigError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A training configuration: a YAML file (DESIGN.md "Training config") with `--set key=value` overrides,
/// decoded once into typed sections. Every key is checked against the sections' key lists: unknown keys
/// (with a did-you-mean), wrong types and values out of range are errors naming the file, the key and
/// the line. `model.*` holds a preset name and HF config.json fields, which the model family checks.
public struct TrainingConfig {
    public let file: String
    public var model = ModelSection()
    public var data = DataSection()
    public var train = TrainSection()
    public var checkpoint = CheckpointSection()
    public var distributed = DistributedSection()
    public var eval = EvalSection()

    public init(file: String, overrides: [String] = []) throws {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw ConfigError("\(file): cannot read the config file (\(error.localizedDescription))")
        }
        try self.init(yaml: text, file: file, overrides: overrides)
    }

    public init(yaml text: String, file: String, overrides: [String] = []) throws {
        self.file = file
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw ConfigError("\(file): malformed YAML: \(error)")
        }
        if let root {
            guard let mapping = root.mapping else { throw ConfigError("\(file): the top level must be a mapping of sections") }
            try walk(mapping, path: "")
        }
        for o in overrides {
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else {
                throw ConfigError("--set \(o): expected key=value")
            }
            try assign(String(o[..<eq]), String(o[o.index(after: eq)...]), quoted: false, at: "--set")
        }
    }

    // MARK: - The keys

    /// A key of any section, by its dotted name.
    struct AnyKey {
        let kind: ConfigKind
        let help: String
        let assign: (inout TrainingConfig, ConfigValue) -> Void
        let render: (TrainingConfig) -> String?
    }

    static let sections: [(name: String, keys: [(String, AnyKey)])] = [
        section("data", \.data), section("train", \.train), section("checkpoint", \.checkpoint),
        section("distributed", \.distributed), section("eval", \.eval),
    ]

    private static func section<S: ConfigSection>(_ name: String, _ path: WritableKeyPath<TrainingConfig, S>)
        -> (name: String, keys: [(String, AnyKey)]) {
        (name, S.keys.map { key in
            (name + "." + key.name, AnyKey(kind: key.kind, help: key.help,
                                          assign: { c, v in key.assign(&c[keyPath: path], v) },
                                          render: { key.render($0[keyPath: path]) }))
        })
    }

    static let keys: [String: AnyKey] = Dictionary(uniqueKeysWithValues: sections.flatMap(\.keys))
    static let sectionNames: Set<String> = Set(sections.map(\.name) + ["model"])

    /// Every key outside `model.*` with what it accepts, its default and its help: `tandem train --help`.
    public static var reference: String {
        let defaults = TrainingConfig(defaultsFor: "")
        return sections.flatMap(\.keys).map { name, key in
            let value = key.render(defaults).map { "default \($0)" } ?? "no default"
            return "\(name): \(key.kind.name); \(value). \(key.help)"
        }.joined(separator: "\n")
    }

    private init(defaultsFor file: String) { self.file = file }

    /// Every set value (defaults included) as `key=value` text, `model.*` fields too: what
    /// `trainer_state.json` records and the ranks compare.
    public var values: [String: String] {
        var v: [String: String] = [:]
        for (name, key) in Self.keys { if let text = key.render(self) { v[name] = text } }
        if let preset = model.preset { v["model.preset"] = preset }
        for (field, value) in model.fields { v["model." + field] = value.description }
        return v
    }

    /// A stable 64-bit hash of every value (FNV-1a over the sorted `key=value` lines), compared across ranks.
    public var hash: UInt64 {
        FNV1a64.hash(values.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "\n"))
    }

    // MARK: - Reading

    private mutating func walk(_ mapping: Node.Mapping, path: String) throws {
        var seen = Set<String>()
        for (k, v) in mapping {
            guard let name = k.scalar?.string else { throw ConfigError("\(file):\(line(k)): keys must be plain names") }
            let key = path.isEmpty ? name : path + "." + name
            guard seen.insert(name).inserted else { throw ConfigError("\(file):\(line(k)): duplicate key \(key)") }
            if let m = v.mapping {
                if key.hasPrefix("model.") { throw ConfigError("\(file):\(line(v)): \(key) must be a single value") }
                guard path.isEmpty, Self.sectionNames.contains(key) else { throw unknown(key, at: "\(file):\(line(k))") }
                try walk(m, path: key)
            } else if let s = v.scalar {
                if path.isEmpty { throw ConfigError("\(file):\(line(k)): \(key) must be a section (a mapping of keys)") }
                try assign(key, s.string, quoted: Self.isQuoted(s), at: "\(file):\(line(v))")
            } else if let items = v.sequence, key.hasPrefix("model.") {
                // An HF config.json list (wav2vec2's conv_dim, conv_kernel, conv_stride): scalars only.
                var values: [ConfigValue] = []
                for item in items {
                    guard let s = item.scalar else { throw ConfigError("\(file):\(line(item)): \(key) must be a list of single values") }
                    values.append(Self.untyped(s.string, quoted: Self.isQuoted(s)))
                }
                try assignModelField(key, .list(values), at: "\(file):\(line(v))")
            } else {
                throw ConfigError("\(file):\(line(v)): \(key) must be a single value, not a list")
            }
        }
    }

    /// A quoted YAML scalar is a string whatever it looks like ('1' is text, 1 a number).
    private static func isQuoted(_ s: Node.Scalar) -> Bool { s.style == .singleQuoted || s.style == .doubleQuoted }

    private func line(_ n: Node) -> String { n.mark.map { String($0.line) } ?? "?" }

    private mutating func assign(_ key: String, _ text: String, quoted: Bool, at place: String) throws {
        if key == "model.preset" {
            model.preset = text
            return
        }
        if key.hasPrefix("model.") {
            try assignModelField(key, Self.untyped(text, quoted: quoted), at: place)
            return
        }
        guard let entry = Self.keys[key] else { throw unknown(key, at: place) }
        guard let value = entry.kind.parse(text, quoted: quoted) else {
            throw ConfigError("\(place): \(key) = \(text) in \(file): expected \(entry.kind.name)")
        }
        entry.assign(&self, value)
    }

    private mutating func assignModelField(_ key: String, _ value: ConfigValue, at place: String) throws {
        let field = String(key.dropFirst("model.".count))
        guard field.range(of: #"^[a-z_][a-z0-9_]*$"#, options: .regularExpression) != nil else {
            throw ConfigError("\(place): \(key) is not a model config field name")
        }
        model.fields[field] = value
    }

    /// A `model.*` value from text: a number, true/false, a string, or (unquoted, in brackets, as
    /// `--set model.conv_dim=[128,128]` gives it) a comma-separated list of those.
    private static func untyped(_ text: String, quoted: Bool) -> ConfigValue {
        if quoted { return .string(text) }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("["), trimmed.hasSuffix("]") {
            let inner = trimmed.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
            return .list(inner.isEmpty ? [] : inner.split(separator: ",").map {
                untyped($0.trimmingCharacters(in: .whitespaces), quoted: false)
            })
        }
        if let i = Int(text) { return .int(i) }
        if let d = Double(text) { return .float(d) }
        if text == "true" || text == "false" { return .bool(text == "true") }
        return .string(text)
    }

    private func unknown(_ key: String, at place: String) -> ConfigError {
        let known = Array(Self.keys.keys) + Array(Self.sectionNames) + ["model.preset"]
        let best = known.min { editDistance($0, key) < editDistance($1, key) }
        let hint = best.flatMap { editDistance($0, key) <= max(2, key.count / 3) ? " (did you mean \($0)?)" : nil } ?? ""
        return ConfigError("\(place): unknown key \(key) in \(file)\(hint)")
    }
}

/// Levenshtein distance, for did-you-mean hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var prev = row[0]; row[0] = i
        for j in 1...max(b.count, 1) where !b.isEmpty {
            let cur = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
            prev = cur
        }
    }
    return row[b.count]
}
