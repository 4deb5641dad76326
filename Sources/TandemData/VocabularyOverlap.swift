import Foundation

/// The tokens two vocabularies share, special tokens left out: SciBERT's comparison of its domain vocabulary
/// with BERT's (Beltagy et al. 2019, section 2.1: "the resulting token overlap between BaseVocab and
/// SciVocab is 42%", both of about 30k tokens). The overlap of a vocabulary is shared / its size, so that
/// for two vocabularies of one size it is the paper's single figure.
public struct VocabularyOverlap {
    /// The vocabularies' tokens (each token once), special tokens left out.
    public let first: Set<String>, second: Set<String>
    /// Tokens in both.
    public let shared: Int

    public init(first: Set<String>, second: Set<String>) {
        self.first = first
        self.second = second
        shared = first.intersection(second).count
    }

    /// shared / size of the first vocabulary (0 when it is empty).
    public var ofFirst: Double { first.isEmpty ? 0 : Double(shared) / Double(first.count) }
    /// shared / size of the second vocabulary (0 when it is empty).
    public var ofSecond: Double { second.isEmpty ? 0 : Double(shared) / Double(second.count) }

    /// BERT's ([PAD] [UNK] [CLS] [SEP] [MASK] and the [unusedN] slots), GPT-2's and RoBERTa's special tokens.
    public static func isSpecial(_ token: String) -> Bool {
        if ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>", "<pad>", "<unk>", "<mask>", "<|endoftext|>"].contains(token) {
            return true
        }
        return token.hasPrefix("[unused") && token.hasSuffix("]") && Int(token.dropFirst(7).dropLast()) != nil
    }

    /// The tokens of a vocabulary file, special tokens left out: a BERT vocab.txt (a token a line, trailing
    /// whitespace trimmed, as transformers reads it) or a tokenizer.json (`model.vocab` of a WordPiece or BPE
    /// model, less the added tokens marked special). A file that cannot be read, does not parse or holds
    /// no token but special ones is an error naming it.
    public static func tokens(path: String) throws -> Set<String> {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read the vocabulary file") }
        var tokens: Set<String>
        if path.hasSuffix(".json") {
            let file: TokenizerVocabulary
            do { file = try JSONDecoder().decode(TokenizerVocabulary.self, from: data) } catch {
                throw DataError.invalidFormat(path: path, reason: "not a tokenizer.json with a model.vocab: \(error)")
            }
            tokens = Set(file.model.vocab.keys).subtracting((file.added_tokens ?? []).filter { $0.special ?? false }.map(\.content))
        } else {
            guard let text = String(data: data, encoding: .utf8) else { throw DataError.invalidFormat(path: path, reason: "vocabulary is not valid UTF-8") }
            tokens = Set(text.split(separator: "\n").map { line in
                String(String.UnicodeScalarView(line.unicodeScalars.reversed().drop { $0.properties.isWhitespace }.reversed()))
            })
            tokens.remove("")
        }
        tokens = tokens.filter { !isSpecial($0) }
        guard !tokens.isEmpty else { throw DataError.invalidFormat(path: path, reason: "empty vocabulary (no token but special ones)") }
        return tokens
    }

    private struct TokenizerVocabulary: Decodable {
        struct Model: Decodable { var vocab: [String: Int32] }
        struct AddedToken: Decodable {
            var content: String
            var special: Bool?
        }
        var model: Model
        var added_tokens: [AddedToken]?
    }
}
