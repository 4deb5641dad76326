import Foundation
import TandemData

/// The vocabulary a checkpoint carries beside model.safetensors (BERT's, SpanBERT's and GPT's), as
/// transformers' checkpoints do: data.vocab's file under its kind's name (`vocab.txt`, or `tokenizer.json`
/// for a tokenizer.json), in the checkpoint's MANIFEST with the other files. Continued pretraining (`--init-from`) checks it against
/// the new run's data.vocab: the embedding rows mean the tokens the checkpoint learnt them for, so another
/// vocabulary (a domain vocabulary such as SciBERT's) needs a model trained from scratch.
enum CheckpointVocabulary {
    /// The names a checkpoint's vocabulary may have, the one read first first.
    static let names = ["vocab.txt", "tokenizer.json"]

    /// The checkpoint text file for the vocabulary at `path` (data.vocab).
    static func file(dataVocab path: String) throws -> (name: String, text: String) {
        do {
            return (path.hasSuffix(".json") ? names[1] : names[0], try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            throw ConfigError("data.vocab: \(path): cannot read it (\(error.localizedDescription))")
        }
    }

    /// The vocabulary file of the checkpoint `directory`, if it has one.
    static func path(in directory: String) -> String? {
        names.map { (directory as NSString).appendingPathComponent($0) }.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// Checks that the checkpoint `directory` (`--init-from`) was trained with the tokens of `tokenizer`
    /// (data.vocab, at `dataVocab`): the same tokens in the same order. A difference is an error naming both
    /// files and the first line that differs. A directory with no vocabulary (older Tandem checkpoints,
    /// some transformers directories) passes; `note` says so for the log.
    static func check(initFrom directory: String, dataVocab: String, tokenizer: WordPieceTokenizer) throws {
        guard let path = path(in: directory) else { return }
        let saved: [String]
        do { saved = try WordPieceTokenizer(path: path).tokens } catch { throw ConfigError("--init-from: \(error)") }
        let ours = tokenizer.tokens
        let common = min(saved.count, ours.count)
        guard let i = (0..<common).first(where: { saved[$0] != ours[$0] }) ?? (saved.count == ours.count ? nil : common) else { return }
        func token(_ tokens: [String]) -> String { i < tokens.count ? "\"\(tokens[i])\"" : "the end of the file" }
        throw ConfigError("""
            --init-from: \(path) differs from data.vocab \(dataVocab) at line \(i + 1) (id \(i)): \(token(saved)) vs \(token(ours)); \
            continued pretraining needs the vocabulary the checkpoint was trained with (a model of another vocabulary \
            trains from scratch)
            """)
    }

    /// The log's note for a checkpoint directory with no vocabulary, nil when it has one.
    static func note(initFrom directory: String) -> String? {
        path(in: directory) == nil
            ? "\(directory) holds no vocab.txt or tokenizer.json: its vocabulary is not checked against data.vocab"
            : nil
    }
}
