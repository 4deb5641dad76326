import Foundation
import TandemCollectives
import TandemData

/// `tandem prepare-text`, `tandem vocab` and `tandem tokenize`: the text side of the data pipeline.
public enum TextCommands {
    /// Tokenizes `inputs` into token shards in `out` (and `out-eval` with an eval fraction). Under mpirun
    /// the files are dealt out round-robin to ranks; rank 0 writes the manifests once all are done.
    /// With `lineAligned`, line i of each file is sentence i of its shard (see `prepareText`).
    public static func prepare(vocab: String, cased: Bool, out: String, inputs: [String], evalFraction: Double,
                               seed: UInt64, lineAligned: Bool = false, communicator comm: any Communicator) throws {
        let tokenizer = try openTokenizer(path: vocab, cased: cased)
        let jobs = TextShardJob.plan(inputs: inputs)
        let mine = jobs.enumerated().filter { $0.offset % comm.size == comm.rank }.map(\.element)
        var outcome = ""
        if !mine.isEmpty {
            // Rank 0 shows its own files' progress: documents, input MB, ETA by bytes.
            let progress = comm.rank == 0 ? PreparationProgress(label: "prepare-text" + (comm.size > 1 ? " (rank 0's files)" : ""),
                                                               unit: "documents") : nil
            var last: PrepareTextProgress?
            do {
                try prepareText(vocab: tokenizer, out: out, inputs: mine, evalFraction: evalFraction, seed: seed, lineAligned: lineAligned,
                                writeManifest: comm.size == 1, progress: { p in
                                    last = p
                                    progress?.update(items: p.documents + p.evalDocuments, bytes: p.bytesDone, totalBytes: p.bytesTotal)
                                }, log: { line in
                                    if let p = last {
                                        progress?.finish(items: p.documents + p.evalDocuments, bytes: p.bytesDone, totalBytes: p.bytesTotal)
                                    }
                                    print("rank \(comm.rank): \(line)")
                                })
            } catch {
                progress?.abandon()
                outcome = "\(error)"
            }
        }
        // Every rank learns whether any failed before rank 0 writes manifests over the shards.
        let failures = comm.allGather(outcome.isEmpty ? Int32(0) : Int32(1))
        if !outcome.isEmpty { throw ConfigError(outcome) }
        if let bad = failures.firstIndex(of: 1) { throw ConfigError("rank \(bad) failed to prepare its files (see its message)") }
        guard comm.size > 1 else { return }
        comm.barrier()
        if comm.rank == 0 {
            let names = jobs.map(\.shard)
            try TokenShardManifest.build(directory: out, names: names, vocabSize: tokenizer.vocabSize,
                                         vocabHash: tokenizer.vocabHash).write(directory: out)
            if evalFraction > 0 {
                let evalOut = (out.hasSuffix("/") ? String(out.dropLast()) : out) + "-eval"
                try TokenShardManifest.build(directory: evalOut, names: names, vocabSize: tokenizer.vocabSize,
                                             vocabHash: tokenizer.vocabHash).write(directory: evalOut)
            }
        }
        comm.barrier()
    }

    /// Trains a WordPiece vocabulary of `size` tokens on `inputs` and writes it as vocab.txt (`type`
    /// "wordpiece"), or a byte-level BPE (`type` "bpe", GPT-2's) and writes tokenizer.json, vocab.json and
    /// merges.txt into the directory `out`.
    /// RoBERTa's special tokens, first in the vocabulary as in fairseq's dictionary (`<mask>` comes last
    /// there; its id does not matter to transformers, which reads it from the tokenizer).
    public static let robertaSpecialTokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

    public static func vocab(type: String = "wordpiece", size: Int, minFrequency: Int, cased: Bool, roberta: Bool = false,
                             out: String, inputs: [String]) throws {
        let started = Date()
        switch type {
        case "wordpiece":
            guard !roberta else { throw ConfigError("--roberta is for --type bpe: RoBERTa's tokenizer is a byte-level BPE") }
            var trainer = WordPieceTrainer(vocabSize: size, minFrequency: minFrequency,
                                           normalization: cased ? .cased : .uncased)
            let tokens = try trainer.train(files: inputs, output: out)
            print("vocab: \(tokens.count) tokens from \(inputs.count) file(s) written to \(out)")
        case "bpe":
            guard !cased else { throw ConfigError("--cased is for WordPiece: byte-level BPE keeps every byte as it is") }
            let specials = roberta ? robertaSpecialTokens : [ByteLevelBPETokenizer.endOfText]
            let tokenizer = try BPETrainer(vocabSize: size, minFrequency: minFrequency, specialTokens: specials)
                .train(files: inputs, directory: out)
            print(String(format: "vocab: byte-level BPE of %d tokens (%d merges, special tokens %@) from %d file(s) in %.1f s: tokenizer.json, vocab.json and merges.txt in %@",
                         tokenizer.vocabSize, tokenizer.vocabSize - 256 - specials.count, specials.joined(separator: " "), inputs.count,
                         Date().timeIntervalSince(started), out))
        default:
            throw ConfigError("--type \(type): expected wordpiece or bpe")
        }
    }

    /// Prints the size of each vocabulary (special tokens left out), the tokens they share and the overlap,
    /// shared / size of each (`VocabularyOverlap`: SciBERT's figure, 42% between BaseVocab and SciVocab).
    public static func vocabOverlap(_ a: String, _ b: String) throws {
        let overlap = VocabularyOverlap(first: try VocabularyOverlap.tokens(path: a), second: try VocabularyOverlap.tokens(path: b))
        print("A \(a): \(overlap.first.count) tokens")
        print("B \(b): \(overlap.second.count) tokens")
        print(String(format: "shared: %d tokens, %.1f%% of A, %.1f%% of B (shared / size, special tokens left out)",
                     overlap.shared, 100 * overlap.ofFirst, 100 * overlap.ofSecond))
    }

    /// Reads lines from stdin and prints each one's ids, space-separated.
    public static func tokenize(vocab: String, cased: Bool, special: Bool) throws {
        let tokenizer = try openTokenizer(path: vocab, cased: cased)
        try tokenizer.tokenizeLines(addSpecialTokens: special)
    }
}
