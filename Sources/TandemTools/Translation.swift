import Foundation
import TandemCheckpoint
import TandemData
import TandemModels
import TandemTraining

/// `tandem translate`: a seq2seq or marian checkpoint (config.json, model.safetensors and both
/// vocabularies, as `tandem train` writes them) translating stdin's lines, one translation per line on stdout.
public enum Translation {
    public struct Options {
        /// 1: greedy decoding (batched); more: beam search of that width, one sentence at a time.
        public var beam = 1
        /// GNMT's length penalty alpha for beam search (0: log-probability alone).
        public var lengthPenalty = 0.0
        /// Target tokens at most (eos included); nil: twice the source's plus 10.
        public var maxLength: Int?
        /// Where to draw the attention matrix of line `attentionLine` (1-based), if anywhere.
        public var attentionSVG: String?
        public var attentionLine = 1
        /// Sentences decoded together by greedy decoding.
        public var batch = 32
        public init() {}
    }

    /// A loaded model with its vocabularies.
    public struct Translator {
        public let model: any TranslationModel
        /// The model's parameters (the model does not own them).
        public let arena: ParameterArena
        public let source: WordPieceTokenizer
        public let target: WordPieceTokenizer

        /// Loads checkpoint `directory`; errors name the file.
        public init(directory: String) throws {
            let (configPath, type) = try ModelFields.checkpointModelType(directory: directory)
            arena = ParameterArena()
            switch type {
            case "seq2seq":
                let config = try Seq2SeqFamily.config(preset: nil, initFrom: directory, overrides: [:], source: nil, target: nil,
                                                      file: configPath)
                model = Seq2SeqModel(config, arena: arena, rng: Philox(seed: 0))
            case "marian":
                let config = try MarianFamily.config(preset: nil, initFrom: directory, overrides: [:], vocab: nil, file: configPath)
                model = MarianMT(config, arena: arena, rng: Philox(seed: 0))
            default:
                throw ConfigError("\(configPath): model_type \(type ?? "(none)") is not seq2seq or marian: tandem translate needs a checkpoint of a translation run")
            }
            arena.seal()
            let path = (directory as NSString).appendingPathComponent("model.safetensors")
            let file = try SafeTensorsFile(path: path)
            _ = try model.load(shapes: file.tensors.mapValues(\.shape), origin: path) { name, into in try file.copyFloats(name, into: into) }
            source = try Seq2SeqFiles.tokenizer(side: "source", directory: directory)
            target = try Seq2SeqFiles.tokenizer(side: "target", directory: directory)
            for (key, size, vocab) in [("the source vocabulary size", model.sourceVocabularySize, source),
                                       ("the target vocabulary size", model.targetVocabularySize, target)]
            where size < vocab.vocabSize {
                throw ConfigError("\(configPath): \(key) \(size) is smaller than the \(vocab.vocabSize) tokens of the checkpoint's vocabulary")
            }
        }

        /// The source ids the model reads for `line`: its tokens then [SEP] (empty for a line without tokens),
        /// the tokens cut to the model's `maxPositions` (a Transformer's position table) with [SEP] kept.
        public func sourceIDs(_ line: String) -> [Int32] {
            let ids = source.encode(line)
            return ids.isEmpty ? [] : ids.prefix((model.maxPositions ?? Int.max) - 1) + [source.sepID]
        }

        /// The best hypothesis for each line (nil for a line without tokens).
        public func translate(_ lines: [String], options o: Options) -> [Seq2SeqHypothesis?] {
            let sources = lines.map(sourceIDs)
            var result = [Seq2SeqHypothesis?](repeating: nil, count: lines.count)
            let decoder = Seq2SeqDecoder(model: model)
            func limit(_ s: [Int32]) -> Int { o.maxLength ?? Seq2SeqDecoder.defaultMaxLength(sourceLength: s.count) }
            if o.beam > 1 {
                for (i, s) in sources.enumerated() where !s.isEmpty {
                    result[i] = decoder.beamSearch(source: s, width: o.beam, lengthPenalty: o.lengthPenalty, maxLength: limit(s))[0]
                }
                return result
            }
            // Greedy: sentences of similar length decoded together.
            let order = sources.indices.filter { !sources[$0].isEmpty }.sorted { sources[$0].count < sources[$1].count }
            var start = 0
            while start < order.count {
                let group = Array(order[start..<min(order.count, start + o.batch)])
                let batch = group.map { sources[$0] }
                for (i, h) in zip(group, decoder.greedy(sources: batch, maxLength: batch.map(limit).max()!)) { result[i] = h }
                start += o.batch
            }
            return result
        }

        /// The hypothesis as text: special tokens dropped, pieces joined, punctuation rejoined (`Detokenizer`).
        public func text(_ h: Seq2SeqHypothesis?) -> String { h.map { target.detokenizedText($0.tokens) } ?? "" }
    }

    /// Translates every line of `input` to stdout; reports speed on stderr through `log`.
    public static func run(model directory: String, options o: Options, input: FileHandle = .standardInput,
                           log: (String) -> Void) throws {
        guard o.beam >= 1 else { throw ConfigError("--beam must be at least 1, not \(o.beam)") }
        let translator = try Translator(directory: directory)
        let lines = TranslationCommands.lines(String(decoding: input.readDataToEndOfFile(), as: UTF8.self))
        if let svg = o.attentionSVG, !(1...max(lines.count, 1)).contains(o.attentionLine) || lines.isEmpty {
            throw ConfigError("--attention \(svg): --attention-line \(o.attentionLine) is not among the \(lines.count) input lines")
        }
        if o.attentionSVG != nil && !translator.model.reportsAttention {
            throw ConfigError("--attention: the model reports no attention alignment (a seq2seq model with attention none, or a Transformer), so there is nothing to draw")
        }
        let started = Date()
        let hypotheses = translator.translate(lines, options: o)
        let seconds = Date().timeIntervalSince(started)
        var out = ""
        for h in hypotheses { out += translator.text(h) + "\n" }
        FileHandle.standardOutput.write(Data(out.utf8))
        let tokens = hypotheses.reduce(0) { $0 + ($1?.tokens.count ?? 0) }
        log(String(format: "translate: %d lines in %.2f s (%.1f sentences/s, %.0f target tokens/s), %@",
                   lines.count, seconds, Double(lines.count) / max(seconds, 1e-9), Double(tokens) / max(seconds, 1e-9),
                   o.beam > 1 ? "beam \(o.beam), length penalty \(o.lengthPenalty)" : "greedy"))
        if let svg = o.attentionSVG {
            let i = o.attentionLine - 1
            guard let h = hypotheses[i] else { throw ConfigError("--attention: line \(o.attentionLine) has no tokens") }
            let source = translator.sourceIDs(lines[i]).map { translator.source.tokens[Int($0)] }
            let target = h.tokens.map { Int($0) < translator.target.tokens.count ? translator.target.tokens[Int($0)] : "?" }
            let picture = AttentionPlot.svg(source: source, target: target, weights: h.attention,
                                            title: "\(lines[i]) → \(translator.text(h))")
            do { try picture.write(toFile: svg, atomically: true, encoding: .utf8) } catch {
                throw ConfigError("--attention \(svg): cannot write (\(error.localizedDescription))")
            }
            log("translate: attention of line \(o.attentionLine) (\(source.count) source x \(target.count) target tokens) in \(svg)")
        }
    }
}

/// The alignment matrix attention papers show (Bahdanau et al. 2015, figure 3): a row per generated
/// target token, a column per source token, each cell as dark as its attention probability.
public enum AttentionPlot {
    public static func svg(source: [String], target: [String], weights: [Float], title: String) -> String {
        precondition(weights.count == source.count * target.count, "attention plot: \(weights.count) weights for \(target.count) x \(source.count)")
        let cell = 22.0, left = 12 + 7.5 * Double((target.map(\.count).max() ?? 1)), top = 40 + 7.5 * Double((source.map(\.count).max() ?? 1))
        let width = left + cell * Double(source.count) + 20, height = top + cell * Double(target.count) + 20
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="8" y="16" font-size="13">\(escape(title))</text>

        """
        for (j, token) in source.enumerated() {
            let x = left + cell * (Double(j) + 0.5), y = top - 6
            s += "<text transform=\"translate(\(x),\(y)) rotate(-60)\">\(escape(token))</text>\n"
        }
        for (i, token) in target.enumerated() {
            let y = top + cell * (Double(i) + 0.7)
            s += "<text x=\"\(left - 6)\" y=\"\(y)\" text-anchor=\"end\">\(escape(token))</text>\n"
            for j in source.indices {
                let p = Double(max(0, min(1, weights[i * source.count + j])))
                let grey = Int((1 - p) * 255)
                s += "<rect x=\(quote(left + cell * Double(j))) y=\(quote(top + cell * Double(i))) width=\"\(cell)\" height=\"\(cell)\" fill=\"rgb(\(grey),\(grey),\(grey))\" stroke=\"#ddd\" stroke-width=\"0.5\"><title>\(escape(token)) ← \(escape(source[j])): \(String(format: "%.3f", p))</title></rect>\n"
            }
        }
        return s + "</svg>\n"
    }

    private static func quote(_ v: Double) -> String { "\"\(String(format: "%.1f", v))\"" }
}
