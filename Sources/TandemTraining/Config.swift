import Foundation
import Yams

/// An error in a training configuration: it names the file, the key and, where known, the line.
public struct ConfigError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A config value after YAML parsing and `--set` overrides.
public enum ConfigValue: Equatable, CustomStringConvertible {
    case int(Int), float(Double), bool(Bool), string(String)

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .bool(let v): return String(v)
        case .string(let v): return v
        }
    }
}

/// What a key accepts.
public enum ConfigKind {
    case int(ClosedRange<Int>)
    case float(ClosedRange<Double>)
    case bool
    case string
    case choice([String])

    var name: String {
        switch self {
        case .int(let r): return "an integer in \(r.lowerBound)...\(r.upperBound == Int.max ? "" : String(r.upperBound))"
        case .float(let r): return "a number in \(r.lowerBound)...\(r.upperBound)"
        case .bool: return "true or false"
        case .string: return "a string"
        case .choice(let c): return "one of " + c.joined(separator: ", ")
        }
    }

    /// Converts a YAML scalar (or a `--set` string) to a value of this kind, or nil.
    func parse(_ text: String, quoted: Bool) -> ConfigValue? {
        switch self {
        case .string: return .string(text)
        case .choice(let options): return options.contains(text) ? .string(text) : nil
        case .bool:
            if quoted { return nil }
            switch text.lowercased() { case "true", "yes", "on": return .bool(true)
            case "false", "no", "off": return .bool(false)
            default: return nil }
        case .int(let r):
            guard !quoted, let v = Int(text.replacingOccurrences(of: "_", with: "")), r.contains(v) else { return nil }
            return .int(v)
        case .float(let r):
            guard !quoted, let v = Double(text.replacingOccurrences(of: "_", with: "")), v.isFinite, r.contains(v) else { return nil }
            return .float(v)
        }
    }
}

/// A training configuration: a YAML file (DESIGN.md "Training config") with `--set key=value` overrides.
/// Every key is checked against `ConfigSchema`: unknown keys (with a did-you-mean), wrong types and values
/// out of range are errors naming the file, the key and the line. `model.*` holds a preset name and any
/// HF config.json fields of the model family, checked by the family.
public struct Config {
    public let file: String
    public private(set) var values: [String: ConfigValue]
    /// `model.<field>` values other than `model.preset`, as HF config.json fields.
    public private(set) var modelFields: [String: ConfigValue]

    public init(file: String, overrides: [String] = []) throws {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw ConfigError("\(file): cannot read the config file (\(error.localizedDescription))")
        }
        try self.init(yaml: text, file: file, overrides: overrides)
    }

    public init(yaml text: String, file: String, overrides: [String] = []) throws {
        self.file = file
        values = [:]
        modelFields = [:]
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
        for (key, entry) in ConfigSchema.entries where values[key] == nil {
            if let d = entry.default { values[key] = d }
        }
    }

    private mutating func walk(_ mapping: Node.Mapping, path: String) throws {
        var seen = Set<String>()
        for (k, v) in mapping {
            guard let name = k.scalar?.string else { throw ConfigError("\(file):\(line(k)): keys must be plain names") }
            let key = path.isEmpty ? name : path + "." + name
            guard seen.insert(name).inserted else { throw ConfigError("\(file):\(line(k)): duplicate key \(key)") }
            if let m = v.mapping {
                if key.hasPrefix("model.") { throw ConfigError("\(file):\(line(v)): \(key) must be a single value") }
                guard ConfigSchema.sections.contains(key) else { throw unknown(key, at: "\(file):\(line(k))") }
                try walk(m, path: key)
            } else if let s = v.scalar {
                if path.isEmpty { throw ConfigError("\(file):\(line(k)): \(key) must be a section (a mapping of keys)") }
                let quoted = s.style == .singleQuoted || s.style == .doubleQuoted
                try assign(key, s.string, quoted: quoted, at: "\(file):\(line(v))")
            } else {
                throw ConfigError("\(file):\(line(v)): \(key) must be a single value, not a list")
            }
        }
    }

    private func line(_ n: Node) -> String { n.mark.map { String($0.line) } ?? "?" }

    private mutating func assign(_ key: String, _ text: String, quoted: Bool, at place: String) throws {
        if key.hasPrefix("model.") && key != "model.preset" {
            let field = String(key.dropFirst("model.".count))
            guard field.range(of: #"^[a-z_][a-z0-9_]*$"#, options: .regularExpression) != nil else {
                throw ConfigError("\(place): \(key) is not a model config field name")
            }
            modelFields[field] = Self.untyped(text, quoted: quoted)
            return
        }
        guard let entry = ConfigSchema.entries[key] else { throw unknown(key, at: place) }
        guard let value = entry.kind.parse(text, quoted: quoted) else {
            throw ConfigError("\(place): \(key) = \(text) in \(file): expected \(entry.kind.name)")
        }
        values[key] = value
    }

    private static func untyped(_ text: String, quoted: Bool) -> ConfigValue {
        if quoted { return .string(text) }
        if let i = Int(text) { return .int(i) }
        if let d = Double(text) { return .float(d) }
        if text == "true" || text == "false" { return .bool(text == "true") }
        return .string(text)
    }

    private func unknown(_ key: String, at place: String) -> ConfigError {
        let known = Array(ConfigSchema.entries.keys) + Array(ConfigSchema.sections)
        let best = known.min { editDistance($0, key) < editDistance($1, key) }
        let hint = best.flatMap { editDistance($0, key) <= max(2, key.count / 3) ? " (did you mean \($0)?)" : nil } ?? ""
        return ConfigError("\(place): unknown key \(key) in \(file)\(hint)")
    }

    // MARK: - Typed access

    public func int(_ key: String) -> Int {
        guard case .int(let v)? = values[key] else { fatalError("config key \(key) is not an integer in the schema") }
        return v
    }
    public func double(_ key: String) -> Double {
        switch values[key] {
        case .float(let v)?: return v
        case .int(let v)?: return Double(v)
        default: fatalError("config key \(key) is not a number in the schema")
        }
    }
    public func bool(_ key: String) -> Bool {
        guard case .bool(let v)? = values[key] else { fatalError("config key \(key) is not a bool in the schema") }
        return v
    }
    /// A string value, nil where the key is unset and has no default.
    public func string(_ key: String) -> String? {
        guard case .string(let v)? = values[key] else { return nil }
        return v
    }
    public func isSet(_ key: String) -> Bool { values[key] != nil }

    /// A stable 64-bit hash of every value (FNV-1a over sorted `key=value` lines), compared across ranks.
    public var hash: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let lines = (values.map { "\($0.key)=\($0.value)" } + modelFields.map { "model.\($0.key)=\($0.value)" }).sorted()
        for byte in lines.joined(separator: "\n").utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
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
