import Foundation

/// What the data pipeline needs from a tokenizer: `tandem prepare-text`, `tandem tokenize` and the shard
/// checks take WordPiece (BERT's vocab.txt or a WordPiece tokenizer.json) and byte-level BPE (GPT-2's
/// tokenizer.json) alike.
public protocol TextTokenizer {
    /// Ids run from 0 to vocabSize - 1.
    var vocabSize: Int { get }
    /// A fingerprint of the vocabulary, recorded in shard manifests: shards made with another one are refused.
    var vocabHash: String { get }
    /// The id that stands for a line with no token in a line-aligned corpus (WordPiece's [UNK]).
    var unknownID: Int32 { get }
    /// Appends the ids of one line of a document (its bytes, without the "\n") as a sentence of a shard.
    /// WordPiece drops the line's end; byte-level BPE keeps it as a "\n" token (and encodes whole
    /// documents, `encodesWholeDocuments`, so that the sentences of a document back to back are the
    /// document's own encoding).
    func appendLineIDs(utf8 line: UnsafeRawBufferPointer, to ids: inout [Int32])
    /// The ids of `line` as `tandem tokenize` prints them (HF's `encode(line)`), optionally with the
    /// tokenizer's special tokens around them.
    func appendTokenizeIDs(utf8 line: UnsafeRawBufferPointer, special: Bool, to ids: inout [Int32])
    /// Whether `prepare-text` should hand it whole documents (`documentLineIDs`) rather than lines.
    var encodesWholeDocuments: Bool { get }
    /// The ids of each line of a document (lines without their "\n").
    func documentLineIDs(_ lines: [[UInt8]]) -> [[Int32]]
}

extension TextTokenizer {
    public var encodesWholeDocuments: Bool { false }

    public func documentLineIDs(_ lines: [[UInt8]]) -> [[Int32]] {
        lines.map { line in
            var ids: [Int32] = []
            line.withUnsafeBytes { appendLineIDs(utf8: $0, to: &ids) }
            return ids
        }
    }
}

extension WordPieceTokenizer: TextTokenizer {
    public var unknownID: Int32 { unkID }

    public func appendLineIDs(utf8 line: UnsafeRawBufferPointer, to ids: inout [Int32]) { appendIDs(utf8: line, to: &ids) }

    public func appendTokenizeIDs(utf8 line: UnsafeRawBufferPointer, special: Bool, to ids: inout [Int32]) {
        if special { ids.append(clsID) }
        appendIDs(utf8: line, to: &ids)
        if special { ids.append(sepID) }
    }
}

/// Opens a tokenizer file by its kind: a tokenizer.json whose model is BPE as `ByteLevelBPETokenizer`, one
/// whose model is WordPiece (or a vocab.txt) as `WordPieceTokenizer`; another kind is an error naming the
/// file and the kind found.
public func openTokenizer(path: String, cased: Bool = false) throws -> any TextTokenizer {
    guard path.hasSuffix(".json") else { return try WordPieceTokenizer(vocabFile: path, cased: cased) }
    switch try tokenizerModelType(path: path) {
    case "BPE": return try ByteLevelBPETokenizer(tokenizerJSON: path)
    case "WordPiece": return try WordPieceTokenizer(tokenizerJSON: path)
    case let other:
        throw DataError.invalidFormat(path: path, reason: "model.type is \(other), a tokenizer Tandem does not implement (BPE with a ByteLevel pre-tokenizer, or WordPiece)")
    }
}

/// The `model.type` of a tokenizer.json ("BPE", "WordPiece", "Unigram", ...).
public func tokenizerModelType(path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read the tokenizer file") }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw DataError.invalidFormat(path: path, reason: "not a JSON object (a tokenizer.json is expected)")
    }
    guard let model = object["model"] as? [String: Any] else {
        throw DataError.invalidFormat(path: path, reason: "no model object: not a tokenizer.json")
    }
    guard let type = model["type"] as? String else {
        // Old tokenizer.json files omit the type of a BPE model that has merges.
        if model["merges"] != nil { return "BPE" }
        throw DataError.invalidFormat(path: path, reason: "model.type is missing")
    }
    return type
}
