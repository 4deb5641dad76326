// A stand-alone stand-in for the `tandem` data subcommands, built by build_data_tool.sh from the TandemData
// sources so the comparison scripts can run before the executable has them:
//   data-tool tokenize VOCAB.txt|tokenizer.json [--cased] [--special] < lines   one line of ids per input line
//   data-tool vocab SIZE OUT.txt INPUT...                                      train a WordPiece vocabulary
//   data-tool prepare-text VOCAB OUT_DIR EVAL_FRACTION INPUT...                 token shards
// Throughput goes to stderr.
import Foundation

func fail(_ message: String) -> Never {
    FileHandle.standardError.write((message + "\n").data(using: .utf8)!)
    exit(1)
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("usage: data-tool tokenize|vocab|prepare-text ...") }
do {
    switch command {
    case "tokenize":
        guard arguments.count >= 2 else { fail("usage: data-tool tokenize VOCAB [--cased] [--special]") }
        let tokenizer = try WordPieceTokenizer(path: arguments[1], cased: arguments.contains("--cased"))
        let start = Date()
        let (bytes, _) = try tokenizer.tokenizeLines(addSpecialTokens: arguments.contains("--special"))
        FileHandle.standardError.write(String(format: "data-tool tokenize: %.1f MB, %.1f MB/s\n", Double(bytes) / 1e6,
                                              Double(bytes) / 1e6 / Date().timeIntervalSince(start)).data(using: .utf8)!)
    case "vocab":
        guard arguments.count >= 4, let size = Int(arguments[1]) else { fail("usage: data-tool vocab SIZE OUT INPUT...") }
        let start = Date()
        var trainer = WordPieceTrainer(vocabSize: size)
        let tokens = try trainer.train(files: Array(arguments[3...]), output: arguments[2])
        FileHandle.standardError.write(String(format: "data-tool vocab: %d tokens from %d distinct words in %.2f s\n",
                                              tokens.count, trainer.wordCounts.count, Date().timeIntervalSince(start)).data(using: .utf8)!)
    case "prepare-text":
        guard arguments.count >= 5, let fraction = Double(arguments[3]) else { fail("usage: data-tool prepare-text VOCAB OUT EVAL_FRACTION INPUT...") }
        let tokenizer = try WordPieceTokenizer(path: arguments[1])
        try prepareText(vocab: tokenizer, out: arguments[2], inputs: TextShardJob.plan(inputs: Array(arguments[4...])), evalFraction: fraction,
                        progress: { p in
                            FileHandle.standardError.write(String(format: "\r%.0f%% %.1f MB/s", 100 * Double(p.bytesDone) / Double(max(1, p.bytesTotal)),
                                                                  p.megabytesPerSecond).data(using: .utf8)!)
                        })
    default:
        fail("unknown command \(command)")
    }
} catch {
    fail("\(error)")
}
