import CAudio
import Foundation

/// Speech audio as wav2vec 2.0 reads it: mono, 16 kHz, each utterance normalised to zero mean and unit
/// variance as `Wav2Vec2FeatureExtractor(do_normalize=True)` does.
public enum Audio {
    /// The sampling rate wav2vec 2.0 is trained at.
    public static let sampleRate = 16_000

    /// The file extensions `prepare-audio` collects from a folder (libsndfile reads them).
    public static let extensions: Set<String> = ["wav", "flac", "ogg", "oga", "opus", "aiff", "aif", "au", "mp3"]

    /// Decodes `path` with libsndfile into mono Float samples (channels averaged) and its sampling rate.
    /// Throws `DataError` naming the file for anything not decodable: not audio, a sampling rate or
    /// channel count of 0, no frames, or fewer frames than its header promises (a truncated file).
    public static func read(_ path: String) throws -> (samples: [Float], sampleRate: Int) {
        var info = SF_INFO()
        guard let file = sf_open(path, Int32(SFM_READ), &info) else {
            let reason = String(cString: sf_strerror(nil))
            // libsndfile refuses a WAV header with a sampling rate of 0 as an "incomplete SF_INFO": say so.
            if let rate = wavHeaderRate(path), rate == 0 {
                throw DataError.invalidFormat(path: path, reason: "sample rate 0 in its WAV header")
            }
            throw DataError.invalidFormat(path: path, reason: "not readable as audio (libsndfile: \(reason))")
        }
        defer { sf_close(file) }
        // libsndfile reads a WAV or AIFF whose data chunk is shorter than its header says, logging
        // "data : 32000 (should be 8000)": a truncated copy, which would silently lose its end.
        var log = [CChar](repeating: 0, count: 8192)
        _ = sf_command(file, Int32(SFC_GET_LOG_INFO), &log, Int32(log.count))
        for line in String(cString: log).split(separator: "\n")
        where (line.hasPrefix("data ") || line.hasPrefix("SSND ")) && line.contains("(should be ") {
            let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            if numbers.count == 2 && numbers[1] < numbers[0] {
                throw DataError.invalidFormat(path: path, reason: "truncated: its header announces \(numbers[0]) bytes of audio, the file holds \(numbers[1])")
            }
        }
        guard info.samplerate > 0 else {
            throw DataError.invalidFormat(path: path, reason: "sample rate \(info.samplerate) in its header")
        }
        guard info.channels > 0 else { throw DataError.invalidFormat(path: path, reason: "\(info.channels) channels") }
        let channels = Int(info.channels)
        var interleaved = [Float]()
        let chunk = 65_536
        var buffer = [Float](repeating: 0, count: chunk * channels)
        var frames = 0
        while true {
            let n = buffer.withUnsafeMutableBufferPointer { sf_readf_float(file, $0.baseAddress, sf_count_t(chunk)) }
            if n <= 0 { break }
            interleaved.append(contentsOf: buffer[0..<(Int(n) * channels)])
            frames += Int(n)
        }
        let error = sf_error(file)
        if error != 0 {
            throw DataError.invalidFormat(path: path, reason: "decoding failed after \(frames) frames (libsndfile: \(String(cString: sf_error_number(error))))")
        }
        // libsndfile's frame count comes from the header for uncompressed formats: fewer frames read
        // means the data ends early (a truncated copy).
        if info.frames > 0 && info.frames != Int64.max && frames < Int(info.frames) {
            throw DataError.invalidFormat(path: path, reason: "truncated: \(frames) of the \(info.frames) frames its header announces")
        }
        guard frames > 0 else { throw DataError.invalidFormat(path: path, reason: "no audio frames") }
        if channels == 1 { return (interleaved, Int(info.samplerate)) }
        var mono = [Float](repeating: 0, count: frames)
        let scale = 1 / Float(channels)
        for f in 0..<frames {
            var s: Float = 0
            for c in 0..<channels { s += interleaved[f * channels + c] }
            mono[f] = s * scale
        }
        return (mono, Int(info.samplerate))
    }

    /// The sampling rate in a RIFF/WAVE file's `fmt ` chunk, or nil when `path` is not such a file.
    static func wavHeaderRate(_ path: String) -> Int? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let head = [UInt8](handle.readData(ofLength: 4096))
        guard head.count >= 12, head[0..<4].elementsEqual("RIFF".utf8), head[8..<12].elementsEqual("WAVE".utf8) else { return nil }
        func u32(_ at: Int) -> Int { Int(head[at]) | Int(head[at + 1]) << 8 | Int(head[at + 2]) << 16 | Int(head[at + 3]) << 24 }
        var at = 12
        while at + 8 <= head.count {
            let size = u32(at + 4)
            if head[at..<(at + 4)].elementsEqual("fmt ".utf8) { return at + 12 <= head.count ? u32(at + 12) : nil }
            at += 8 + size + (size & 1)
        }
        return nil
    }

    /// `samples` at `rate` resampled to `target` Hz with libsamplerate's band-limited sinc converter
    /// (`SRC_SINC_MEDIUM_QUALITY`: 121 dB of stop-band attenuation, passband to 90% of Nyquist); the
    /// samples themselves when the rates agree. The output has round(count x target / rate) samples.
    public static func resample(_ samples: [Float], from rate: Int, to target: Int = sampleRate) throws -> [Float] {
        guard rate != target else { return samples }
        guard rate > 0, target > 0 else { throw DataError.invalidArgument("resample: rates must be positive (\(rate) -> \(target))") }
        let ratio = Double(target) / Double(rate)
        let expected = Int((Double(samples.count) * ratio).rounded())
        var output = [Float](repeating: 0, count: expected + 64)
        var used = 0
        let rc = samples.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out -> Int32 in
                var data = SRC_DATA()
                data.data_in = input.baseAddress
                data.input_frames = Int(input.count)
                data.data_out = out.baseAddress
                data.output_frames = Int(out.count)
                data.src_ratio = ratio
                data.end_of_input = 1
                let rc = src_simple(&data, Int32(SRC_SINC_MEDIUM_QUALITY), 1)
                used = Int(data.output_frames_gen)
                return rc
            }
        }
        guard rc == 0 else {
            throw DataError.invalidArgument("resample \(rate) -> \(target) Hz: \(String(cString: src_strerror(rc)))")
        }
        output.removeSubrange(min(used, expected)...)
        // libsamplerate may give a frame or two fewer than the exact count at the end: pad with the last.
        while output.count < expected { output.append(output.last ?? 0) }
        return output
    }

    /// In place: (x - mean) / sqrt(variance + 1e-7) over the utterance, as
    /// `Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm` (population variance; the sums in Double).
    public static func normalize(_ samples: inout [Float]) {
        guard !samples.isEmpty else { return }
        var sum = 0.0
        for x in samples { sum += Double(x) }
        let mean = sum / Double(samples.count)
        var squares = 0.0
        for x in samples { let d = Double(x) - mean; squares += d * d }
        let variance = squares / Double(samples.count)
        let scale = 1 / (variance + 1e-7).squareRoot()
        for i in samples.indices { samples[i] = Float((Double(samples[i]) - mean) * scale) }
    }
}
