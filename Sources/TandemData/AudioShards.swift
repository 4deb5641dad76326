import Foundation

/// The `manifest.json` of an audio shard directory (`tandem prepare-audio`).
public struct AudioShardManifest: Codable, Equatable, Sendable {
    public struct Shard: Codable, Equatable, Sendable {
        /// `NAME.bin` (Float32 little-endian samples), `NAME.idx` (offsets) and, with transcripts, `NAME.txt`.
        public var name: String
        public var utterances: Int
        public var samples: Int
        public var sha256: [String: String]
    }
    /// A file left out, and why.
    public struct Skipped: Codable, Equatable, Sendable {
        public var path: String
        public var reason: String
        public init(path: String, reason: String) { self.path = path; self.reason = reason }
    }
    public var format = AudioShardManifest.formatName
    public var version = 1
    public var sampleRate: Int
    /// Each utterance was normalised to zero mean and unit variance (`Audio.normalize`).
    public var normalized: Bool
    public var resampler: String
    public var utterances: Int
    public var seconds: Double
    public var transcripts: Bool
    public var shards: [Shard]
    public var skipped: [Skipped]

    public static let formatName = "tandem-audio-shards"

    enum CodingKeys: String, CodingKey {
        case format, version, normalized, resampler, utterances, seconds, transcripts, shards, skipped
        case sampleRate = "sample_rate"
    }
}

/// The layout of `NAME.idx`: the magic, the version, the sampling rate, the utterance count n, then
/// n + 1 offsets (in samples, little-endian UInt64) into `NAME.bin`.
enum AudioIndexFormat {
    static let magic: [UInt8] = Array("TNDAUDIO".utf8)
    static let version: UInt32 = 1
    static let headerBytes = 8 + 4 + 4 + 8
}

/// Writes utterances into shards of at most `shardSamples` samples (an utterance never spans two), with
/// their transcripts when given, and the manifest at the end. Files are written under temporary names
/// and renamed when complete, the manifest last.
public final class AudioShardWriter {
    public let directory: String
    let shardSamples: Int
    let withTranscripts: Bool
    private var shards: [AudioShardManifest.Shard] = []
    private var bin: FileHandle?
    private var binPath = ""
    private var offsets: [UInt64] = [0]
    private var texts: [String] = []
    private var totalSamples = 0
    private var utteranceCount = 0
    private var index: [String] = []

    /// `withTranscripts`: every utterance comes with one (they go to `NAME.txt`, one per line).
    public init(directory: String, shardSamples: Int = 3600 * Audio.sampleRate, withTranscripts: Bool) throws {
        guard shardSamples > 0 else { throw DataError.invalidArgument("prepare-audio: the shard size must be positive") }
        self.directory = directory
        self.shardSamples = shardSamples
        self.withTranscripts = withTranscripts
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw DataError.io(path: directory, reason: "cannot create: \(error.localizedDescription)")
        }
    }

    private func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// Appends one normalised 16 kHz utterance; `id` and `source` go to `utterances.tsv`.
    public func append(_ samples: [Float], transcript: String?, id: String, source: String) throws {
        precondition(withTranscripts == (transcript != nil), "every utterance needs a transcript, or none")
        if bin != nil && Int(offsets.last!) + samples.count > shardSamples { try closeShard() }
        if bin == nil { try openShard() }
        let data = samples.withUnsafeBufferPointer { Data(buffer: $0) }   // little-endian on every platform we build for
        do { try bin!.write(contentsOf: data) } catch { throw DataError.io(path: binPath, reason: "cannot write: \(error.localizedDescription)") }
        offsets.append(offsets.last! + UInt64(samples.count))
        if let transcript { texts.append(Self.oneLine(transcript)) }
        index.append([shards.count.description, String(offsets.count - 2), id, source,
                      String(format: "%.3f", Double(samples.count) / Double(Audio.sampleRate))].joined(separator: "\t"))
        totalSamples += samples.count
        utteranceCount += 1
    }

    /// A transcript on one line: whitespace runs (newlines included) become one space, ends trimmed.
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    private var shardName: String { String(format: "audio-%05d", shards.count) }

    private func openShard() throws {
        binPath = path(shardName + ".bin.tmp")
        guard FileManager.default.createFile(atPath: binPath, contents: nil), let handle = FileHandle(forWritingAtPath: binPath) else {
            throw DataError.io(path: binPath, reason: "cannot create")
        }
        bin = handle
        offsets = [0]
        texts = []
    }

    private func closeShard() throws {
        guard let handle = bin else { return }
        try? handle.close()
        bin = nil
        let name = shardName
        var idx = Data(AudioIndexFormat.magic)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { idx.append(contentsOf: $0) } }
        put(AudioIndexFormat.version)
        put(UInt32(Audio.sampleRate))
        put(UInt64(offsets.count - 1))
        for o in offsets { put(o) }
        try write(idx, to: name + ".idx")
        if withTranscripts { try write(Data((texts.joined(separator: "\n") + "\n").utf8), to: name + ".txt") }
        try rename(name + ".bin.tmp", to: name + ".bin")
        var sums: [String: String] = [:]
        for ext in withTranscripts ? ["bin", "idx", "txt"] : ["bin", "idx"] {
            sums[ext] = try sha256(ofFile: path("\(name).\(ext)"))
        }
        shards.append(.init(name: name, utterances: offsets.count - 1, samples: Int(offsets.last!), sha256: sums))
    }

    private func write(_ data: Data, to name: String) throws {
        do { try data.write(to: URL(fileURLWithPath: path(name)), options: .atomic) } catch {
            throw DataError.io(path: path(name), reason: "cannot write: \(error.localizedDescription)")
        }
    }

    private func rename(_ from: String, to: String) throws {
        if FileManager.default.fileExists(atPath: path(to)) { try? FileManager.default.removeItem(atPath: path(to)) }
        do { try FileManager.default.moveItem(atPath: path(from), toPath: path(to)) } catch {
            throw DataError.io(path: path(to), reason: "cannot rename: \(error.localizedDescription)")
        }
    }

    /// Closes the last shard and writes `utterances.tsv` and the manifest; returns the manifest.
    @discardableResult
    public func finish(skipped: [AudioShardManifest.Skipped], resampler: String) throws -> AudioShardManifest {
        try closeShard()
        guard utteranceCount > 0 else {
            throw DataError.invalidArgument("prepare-audio: no readable audio among the inputs (\(skipped.count) skipped)")
        }
        try write(Data((["shard\tindex\tid\tsource\tseconds"] + index).joined(separator: "\n").utf8 + Data("\n".utf8)),
                  to: "utterances.tsv")
        let manifest = AudioShardManifest(sampleRate: Audio.sampleRate, normalized: true, resampler: resampler,
                                          utterances: utteranceCount, seconds: Double(totalSamples) / Double(Audio.sampleRate),
                                          transcripts: withTranscripts, shards: shards, skipped: skipped)
        try ManifestFile.write(manifest, directory: directory)
        return manifest
    }
}

/// The utterances of an audio shard directory, numbered across shards in manifest order, read through
/// memory maps. Opening checks the manifest, each index's header and that every `.bin` holds the samples
/// its index promises (a truncated shard is an error naming it); `verifyChecksums` checks the SHA-256s.
public final class AudioShards {
    public let directory: String
    public let manifest: AudioShardManifest
    private let bins: [MappedFile]
    /// Per shard: the n + 1 sample offsets.
    private let offsets: [[Int]]
    private let transcripts: [[String]]
    /// `first[s]`: the global index of shard s's first utterance; the last entry is the total.
    private let first: [Int]

    public init(directory: String) throws {
        self.directory = directory
        let (data, manifestPath) = try ManifestFile.contents(directory: directory, missing: "no audio shard manifest (run tandem prepare-audio)")
        let manifest: AudioShardManifest
        do { manifest = try JSONDecoder().decode(AudioShardManifest.self, from: data) } catch {
            throw DataError.invalidFormat(path: manifestPath, reason: "not an audio shard manifest (\(error))")
        }
        guard manifest.format == AudioShardManifest.formatName, manifest.version == 1 else {
            throw DataError.invalidFormat(path: manifestPath, reason: "format \(manifest.format) version \(manifest.version), expected \(AudioShardManifest.formatName) version 1")
        }
        self.manifest = manifest
        var bins: [MappedFile] = [], offsets: [[Int]] = [], transcripts: [[String]] = [], first = [0]
        for shard in manifest.shards {
            let base = (directory as NSString).appendingPathComponent(shard.name)
            let idx = try MappedFile(path: base + ".idx")
            guard idx.size >= AudioIndexFormat.headerBytes,
                  Array(UnsafeRawBufferPointer(start: idx.base, count: 8)) == AudioIndexFormat.magic else {
                throw DataError.invalidFormat(path: base + ".idx", reason: "not an audio shard index (bad magic or too short)")
            }
            guard idx.u32(at: 8) == AudioIndexFormat.version, Int(idx.u32(at: 12)) == manifest.sampleRate else {
                throw DataError.invalidFormat(path: base + ".idx", reason: "version \(idx.u32(at: 8)) at \(idx.u32(at: 12)) Hz, expected version 1 at \(manifest.sampleRate) Hz")
            }
            let n = Int(idx.u64(at: 16))
            guard n == shard.utterances, idx.size == AudioIndexFormat.headerBytes + 8 * (n + 1) else {
                throw DataError.invalidFormat(path: base + ".idx", reason: "\(idx.size) bytes for \(n) utterances; the manifest lists \(shard.utterances) (truncated or from another run)")
            }
            let o = (0...n).map { Int(idx.u64(at: AudioIndexFormat.headerBytes + 8 * $0)) }
            let bin = try MappedFile(path: base + ".bin")
            guard bin.size == 4 * o[n], o[n] == shard.samples else {
                throw DataError.invalidFormat(path: base + ".bin", reason: "\(bin.size) bytes, its index needs \(4 * o[n]) (\(o[n]) samples): truncated")
            }
            if manifest.transcripts {
                let path = base + ".txt"
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw DataError.io(path: path, reason: "cannot read the transcripts")
                }
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
                guard lines.count == n else {
                    throw DataError.invalidFormat(path: path, reason: "\(lines.count) transcripts for \(n) utterances")
                }
                transcripts.append(lines)
            } else { transcripts.append([]) }
            bins.append(bin); offsets.append(o); first.append(first.last! + n)
        }
        self.bins = bins; self.offsets = offsets; self.transcripts = transcripts; self.first = first
    }

    /// The number of utterances.
    public var count: Int { first.last! }

    private func locate(_ i: Int) -> (shard: Int, index: Int) {
        precondition(i >= 0 && i < count, "utterance \(i) out of 0..<\(count)")
        var lo = 0, hi = first.count - 1   // first[lo] <= i < first[hi]
        while hi - lo > 1 { let mid = (lo + hi) / 2; if first[mid] <= i { lo = mid } else { hi = mid } }
        return (lo, i - first[lo])
    }

    /// Utterance i's length in samples.
    public func length(_ i: Int) -> Int {
        let (s, j) = locate(i)
        return offsets[s][j + 1] - offsets[s][j]
    }

    /// Utterance i's normalised samples: a view into the memory map.
    public func samples(_ i: Int) -> UnsafeBufferPointer<Float> {
        let (s, j) = locate(i)
        let start = bins[s].base.advanced(by: 4 * offsets[s][j]).assumingMemoryBound(to: Float.self)
        return UnsafeBufferPointer(start: start, count: offsets[s][j + 1] - offsets[s][j])
    }

    /// Utterance i's transcript (nil when the shards have none).
    public func transcript(_ i: Int) -> String? {
        guard manifest.transcripts else { return nil }
        let (s, j) = locate(i)
        return transcripts[s][j]
    }

    /// Recomputes every shard file's SHA-256 against the manifest; throws naming the first that differs.
    public func verifyChecksums() throws {
        for shard in manifest.shards {
            for (ext, expected) in shard.sha256.sorted(by: { $0.key < $1.key }) {
                let path = (directory as NSString).appendingPathComponent("\(shard.name).\(ext)")
                let found = try sha256(ofFile: path)
                guard found == expected else {
                    throw DataError.invalidFormat(path: path, reason: "SHA-256 \(found) differs from the manifest's \(expected)")
                }
            }
        }
    }

    /// A padded batch as `Wav2Vec2FeatureExtractor(padding="longest", return_attention_mask=True)` gives it:
    /// `values` (B, T) with zeros after each utterance, `mask` (B, T) 1 on samples and 0 on padding, T the
    /// longest length in the batch, each utterance first cut to `maxSamples` when given.
    public func batch(_ indices: [Int], maxSamples: Int? = nil) -> (values: [Float], mask: [Int32], length: Int) {
        let lengths = indices.map { min(length($0), maxSamples ?? .max) }
        let t = lengths.max() ?? 0
        var values = [Float](repeating: 0, count: indices.count * t)
        var mask = [Int32](repeating: 0, count: indices.count * t)
        for (b, i) in indices.enumerated() {
            let s = samples(i)
            for k in 0..<lengths[b] { values[b * t + k] = s[k]; mask[b * t + k] = 1 }
        }
        return (values, mask, t)
    }

    /// An epoch's order that groups utterances of similar length into batches, as transformers'
    /// `LengthGroupedSampler`: a seeded random permutation, cut into mega-batches of 50 batches, each
    /// sorted by length, longest first; the longest utterance of all goes first, so a batch that does not
    /// fit shows in the first step.
    public static func lengthGroupedOrder(lengths: [Int], batchSize: Int, seed: UInt64, epoch: UInt64 = 0) -> [Int] {
        precondition(batchSize > 0, "batch size must be positive")
        let rng = Philox(seed: seed)
        var order = Array(lengths.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, rng.below(i + 1, stream: 0xa0d1, step: epoch, index: UInt64(i)))
        }
        let mega = 50 * batchSize
        var grouped: [Int] = []
        grouped.reserveCapacity(order.count)
        var start = 0
        while start < order.count {
            let end = min(order.count, start + mega)
            grouped += order[start..<end].sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
            start = end
        }
        if let longest = grouped.indices.max(by: { lengths[grouped[$0]] < lengths[grouped[$1]] }), longest != 0 {
            grouped.swapAt(0, longest)
        }
        return grouped
    }
}
