import Foundation
import TandemTensor

/// A source sentence and its translation.
public struct SentencePair: Equatable, Sendable {
    public var source: String
    public var target: String

    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }
}

/// The pairs of one document (a Bible book, a catalogue, a help page): the unit of the held-out split,
/// so that no document has pairs on both sides of it.
public struct ParallelDocument: Equatable, Sendable {
    /// A name unique within the corpus, e.g. "Genesis" or "sw.mo".
    public var name: String
    public var pairs: [SentencePair]

    public init(name: String, pairs: [SentencePair]) {
        self.name = name
        self.pairs = pairs
    }
}

/// Collapses every run of Unicode whitespace (and the control characters of a line break or tab) into one
/// space and trims both ends: one pair per line needs sentences without line breaks.
public func normalizeWhitespace(_ s: String) -> String {
    var out = String.UnicodeScalarView()
    var pendingSpace = false
    for c in s.unicodeScalars {
        if c.properties.isWhitespace || BLEU.isPythonWhitespace(c) {
            pendingSpace = !out.isEmpty
        } else {
            if pendingSpace { out.append(" ") }
            pendingSpace = false
            out.append(c)
        }
    }
    return String(out)
}

// MARK: - Splits

/// The three parts of a corpus.
public enum CorpusSplit: String, CaseIterable, Sendable {
    case train, valid, test
}

/// Deals whole documents to test, valid and train: the documents in a `Philox(seed)` shuffle (stream
/// "PSPL", so the order depends on nothing but the seed and the document count), the first ones to test
/// until it holds at least `testFraction` of the pairs, the next to valid likewise, the rest to train.
/// Each part keeps the corpus order of its documents. Documents without pairs are dropped.
public func splitByDocument(_ documents: [ParallelDocument], seed: UInt64, validFraction: Double = 0.05,
                            testFraction: Double = 0.05) -> [CorpusSplit: [ParallelDocument]] {
    let documents = documents.filter { !$0.pairs.isEmpty }
    var order = Array(documents.indices)
    let rng = Philox(seed: seed)
    var i = order.count - 1
    while i > 0 {
        order.swapAt(i, rng.below(i + 1, stream: 0x5053_504C, step: 0, index: UInt64(i)))
        i -= 1
    }
    let total = documents.reduce(0) { $0 + $1.pairs.count }
    var assigned = [CorpusSplit](repeating: .train, count: documents.count)
    var testPairs = 0, validPairs = 0
    for d in order {
        if Double(testPairs) < testFraction * Double(total) {
            assigned[d] = .test
            testPairs += documents[d].pairs.count
        } else if Double(validPairs) < validFraction * Double(total) {
            assigned[d] = .valid
            validPairs += documents[d].pairs.count
        }
    }
    var parts: [CorpusSplit: [ParallelDocument]] = [.train: [], .valid: [], .test: []]
    for (d, document) in documents.enumerated() { parts[assigned[d], default: []].append(document) }
    return parts
}

// MARK: - Files

/// `manifest.json` of a directory written by `writeParallelCorpus` (`tandem prepare-translation`):
/// ```json
/// {"format": "tandem-parallel-text", "version": 1, "pair": "en-es", "seed": 0,
///  "sources": [{"name": "...", "packages": {"sword-text-kjv": "14.3-1"}, "license": "Public Domain", "documents": 66, "pairs": 31084}],
///  "splits": {"train": {"pairs": 0, "documents": 0}, ...},
///  "files": {"train.src": "<sha256>", ...}}
/// ```
public struct ParallelCorpusManifest: Codable, Equatable {
    /// Where a part of the corpus comes from.
    public struct Source: Codable, Equatable {
        public var name: String
        /// Debian package name -> installed version.
        public var packages: [String: String]
        public var license: String
        public var documents: Int
        public var pairs: Int

        public init(name: String, packages: [String: String], license: String, documents: Int, pairs: Int) {
            self.name = name
            self.packages = packages
            self.license = license
            self.documents = documents
            self.pairs = pairs
        }
    }

    /// Pairs and documents of one split.
    public struct SplitCounts: Codable, Equatable {
        public var pairs: Int
        public var documents: Int
    }

    public static let formatName = "tandem-parallel-text"
    public var format = ParallelCorpusManifest.formatName
    public var version = 1
    public var pair: String
    public var seed: UInt64
    public var sources: [Source]
    public var splits: [String: SplitCounts]
    /// SHA-256 (hex) of each file, by file name.
    public var files: [String: String]

    /// Reads `directory/manifest.json`.
    public static func read(directory: String) throws -> ParallelCorpusManifest {
        let (data, path) = try ManifestFile.contents(directory: directory, missing: "no parallel corpus manifest (run tandem prepare-translation)")
        let manifest: ParallelCorpusManifest
        do { manifest = try JSONDecoder().decode(ParallelCorpusManifest.self, from: data) } catch {
            throw DataError.invalidFormat(path: path, reason: "not a parallel corpus manifest: \(error)")
        }
        guard manifest.format == formatName, manifest.version == 1 else {
            throw DataError.invalidFormat(path: path, reason: "format \(manifest.format) version \(manifest.version), expected \(formatName) version 1")
        }
        return manifest
    }
}

/// Writes `directory/{train,valid,test}.{src,tgt}`, line i of a .src aligned with line i of its .tgt,
/// and `manifest.json`. Documents are separated by nothing: the files are one pair a line, so that
/// `tandem prepare-text` of each side (one document per file) keeps the pairs aligned by sentence index.
/// A pair with an empty side, or one with a line break left in it, is a programming error upstream.
@discardableResult
public func writeParallelCorpus(directory: String, pair: String, seed: UInt64, sources: [ParallelCorpusManifest.Source],
                                splits: [CorpusSplit: [ParallelDocument]]) throws -> ParallelCorpusManifest {
    do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
        throw DataError.io(path: directory, reason: "cannot create the directory: \(error.localizedDescription)")
    }
    var counts: [String: ParallelCorpusManifest.SplitCounts] = [:]
    var files: [String: String] = [:]
    for split in CorpusSplit.allCases {
        let documents = splits[split] ?? []
        var source = "", target = ""
        var n = 0
        for document in documents {
            for p in document.pairs {
                precondition(!p.source.isEmpty && !p.target.isEmpty && !p.source.contains(where: \.isNewline) && !p.target.contains(where: \.isNewline),
                             "pair \(n) of \(document.name) is not one line a side")
                source += p.source + "\n"
                target += p.target + "\n"
                n += 1
            }
        }
        counts[split.rawValue] = .init(pairs: n, documents: documents.count)
        for (ext, text) in [("src", source), ("tgt", target)] {
            let name = "\(split.rawValue).\(ext)"
            let path = (directory as NSString).appendingPathComponent(name)
            do { try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
                throw DataError.io(path: path, reason: "cannot write: \(error.localizedDescription)")
            }
            files[name] = try sha256(ofFile: path)
        }
    }
    let manifest = ParallelCorpusManifest(pair: pair, seed: seed, sources: sources, splits: counts, files: files)
    try ManifestFile.write(manifest, directory: directory)
    return manifest
}

/// Reads an aligned pair of text files (line i of `sourcePath` translates line i of `targetPath`). A
/// corpus that is not one pair a line is an error naming the file and line: a line whose side is empty
/// (or only whitespace), or files with different line counts.
public func readParallelText(sourcePath: String, targetPath: String) throws -> [SentencePair] {
    func lines(_ path: String) throws -> [Substring] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read") }
        var text = String(decoding: data, as: UTF8.self)[...]
        if text.hasSuffix("\n") { text = text.dropLast() }
        return text.isEmpty ? [] : text.split(separator: "\n", omittingEmptySubsequences: false)
    }
    let source = try lines(sourcePath), target = try lines(targetPath)
    for (i, (s, t)) in zip(source, target).enumerated() {
        for (side, path) in [(s, sourcePath), (t, targetPath)] where side.allSatisfy(\.isWhitespace) {
            throw DataError.invalidFormat(path: "\(path):\(i + 1)", reason: "empty line: each line must hold one sentence of an aligned pair")
        }
    }
    guard source.count == target.count else {
        let (longer, shorter) = source.count > target.count ? (sourcePath, targetPath) : (targetPath, sourcePath)
        throw DataError.invalidFormat(path: "\(longer):\(min(source.count, target.count) + 1)",
                                      reason: "\(max(source.count, target.count)) lines but \(shorter) has \(min(source.count, target.count)): the corpus is misaligned")
    }
    return zip(source, target).map { SentencePair(source: String($0), target: String($1)) }
}
