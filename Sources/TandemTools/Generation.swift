import Foundation
import TandemCheckpoint
import TandemData
import TandemModels
import TandemTraining

/// `tandem generate`: a GPT-2 checkpoint (config.json, model.safetensors and the tokenizer the run was
/// trained with, as `tandem train` writes them, or a transformers GPT-2 directory) continuing a prompt with
/// a key/value cache (`GPTGenerator`), greedy or sampled (`SamplingOptions`).
public enum Generation {
    public struct Options {
        public var maxNewTokens = 100
        public var sampling = SamplingOptions()
        /// Stop at the end-of-text token.
        public var stopAtEndOfText = true
        /// Also log the prompt's and the new tokens' ids.
        public var showIDs = false
        public init() {}
    }

    /// What a run produced, for callers and tests.
    public struct Result {
        public var promptTokens: [Int32]
        public var newTokens: [Int32]
        public var text: String
        public var prefillSeconds: Double
        public var decodeSeconds: Double
        /// New tokens per second after the prefill (the first comes from the prompt's logits, each later one
        /// from a one-position step).
        public var tokensPerSecond: Double { decodeSeconds > 0 ? Double(newTokens.count) / decodeSeconds : 0 }
        /// New tokens per second of the whole call, prefill included (what timing transformers' `generate` gives).
        public var overallTokensPerSecond: Double { Double(newTokens.count) / max(prefillSeconds + decodeSeconds, 1e-9) }
    }

    /// Turns text into the model's token ids and back.
    public enum Codec {
        /// A byte-level model (vocabulary 256): tokens are the UTF-8 bytes.
        case bytes
        /// A WordPiece vocab.txt saved with the checkpoint.
        case wordPiece(WordPieceTokenizer)
        /// A byte-level BPE tokenizer.json (GPT-2's) saved with the checkpoint.
        case bpe(ByteLevelBPETokenizer)

        func encode(_ text: String) -> [Int32] {
            switch self {
            case .bytes: return text.utf8.map { Int32($0) }
            case .wordPiece(let t): return t.encode(text)
            case .bpe(let t): return t.encode(text)
            }
        }

        func decode(_ ids: [Int32]) -> String {
            switch self {
            case .bytes: return String(decoding: ids.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self)
            case .wordPiece(let t): return t.detokenizedText(ids)
            case .bpe(let t): return t.decode(ids)
            }
        }
    }

    /// A loaded model with its tokenizer.
    public struct Generator {
        public let model: GPT
        public let arena: ParameterArena
        public let codec: Codec

        /// Loads `directory`; errors name the file.
        public init(directory: String) throws {
            let (configPath, type) = try ModelFields.checkpointModelType(directory: directory)
            guard let type, GPTFamily.modelTypes.contains(type) else {
                throw ConfigError("\(configPath): model_type \(type ?? "(none)") is not gpt2: tandem generate needs a GPT-2 checkpoint")
            }
            let config = try GPTFamily.config(preset: nil, initFrom: directory, overrides: [:], file: configPath)
            arena = ParameterArena()
            model = GPT(config, arena: arena, rng: Philox(seed: 0))
            arena.seal()
            let path = (directory as NSString).appendingPathComponent("model.safetensors")
            let file = try SafeTensorsFile(path: path)
            try model.load(shapes: file.tensors.mapValues(\.shape), origin: path) { try file.copyFloats($0, into: $1) }
            let vocab = (directory as NSString).appendingPathComponent("vocab.txt")
            let json = (directory as NSString).appendingPathComponent("tokenizer.json")
            if FileManager.default.fileExists(atPath: json) {
                let tokenizer: ByteLevelBPETokenizer
                do { tokenizer = try ByteLevelBPETokenizer(tokenizerJSON: json) } catch { throw ConfigError("\(error)") }
                guard tokenizer.vocabSize <= config.vocabSize else {
                    throw ConfigError("\(json): \(tokenizer.vocabSize) tokens, more than the model's vocab_size \(config.vocabSize)")
                }
                codec = .bpe(tokenizer)
            } else if FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("merges.txt")) {
                // A transformers GPT-2 directory with the slow tokenizer's files only.
                let tokenizer: ByteLevelBPETokenizer
                do {
                    tokenizer = try ByteLevelBPETokenizer(vocabJSON: (directory as NSString).appendingPathComponent("vocab.json"),
                                                          mergesTXT: (directory as NSString).appendingPathComponent("merges.txt"))
                } catch { throw ConfigError("\(error)") }
                codec = .bpe(tokenizer)
            } else if FileManager.default.fileExists(atPath: vocab) {
                let tokenizer = try WordPieceTokenizer(path: vocab, cased: false)
                guard tokenizer.vocabSize <= config.vocabSize else {
                    throw ConfigError("\(vocab): \(tokenizer.vocabSize) tokens, more than the model's vocab_size \(config.vocabSize)")
                }
                codec = .wordPiece(tokenizer)
            } else if config.vocabSize == 256 {
                codec = .bytes
            } else {
                throw ConfigError("\(directory): no tokenizer (tokenizer.json, vocab.json + merges.txt, or vocab.txt) beside the model, and vocab_size \(config.vocabSize) is not a byte-level model's 256")
            }
        }

        /// Continues `prompt`: errors when it has no token or fills the context already.
        public func generate(prompt: String, options o: Options) throws -> Result {
            let ids = codec.encode(prompt)
            let context = model.config.nPositions
            guard !ids.isEmpty else { throw ConfigError("--prompt has no tokens") }
            guard ids.count < context else {
                throw ConfigError("--prompt is \(ids.count) tokens, but the model's context (n_positions) is \(context): shorten it below \(context)")
            }
            let total = min(context, ids.count + o.maxNewTokens)
            let cache = GPTGenerator(model: model, capacity: total)
            let eos = Int32(model.config.eosTokenID)
            var started = Date()
            var logits = cache.append(ids)
            let prefill = Date().timeIntervalSince(started)
            started = Date()
            var out: [Int32] = []
            while ids.count + out.count < total {
                let next = o.sampling.pick(logits, step: out.count)
                out.append(next)
                if o.stopAtEndOfText && next == eos && codecHasEndOfText { break }
                if ids.count + out.count == total { break }
                logits = cache.append([next])
            }
            let decode = Date().timeIntervalSince(started)
            return Result(promptTokens: ids, newTokens: out, text: codec.decode(ids + out), prefillSeconds: prefill, decodeSeconds: decode)
        }

        /// Whether the vocabulary has an end-of-text token (a byte-level model's id 0 is a NUL byte).
        private var codecHasEndOfText: Bool {
            if case .bytes = codec { return false }
            return true
        }
    }

    /// `tandem generate`: prints the prompt and its continuation on stdout, the figures through `log`.
    public static func run(model directory: String, prompt: String, options o: Options, log: (String) -> Void) throws {
        guard o.maxNewTokens >= 1 else { throw ConfigError("--max-new-tokens must be at least 1, not \(o.maxNewTokens)") }
        guard o.sampling.temperature >= 0 else { throw ConfigError("--temperature must be 0 (greedy) or positive, not \(o.sampling.temperature)") }
        guard o.sampling.topK >= 0 else { throw ConfigError("--top-k must be 0 (off) or positive, not \(o.sampling.topK)") }
        guard o.sampling.topP > 0 && o.sampling.topP <= 1 else { throw ConfigError("--top-p must be in (0, 1], not \(o.sampling.topP)") }
        let generator = try Generator(directory: directory)
        let r = try generator.generate(prompt: prompt, options: o)
        FileHandle.standardOutput.write(Data((r.text + "\n").utf8))
        if o.showIDs {
            log("prompt ids: " + r.promptTokens.map(String.init).joined(separator: " "))
            log("new ids: " + r.newTokens.map(String.init).joined(separator: " "))
        }
        let context = generator.model.config.nPositions
        if r.promptTokens.count + r.newTokens.count == context && r.newTokens.count < o.maxNewTokens {
            log("generate: stopped at the model's context of \(context) tokens")
        }
        log(String(format: "generate: prompt %d tokens (prefill %.1f ms), %d new tokens in %.3f s: %.1f tokens/s, %.1f with the prefill (%@)",
                   r.promptTokens.count, r.prefillSeconds * 1000, r.newTokens.count, r.decodeSeconds, r.tokensPerSecond,
                   r.overallTokensPerSecond,
                   o.sampling.temperature == 0 ? "greedy" : String(format: "temperature %.2f, top-k %d, top-p %.2f, seed %llu",
                                                                   o.sampling.temperature, o.sampling.topK, o.sampling.topP, o.sampling.seed)))
    }
}
