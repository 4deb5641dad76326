import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels
import TandemTraining

/// `tandem transcribe`: speech to text with a `Wav2Vec2ForCTC` checkpoint (Tandem's or transformers'),
/// greedy CTC decoding over the checkpoint's character vocabulary (vocab.json).
public enum Transcription {
    /// A loaded CTC model with its vocabulary.
    public final class Transcriber {
        public let model: Wav2Vec2
        public let arena: ParameterArena
        public let vocabulary: CharacterVocabulary
        private var tape: Tape?
        private var graph: Wav2Vec2.Graph?

        /// Loads `directory` (config.json, model.safetensors, vocab.json) through the family's loader
        /// (`Wav2Vec2Family.loadPretrained`: the CTC head's tensors must all be there); errors name the file.
        public init(directory: String) throws {
            let (configPath, type) = try ModelFields.checkpointModelType(directory: directory)
            guard type == "wav2vec2" else {
                throw ConfigError("\(configPath): model_type \(type ?? "none") is not wav2vec2 (tandem transcribe needs a Wav2Vec2ForCTC checkpoint)")
            }
            (model, arena) = try Wav2Vec2Family.loadPretrained(directory: directory, log: { _ in })
            let config = model.config
            guard config.head == .ctc else {
                throw ConfigError("\(configPath): a \(config.head.rawValue) checkpoint has no CTC head; fine-tune it with train.objective: ctc first")
            }
            let vocabPath = (directory as NSString).appendingPathComponent("vocab.json")
            do { vocabulary = try CharacterVocabulary(path: vocabPath) } catch { throw ConfigError("\(vocabPath): \(error)") }
            guard vocabulary.count == config.vocabSize else {
                throw ConfigError("\(vocabPath): \(vocabulary.count) tokens, but the model's vocab_size is \(config.vocabSize)")
            }
        }

        /// The greedy transcript of normalised 16 kHz `samples`, and the per-frame ids it collapsed.
        public func transcribe(_ samples: [Float]) -> (text: String, frames: [Int32]) {
            let c = model.config
            let S = max(samples.count, c.receptiveField)
            if graph?.samples != S {
                let t = Tape()
                t.training = false
                t.recordsGradients = false
                graph = model.record(on: t, batch: 1, samples: S)
                tape = t
            }
            guard let tape, let g = graph, let logits = g.logits else { return ("", []) }
            g.inputValues.data.update(repeating: 0, count: S)
            samples.withUnsafeBufferPointer { g.inputValues.data.update(from: $0.baseAddress!, count: samples.count) }
            g.setLengths([S], config: c)
            tape.forward()
            let V = c.vocabSize
            let ids = (0..<g.frames).map { t -> Int32 in
                let row = logits.data + t * V
                var best = 0
                for v in 1..<V where row[v] > row[best] { best = v }
                return Int32(best)
            }
            return (vocabulary.decodeCTC(ids), ids)
        }
    }

    /// Transcribes every file (WAV, FLAC, OGG, ... through libsndfile, resampled to 16 kHz and normalised as
    /// `Wav2Vec2FeatureExtractor` does), printing "FILE<TAB>transcript" per file; `references` ("ID<TAB>text" or
    /// "text (ID)" lines as prepare-audio reads them) add the character error rate per file and overall.
    /// An unreadable file is an error naming it. Returns the overall character error rate when references
    /// were given.
    @discardableResult
    public static func run(model: String, files: [String], references: [String] = [], output: (String) -> Void = { print($0) },
                           log: (String) -> Void) throws -> Double? {
        let transcriber = try Transcriber(directory: model)
        let texts = try AudioCommands.readTranscripts(references)
        var errors = 0, characters = 0
        let start = monotonicSeconds()
        var audioSeconds = 0.0
        for path in files {
            let (raw, rate) = try Audio.read(path)
            var samples = try Audio.resample(raw, from: rate)
            Audio.normalize(&samples)
            audioSeconds += Double(samples.count) / Double(Audio.sampleRate)
            let text = transcriber.transcribe(samples).text
            let id = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            if let reference = texts[id] {
                let normalised = reference.lowercased()
                let e = CharacterVocabulary.editDistance(text, normalised)
                errors += e
                characters += normalised.count
                output("\(path)\t\(text)\tCER \(String(format: "%.3f", Double(e) / Double(max(1, normalised.count))))")
            } else {
                output("\(path)\t\(text)")
            }
        }
        let seconds = monotonicSeconds() - start
        log("transcribe: \(files.count) file(s), \(String(format: "%.1f", audioSeconds)) s of audio in \(String(format: "%.2f", seconds)) s (\(String(format: "%.1f", audioSeconds / max(seconds, 1e-9)))x real time)")
        guard characters > 0 else { return nil }
        let cer = Double(errors) / Double(characters)
        log("transcribe: character error rate \(String(format: "%.4f", cer)) over \(characters) reference characters")
        return cer
    }
}
