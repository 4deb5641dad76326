import Foundation

/// A character vocabulary for CTC as transformers' `Wav2Vec2CTCTokenizer` reads it from vocab.json
/// ({token: id}): `<pad>` (the CTC blank, id `padID`), `<s>`, `</s>`, `<unk>`, the word delimiter `|`
/// standing for a space, then one token per character.
public struct CharacterVocabulary: Equatable, Sendable {
    /// Tokens by id.
    public let tokens: [String]
    public let padID: Int32
    public let wordDelimiter = "|"
    private let ids: [String: Int32]

    /// English letters, the apostrophe and the word delimiter: what `launch/prepare-speech` transcribes.
    public static let english = CharacterVocabulary(tokens: ["<pad>", "<s>", "</s>", "<unk>", "|", "'"]
                                                    + (UInt8(ascii: "a")...UInt8(ascii: "z")).map { String(UnicodeScalar($0)) })

    public init(tokens: [String]) {
        self.tokens = tokens
        ids = Dictionary(tokens.enumerated().map { ($1, Int32($0)) }, uniquingKeysWith: min)
        padID = ids["<pad>"] ?? 0
    }

    /// Reads a vocab.json of {token: id} with ids 0..<n.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read") }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Int] else {
            throw DataError.invalidFormat(path: path, reason: "not a JSON object of token: id")
        }
        var tokens = [String](repeating: "", count: object.count)
        for (token, id) in object {
            guard id >= 0 && id < object.count, tokens[id].isEmpty else {
                throw DataError.invalidFormat(path: path, reason: "ids must number the tokens 0..<\(object.count) once each (\(token): \(id))")
            }
            tokens[id] = token
        }
        self.init(tokens: tokens)
    }

    public var count: Int { tokens.count }

    /// The vocab.json transformers' `Wav2Vec2CTCTokenizer` reads.
    public var json: String {
        let body = tokens.enumerated().map { id, token -> String in
            let escaped = token.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "  \"\(escaped)\": \(id)"
        }
        return "{\n" + body.joined(separator: ",\n") + "\n}\n"
    }

    /// The ids of `text` (a space is the word delimiter); a character outside the vocabulary is an error
    /// naming it (`origin` says whose transcript).
    public func encode(_ text: String, origin: String) throws -> [Int32] {
        try text.map { c -> Int32 in
            let token = c == " " ? wordDelimiter : String(c)
            guard let id = ids[token] else {
                throw DataError.invalidFormat(path: origin, reason: "the transcript has \"\(c)\" (U+\(String(c.unicodeScalars.first!.value, radix: 16, uppercase: true))), which the character vocabulary lacks")
            }
            return id
        }
    }

    /// Greedy CTC decoding of per-frame argmax ids: repeats collapsed, blanks and special tokens dropped,
    /// the word delimiter read as a space (runs of them as one), trimmed.
    public func decodeCTC(_ frames: [Int32]) -> String {
        var out = ""
        var previous: Int32 = -1
        for id in frames {
            defer { previous = id }
            guard id != previous, id != padID, id >= 0, Int(id) < tokens.count else { continue }
            let token = tokens[Int(id)]
            if token == wordDelimiter {
                if !out.isEmpty && !out.hasSuffix(" ") { out += " " }
            } else if !(token.hasPrefix("<") && token.hasSuffix(">")) {
                out += token
            }
        }
        return out.hasSuffix(" ") ? String(out.dropLast()) : out
    }

    /// Levenshtein distance between two character sequences (the character error rate's numerator).
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        var row = Array(0...y.count)
        for i in 1...x.count {
            var diagonal = row[0]
            row[0] = i
            for j in stride(from: 1, through: y.count, by: 1) {
                let next = min(row[j] + 1, row[j - 1] + 1, diagonal + (x[i - 1] == y[j - 1] ? 0 : 1))
                diagonal = row[j]
                row[j] = next
            }
        }
        return row[y.count]
    }
}
