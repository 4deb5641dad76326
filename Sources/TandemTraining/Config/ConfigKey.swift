/// What a config key accepts, for messages and `tandem train --help`.
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

/// A scalar config value: a parsed key before it reaches its typed property, or an untyped
/// `model.<field>` (an HF config.json field the model family checks).
public enum ConfigValue: Equatable, CustomStringConvertible {
    case int(Int), float(Double), bool(Bool), string(String)
    /// A list of scalars: only `model.*` fields take one (HF config.json lists such as wav2vec2's `conv_dim`).
    case list([ConfigValue])

    var int: Int? { if case .int(let v) = self { return v } else { return nil } }
    var double: Double? { if case .float(let v) = self { return v } else { return nil } }
    var bool: Bool? { if case .bool(let v) = self { return v } else { return nil } }
    var string: String? { if case .string(let v) = self { return v } else { return nil } }

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .bool(let v): return String(v)
        case .string(let v): return v
        case .list(let v): return "[" + v.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

/// One key of a config section: its name, the typed property it sets, what it accepts and its help.
/// Sections list their keys once (`ConfigSection.keys`); the reader, `--set`, the did-you-mean hints, the
/// config hash, `trainer_state.json` and `tandem train --help` all work from that list, and the trainer
/// reads the typed properties, so a misspelt key in Swift does not compile.
public struct ConfigKey<Section> {
    public let name: String
    public let kind: ConfigKind
    public let help: String
    /// Stores the parsed value into the section.
    let assign: (inout Section, ConfigValue) -> Void
    /// The value as `trainer_state.json` and the config hash write it; nil while unset without default.
    let render: (Section) -> String?

    /// An integer key in `range`.
    public static func int(_ name: String, _ path: WritableKeyPath<Section, Int>, _ range: ClosedRange<Int>,
                           _ help: String) -> Self {
        key(name, .int(range), help, path, from: { $0.int }, text: { String($0) })
    }

    /// An integer key in `range` that has no default (nil until set).
    public static func int(_ name: String, _ path: WritableKeyPath<Section, Int?>, _ range: ClosedRange<Int>,
                           _ help: String) -> Self {
        key(name, .int(range), help, path, from: { $0.int }, text: { $0.map { String($0) } })
    }

    /// A number key in `range` (an integer in YAML is read as a number).
    public static func float(_ name: String, _ path: WritableKeyPath<Section, Double>, _ range: ClosedRange<Double>,
                             _ help: String) -> Self {
        key(name, .float(range), help, path, from: { $0.double }, text: { String($0) })
    }

    /// A number key in `range` that has no default (nil until set).
    public static func float(_ name: String, _ path: WritableKeyPath<Section, Double?>, _ range: ClosedRange<Double>,
                             _ help: String) -> Self {
        key(name, .float(range), help, path, from: { $0.double }, text: { $0.map { String($0) } })
    }

    public static func bool(_ name: String, _ path: WritableKeyPath<Section, Bool>, _ help: String) -> Self {
        key(name, .bool, help, path, from: { $0.bool }, text: { String($0) })
    }

    /// A boolean key whose default depends on other settings (nil until set).
    public static func bool(_ name: String, _ path: WritableKeyPath<Section, Bool?>, _ help: String) -> Self {
        key(name, .bool, help, path, from: { $0.bool }, text: { $0.map { String($0) } })
    }

    /// A string key without default (nil until set).
    public static func string(_ name: String, _ path: WritableKeyPath<Section, String?>, _ help: String) -> Self {
        key(name, .string, help, path, from: { $0.string }, text: { $0 })
    }

    /// One of an enum's cases by raw value; the choice list is the enum's `allCases`.
    public static func choice<E: CaseIterable & RawRepresentable>(_ name: String, _ path: WritableKeyPath<Section, E>,
                                                                 _ help: String) -> Self where E.RawValue == String {
        key(name, .choice(E.allCases.map(\.rawValue)), help, path, from: { $0.string.flatMap(E.init(rawValue:)) },
            text: { $0.rawValue })
    }

    /// A key of property type V: `from` takes V out of a parsed value of the key's kind, `text` renders it.
    private static func key<V>(_ name: String, _ kind: ConfigKind, _ help: String, _ path: WritableKeyPath<Section, V>,
                               from value: @escaping (ConfigValue) -> V?, text: @escaping (V) -> String?) -> Self {
        .init(name: name, kind: kind, help: help,
              assign: { s, v in if let x = value(v) { s[keyPath: path] = x } },
              render: { text($0[keyPath: path]) })
    }
}

/// A section of the training config (`train:`, `data:`, ...): a struct whose initial property values are
/// the defaults, and the list of its keys.
public protocol ConfigSection {
    init()
    static var keys: [ConfigKey<Self>] { get }
}
