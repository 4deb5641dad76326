import Foundation

/// One unit of `prepareText` work: a text file and the name of the shard it becomes. Ranks under mpirun
/// take disjoint lists of jobs.
public struct TextShardJob: Equatable, Sendable {
    /// The text file to read.
    public var input: String
    /// The shard name: the job writes `NAME.bin` and `NAME.idx`.
    public var shard: String

    /// A job reading `input` into shard `shard`.
    public init(input: String, shard: String) {
        self.input = input
        self.shard = shard
    }

    /// One job per input, shards named `prefix-00000`, `prefix-00001`, ... in input order.
    public static func plan(inputs: [String], prefix: String = "shard") -> [TextShardJob] {
        inputs.enumerated().map { n, input in
            let digits = String(n)
            return TextShardJob(input: input, shard: prefix + "-" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits)
        }
    }
}

/// Where `prepareText` is, reported after each chunk of input.
public struct PrepareTextProgress: Sendable {
    /// Bytes read so far, and in all the inputs.
    public var bytesDone: Int
    public var bytesTotal: Int
    /// Training tokens, sentences and documents written, and held-out documents.
    public var tokens: Int
    public var sentences: Int
    public var documents: Int
    public var evalDocuments: Int
    /// Time since the start, and input throughput.
    public var seconds: Double
    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytesDone) / 1e6 / seconds : 0 }
}

/// What `prepareText` wrote.
public struct PrepareTextSummary: Sendable {
    /// Input bytes and the time taken.
    public var bytes: Int
    public var seconds: Double
    /// Training shards: tokens, sentences, documents.
    public var tokens: Int, sentences: Int, documents: Int
    /// Held-out shards.
    public var evalTokens: Int, evalSentences: Int, evalDocuments: Int
    /// Where the training and held-out shards are (the latter nil without an eval fraction).
    public var trainDirectory: String
    public var evalDirectory: String?
    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / 1e6 / seconds : 0 }
}

/// Tokenizes text files into token shards, streaming: documents are separated by blank lines (lines of
/// only spaces, tabs or CRs count as blank) and by the end of a file, each other line is a sentence.
/// Invalid UTF-8 is read as U+FFFD (see `WordPieceTokenizer`); lines with no token are skipped.
///
/// With `evalFraction > 0`, each document goes to the held-out shards in `evalOut` (default: `out` + "-eval",
/// the layout of the config's `data.train` / `data.eval`) with that probability, drawn from
/// `Philox(seed)` at (stream: hash of the shard name, step: 0, index: document number in the file), so the
/// split is deterministic and independent of how jobs are spread over ranks.
///
/// With `lineAligned` (one side of a parallel corpus, `tandem prepare-translation`'s .src or .tgt), line i
/// of a file must become sentence i of its shard whatever it holds: each file is one document, a line with
/// no token (only characters that clean_text drops) becomes one `[UNK]` instead of vanishing, and a blank
/// line is an error naming the file and line, since it would shift every later pair.
///
/// - Parameters:
///   - writeManifest: write `manifest.json` of the listed shards; a multi-rank run writes it on rank 0 with
///     `TokenShardManifest.build` once every rank is done.
///   - progress: called after every megabyte read and at the end of each file (the caller decides how
///     often to print).
///   - log: receives the closing line with the throughput in MB/s.
@discardableResult
public func prepareText(vocab: any TextTokenizer, out: String, inputs: [TextShardJob], evalFraction: Double = 0,
                        evalOut: String? = nil, seed: UInt64 = 0, lineAligned: Bool = false, writeManifest: Bool = true,
                        progress: ((PrepareTextProgress) -> Void)? = nil,
                        log: (String) -> Void = { print($0) }) throws -> PrepareTextSummary {
    guard evalFraction >= 0 && evalFraction < 1 else { throw DataError.invalidArgument("--eval-fraction \(evalFraction) is not in [0, 1)") }
    guard !inputs.isEmpty else { throw DataError.invalidArgument("no input files") }
    guard !(lineAligned && evalFraction > 0) else {
        throw DataError.invalidArgument("--eval-fraction with --line-aligned would hold out whole files: split the corpus by document first (prepare-translation does)")
    }
    let evalDirectory = evalFraction > 0 ? (evalOut ?? (out.hasSuffix("/") ? String(out.dropLast()) : out) + "-eval") : nil
    for directory in [out] + (evalDirectory.map { [$0] } ?? []) {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw DataError.io(path: directory, reason: "cannot create the directory: \(error.localizedDescription)")
        }
    }
    var bytesTotal = 0
    for job in inputs {
        // The file a symbolic link names: attributesOfItem describes the link itself (its size is its path's).
        let target = URL(fileURLWithPath: job.input).resolvingSymlinksInPath().path
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: target) else {
            throw DataError.io(path: job.input, reason: "no such file")
        }
        if attributes[.type] as? FileAttributeType == .typeDirectory {
            throw DataError.io(path: job.input, reason: "is a directory, not a text file")
        }
        bytesTotal += (attributes[.size] as? Int) ?? 0
    }

    let start = Date()
    var state = PrepareTextProgress(bytesDone: 0, bytesTotal: bytesTotal, tokens: 0, sentences: 0, documents: 0, evalDocuments: 0, seconds: 0)
    var evalTokens = 0, evalSentences = 0
    let philox = Philox(seed: seed)
    var ids: [Int32] = []
    ids.reserveCapacity(1024)

    for job in inputs {
        let train = try TokenShardWriter(directory: out, name: job.shard, vocabSize: vocab.vocabSize)
        let held = try evalDirectory.map { try TokenShardWriter(directory: $0, name: job.shard, vocabSize: vocab.vocabSize) }
        let stream = FNV1a64.hash(job.shard)
        var documentIndex: UInt64 = 0
        var current = train
        var documentOpen = false
        var lineNumber = 0

        // A tokenizer that encodes whole documents (byte-level BPE) gets each document's lines at its end.
        var pending: [[UInt8]] = []
        func flushDocument() throws {
            guard !pending.isEmpty else { return }
            let lines = pending
            pending.removeAll()
            for lineIDs in vocab.documentLineIDs(lines) {
                ids = lineIDs
                try addSentence()
            }
        }

        // One line (without its "\n"): a blank line closes the document, another line is a sentence of it.
        func handle(_ line: UnsafeRawBufferPointer) throws {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
                if lineAligned {
                    throw DataError.invalidFormat(path: "\(job.input):\(lineNumber)", reason: "empty line in a line-aligned corpus (one sentence of a pair a line)")
                }
                try flushDocument()
                documentOpen = false
                return
            }
            if vocab.encodesWholeDocuments && !lineAligned {
                pending.append([UInt8](line))
                return
            }
            ids.removeAll(keepingCapacity: true)
            vocab.appendLineIDs(utf8: line, to: &ids)
            try addSentence()
        }

        // `ids` as the next sentence of the open document (opening one, train or held out, if needed).
        func addSentence() throws {
            if ids.isEmpty {
                guard lineAligned else { return }
                ids.append(vocab.unknownID)
            }
            if !documentOpen {
                documentOpen = true
                let toEval = held != nil && Double(philox.uniform(stream: stream, step: 0, index: documentIndex)) < evalFraction
                documentIndex += 1
                current = toEval ? held! : train
                current.beginDocument()
                if toEval { state.evalDocuments += 1 } else { state.documents += 1 }
            }
            try current.addSentence(ids)
            if current === train { state.tokens += ids.count; state.sentences += 1 } else { evalTokens += ids.count; evalSentences += 1 }
        }

        // Chunks of 1 MB: a progress report every few tenths of a second even for the slower tokenizers.
        try readLines(path: job.input, chunkSize: 1 << 20, chunk: { n in
            state.bytesDone += n
            if let progress {
                state.seconds = Date().timeIntervalSince(start)
                progress(state)
            }
        }, line: handle)
        try flushDocument()
        try train.finish()
        try held?.finish()
        state.seconds = Date().timeIntervalSince(start)
        progress?(state)
    }

    guard state.tokens + evalTokens > 0 else {
        throw DataError.invalidFormat(path: inputs.map(\.input).joined(separator: ", "), reason: "no tokens: the corpus is empty")
    }
    if writeManifest {
        let names = inputs.map(\.shard)
        try TokenShardManifest.build(directory: out, names: names, vocabSize: vocab.vocabSize, vocabHash: vocab.vocabHash).write(directory: out)
        if let evalDirectory {
            try TokenShardManifest.build(directory: evalDirectory, names: names, vocabSize: vocab.vocabSize, vocabHash: vocab.vocabHash)
                .write(directory: evalDirectory)
        }
    }
    let summary = PrepareTextSummary(bytes: state.bytesDone, seconds: Date().timeIntervalSince(start), tokens: state.tokens,
                                     sentences: state.sentences, documents: state.documents, evalTokens: evalTokens,
                                     evalSentences: evalSentences, evalDocuments: state.evalDocuments,
                                     trainDirectory: out, evalDirectory: evalDirectory)
    log(String(format: "prepare-text: %.1f MB in %.2f s (%.1f MB/s): ", Double(summary.bytes) / 1e6, summary.seconds, summary.megabytesPerSecond)
        + "\(summary.tokens) tokens, \(summary.sentences) sentences, \(summary.documents) documents in \(out)"
        + (evalDirectory.map { "; held out \(summary.evalDocuments) documents (\(evalTokens) tokens) in \($0)" } ?? ""))
    return summary
}
