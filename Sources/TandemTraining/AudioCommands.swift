import Dispatch
import Foundation
import TandemData

/// `tandem prepare-audio`: audio files (WAV, FLAC, OGG/Vorbis, ... through libsndfile) to audio shards
/// of normalised 16 kHz utterances, with transcripts when given.
public enum AudioCommands {
    /// The transcripts of `paths`, by utterance id (a file's name without its extension). Each line is
    /// either `ID<TAB>TEXT` or CMU Sphinx's `[<s>] TEXT [</s>] (ID)` (pocketsphinx-testdata's
    /// `transcription` files). An empty line is skipped; any other line is an error naming file and line.
    public static func readTranscripts(_ paths: [String]) throws -> [String: String] {
        var texts: [String: String] = [:]
        for path in paths {
            guard let content = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw DataError.io(path: path, reason: "cannot read the transcripts")
            }
            for (n, raw) in content.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
                if line.isEmpty { continue }
                if let tab = line.firstIndex(of: "\t") {
                    texts[String(line[..<tab])] = String(line[line.index(after: tab)...]).trimmingCharacters(in: .whitespaces)
                } else if line.hasSuffix(")"), let open = line.lastIndex(of: "(") {
                    let id = String(line[line.index(after: open)..<line.index(before: line.endIndex)])
                    var words = line[..<open].split(separator: " ").map(String.init)
                    words.removeAll { $0 == "<s>" || $0 == "</s>" }
                    guard !id.isEmpty else { throw DataError.invalidFormat(path: path, reason: "line \(n + 1): empty utterance id") }
                    texts[id] = words.joined(separator: " ")
                } else {
                    throw DataError.invalidFormat(path: path, reason: "line \(n + 1): neither 'ID<TAB>TEXT' nor 'TEXT (ID)'")
                }
            }
        }
        return texts
    }

    /// The audio files of `inputs`: files as given, folders searched recursively for `Audio.extensions`,
    /// each folder's files in name order. A missing input is an error naming it.
    public static func collect(_ inputs: [String]) throws -> [String] {
        var files: [String] = []
        let fm = FileManager.default
        for input in inputs {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: input, isDirectory: &isDirectory) else { throw DataError.io(path: input, reason: "no such file or folder") }
            if !isDirectory.boolValue { files.append(input); continue }
            guard let walker = fm.enumerator(atPath: input) else { throw DataError.io(path: input, reason: "cannot list") }
            var found: [String] = []
            for case let relative as String in walker
            where Audio.extensions.contains((relative as NSString).pathExtension.lowercased()) {
                found.append((input as NSString).appendingPathComponent(relative))
            }
            files += found.sorted()
        }
        return files
    }

    /// Decodes, resamples to 16 kHz, normalises and writes every readable file of `inputs` into `out`,
    /// `threads` files at a time, in input order. Unreadable files (and, with transcripts, files without
    /// one) are reported on stderr by path, listed in the manifest and skipped. Returns the manifest.
    @discardableResult
    public static func prepare(inputs: [String], out: String, transcripts transcriptFiles: [String], shardSeconds: Double,
                               threads: Int?, log: (String) -> Void = { print($0) }) throws -> AudioShardManifest {
        guard shardSeconds > 0 else { throw DataError.invalidArgument("prepare-audio: --shard-seconds must be positive") }
        let texts = try readTranscripts(transcriptFiles)
        let files = try collect(inputs)
        guard !files.isEmpty else { throw DataError.invalidArgument("prepare-audio: no audio files in \(inputs.joined(separator: ", "))") }
        let threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let writer = try AudioShardWriter(directory: out, shardSamples: Int(shardSeconds * Double(Audio.sampleRate)),
                                          withTranscripts: !transcriptFiles.isEmpty)
        let sizes = files.map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }
        let totalBytes = sizes.reduce(0, +)
        let progress = PreparationProgress(label: "prepare-audio", unit: "files")
        let start = monotonicSeconds()
        var skipped: [AudioShardManifest.Skipped] = []
        var bytes = 0, audioSamples = 0
        let stderr = FileHandle.standardError
        // A window of files decoded in parallel, then written in order.
        let window = 8 * threads
        var next = 0
        while next < files.count {
            let chunk = Array(files[next..<min(files.count, next + window)])
            var results = [Result<[Float], DataError>](repeating: .success([]), count: chunk.count)
            results.withUnsafeMutableBufferPointer { slots in
                let base = slots.baseAddress!
                DispatchQueue.concurrentPerform(iterations: min(threads, chunk.count)) { worker in
                    var i = worker
                    while i < chunk.count {
                        do {
                            let (raw, rate) = try Audio.read(chunk[i])
                            var samples = try Audio.resample(raw, from: rate)
                            Audio.normalize(&samples)
                            (base + i).pointee = .success(samples)
                        } catch let error as DataError {
                            (base + i).pointee = .failure(error)
                        } catch {
                            (base + i).pointee = .failure(.invalidFormat(path: chunk[i], reason: "\(error)"))
                        }
                        i += min(threads, chunk.count)
                    }
                }
            }
            for (k, result) in results.enumerated() {
                let path = chunk[k]
                let id = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
                bytes += sizes[next + k]
                switch result {
                case .failure(let error):
                    skipped.append(.init(path: path, reason: reason(of: error)))
                    progress.abandon()
                    stderr.write(Data("prepare-audio: skipped \(error)\n".utf8))
                case .success(let samples):
                    var transcript: String? = nil
                    if !transcriptFiles.isEmpty {
                        guard let text = texts[id] else {
                            skipped.append(.init(path: path, reason: "no transcript for utterance id \(id)"))
                            progress.abandon()
                            stderr.write(Data("prepare-audio: skipped \(path): no transcript for utterance id \(id) in \(transcriptFiles.joined(separator: ", "))\n".utf8))
                            continue
                        }
                        transcript = text
                    }
                    try writer.append(samples, transcript: transcript, id: id, source: path)
                    audioSamples += samples.count
                }
            }
            next += chunk.count
            progress.update(items: next, bytes: bytes, totalItems: files.count, totalBytes: totalBytes)
        }
        progress.finish(items: files.count, bytes: bytes, totalItems: files.count, totalBytes: totalBytes)
        let manifest = try writer.finish(skipped: skipped, resampler: "libsamplerate SRC_SINC_MEDIUM_QUALITY")
        let seconds = monotonicSeconds() - start
        let audioSeconds = Double(audioSamples) / Double(Audio.sampleRate)
        log("prepare-audio: \(manifest.utterances) utterances, \(String(format: "%.2f", audioSeconds / 3600)) h of 16 kHz audio "
            + "in \(manifest.shards.count) shard(s)\(manifest.transcripts ? " with transcripts" : ""), \(skipped.count) skipped, "
            + "written to \(out)")
        log(String(format: "prepare-audio: %.1f MB read in %.1f s with %d thread(s): %.1f MB/s, %.0f s of audio per second per core",
                   Double(bytes) / 1e6, seconds, threads, Double(bytes) / 1e6 / seconds,
                   audioSeconds / seconds / Double(min(threads, ProcessInfo.processInfo.activeProcessorCount))))
        return manifest
    }

    /// A skipped file's reason without its path (the manifest lists the path beside it).
    static func reason(of error: DataError) -> String {
        switch error {
        case let .io(_, reason), let .invalidFormat(_, reason): reason
        case let .invalidArgument(reason): reason
        case .vocabMismatch: "\(error)"
        }
    }
}
