import Foundation
import TandemCheckpoint
import TandemData
import TandemModels

/// HF config.json fields as a family builds its config from them: a preset's or a model directory's
/// fields, `model.<field>` overrides merged in, then decoded into the family's Codable config type.
public enum ModelFields {
    /// The fields of `name`, which must be one of `family`'s presets.
    public static func preset(_ name: String, of family: any ModelFamily.Type, file: String) throws -> [String: Any] {
        guard let p = family.presets.first(where: { $0.name == name }) else {
            throw ConfigError("\(file): model.preset = \(name) is not a \(family.name) preset")
        }
        return p.fields
    }

    /// The fields of a transformers directory's config.json.
    public static func read(directory: String) throws -> [String: Any] {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError("--init-from: \(path) cannot be read as JSON")
        }
        return object
    }

    /// A checkpoint directory's config.json path and `model_type` (nil when it has none or is not JSON),
    /// for the commands that load a checkpoint (`tandem generate`, `tandem translate`); no config.json is
    /// an error naming the directory.
    public static func checkpointModelType(directory: String) throws -> (configPath: String, type: String?) {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigError("\(directory): no config.json (give a checkpoint directory such as runs/NAME/step-00001000)")
        }
        return (path, (try? read(directory: directory))?["model_type"] as? String)
    }

    /// Applies `model.<field>` overrides; a field outside `known` is an error listing them.
    public static func merge(_ fields: inout [String: Any], _ overrides: [String: ConfigValue], known: [String],
                             file: String) throws {
        for (k, v) in overrides {
            guard known.contains(k) else {
                throw ConfigError("\(file): unknown model field model.\(k) (fields: \(known.joined(separator: ", ")))")
            }
            fields[k] = jsonValue(v)
        }
    }

    private static func jsonValue(_ v: ConfigValue) -> Any {
        switch v {
        case .int(let i): return i
        case .float(let d): return d
        case .bool(let b): return b
        case .string(let s): return s
        case .list(let l): return l.map(jsonValue)
        }
    }

    /// The fields decoded into a family's config type; a wrong type names `model.<field>` and the file.
    public static func decode<T: Decodable>(_ fields: [String: Any], file: String) throws -> T {
        do {
            let data = try JSONSerialization.data(withJSONObject: fields)
            return try JSONDecoder().decode(T.self, from: data)
        } catch DecodingError.typeMismatch(_, let context), DecodingError.dataCorrupted(let context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw ConfigError("\(file): model.\(key) has the wrong type (\(context.debugDescription))")
        } catch let e as DecodingError {
            throw ConfigError("\(file): invalid model fields: \(describeDecodingError(e))")
        } catch {
            throw ConfigError("\(file): invalid model fields: \(error)")
        }
    }

    /// The WordPiece vocabulary the run's token shards were made with (`data.vocab`, required).
    public static func tokenizer(_ config: TrainingConfig, for family: any ModelFamily.Type) throws -> WordPieceTokenizer {
        guard let path = config.data.vocab else {
            throw ConfigError("\(config.file): data.vocab is required for \(family.name) (the vocab.txt the shards were made with)")
        }
        do { return try WordPieceTokenizer(path: path, cased: config.data.cased) } catch {
            throw ConfigError("data.vocab: \(error)")
        }
    }

    /// The tokenizer of `data.vocab` of any kind (`openTokenizer`): WordPiece or byte-level BPE.
    public static func textTokenizer(_ config: TrainingConfig, for family: any ModelFamily.Type) throws -> any TextTokenizer {
        guard let path = config.data.vocab else {
            throw ConfigError("\(config.file): data.vocab is required for \(family.name) with token shards (the tokenizer.json or vocab.txt the shards were made with)")
        }
        do { return try openTokenizer(path: path, cased: config.data.cased) } catch { throw ConfigError("data.vocab: \(error)") }
    }

    /// A config's fields as JSON with its `model_type` and `architectures`: the checkpoint's config.json.
    public static func configJSON<T: Encodable>(_ config: T, adding extra: [String: Any] = [:]) -> String {
        let data = try! JSONEncoder().encode(config)
        var fields = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        for (k, v) in extra { fields[k] = v }
        return jsonText(fields)
    }
}

/// `--init-from`: fills a model from `directory`/model.safetensors through its `load` (shapes, origin, copy),
/// logging the parameters that kept their init and the tensors it ignored; errors name the file.
func loadInitFrom(directory: String, log: (String) -> Void,
                  _ load: ([String: [Int]], String, (String, UnsafeMutableBufferPointer<Float>) throws -> Void) throws
                      -> CheckpointLoadReport) throws {
    let path = (directory as NSString).appendingPathComponent("model.safetensors")
    let file: SafeTensorsFile
    do { file = try SafeTensorsFile(path: path) } catch { throw ConfigError("--init-from: \(error)") }
    let report: CheckpointLoadReport
    do {
        report = try load(file.tensors.mapValues(\.shape), path) { name, into in try file.copyFloats(name, into: into) }
    } catch { throw ConfigError("--init-from: \(error)") }
    if !report.keptInit.isEmpty { log("--init-from: kept the init of \(report.keptInit.joined(separator: ", "))") }
    if !report.ignored.isEmpty { log("--init-from: ignored \(report.ignored.joined(separator: ", "))") }
}

/// A model directory's config.json decoded as `C`, with its bytes and its path. Errors, made by `error` so
/// that each family throws its own type, name the file: "cannot read (...)", the message of an error the
/// config's own decoder throws (a field it refuses), or "not a valid `kind` config.json (...)".
func readModelConfig<C: Decodable>(_ type: C.Type, directory: String, kind: String,
                                   error makeError: (String) -> Error) throws -> (config: C, json: Data, path: String) {
    let path = (directory as NSString).appendingPathComponent("config.json")
    let json: Data
    do { json = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw makeError("\(path): cannot read (\(error.localizedDescription))")
    }
    do {
        return (try JSONDecoder().decode(C.self, from: json), json, path)
    } catch let e as DecodingError {
        throw makeError("\(path): not a valid \(kind) config.json (\(describeDecodingError(e)))")
    } catch {
        throw makeError("\(path): \(error)")
    }
}

/// Logs what loading a pre-trained image model's `origin` left at its init and what it ignored.
func logLoadReport(_ report: CheckpointLoadReport, origin: String, log: (String) -> Void) {
    if !report.keptInit.isEmpty {
        log("\(origin): \(report.keptInit.count) parameters keep their random init: " + report.keptInit.joined(separator: ", "))
    }
    if !report.ignored.isEmpty { log("\(origin): ignored \(report.ignored.joined(separator: ", "))") }
}

/// `fields` as pretty-printed JSON with sorted keys, for config.json files.
func jsonText(_ fields: [String: Any]) -> String {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: data, as: UTF8.self) + "\n"
}

/// A config.json decoding error as "field.path: what is wrong", for messages that name the file.
func describeDecodingError(_ e: DecodingError) -> String {
    switch e {
    case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
        let path = c.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
    @unknown default:
        return "\(e)"
    }
}

extension SafeTensorsFile {
    /// An image batch file's `pixel_values` (B, channels, size, size): B and the values; another shape is an
    /// error that `fail` makes from a message naming the tensor.
    func pixelValues(channels: Int, size S: Int, fail: (String) -> Error) throws -> (batch: Int, values: [Float]) {
        let shape = try info("pixel_values").shape
        guard shape.count == 4, shape[0] > 0, shape[1] == channels, shape[2] == S, shape[3] == S else {
            throw fail("pixel_values has shape \(shape), expected (batch, \(channels), \(S), \(S))")
        }
        return (shape[0], try floats("pixel_values"))
    }

    /// An optional integer tensor of a batch file (ids, labels, masks) as Int32: nil when absent, else it
    /// must have `shape` and every value in `range` (or equal to `alsoAllowed`, such as -100); `fail` makes
    /// the error from a message naming the tensor (and the index of a bad value).
    func batchIDs(_ name: String, shape: [Int], range: ClosedRange<Int32>?, alsoAllowed: Int32? = nil,
                  fail: (String) -> Error) throws -> [Int32]? {
        guard let info = tensors[name] else { return nil }
        guard info.shape == shape else { throw fail("\(name) has shape \(info.shape), expected \(shape)") }
        let values = try int32s(name)
        if let range, let i = values.firstIndex(where: { !range.contains($0) && $0 != alsoAllowed }) {
            throw fail("\(name)[\(i)] = \(values[i]) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return values
    }
}
