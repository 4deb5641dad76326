import Foundation
import TandemData

/// `tandem prepare-translation` and `tandem bleu`: the parallel corpora of seq2seq translation, built from
/// Debian packages, and its metric.
public enum TranslationCommands {
    /// The language pairs `prepare` knows, with the Debian packages each one reads.
    public static let packages: [String: [String]] = [
        "en-es": ["diatheke", "sword-text-kjv", "sword-text-sparv"],
        "en-hi": ["libreoffice-l10n-hi", "libreoffice-help-hi", "libreoffice-help-en-us"],
    ]

    /// Where the packages put their files (tests point these at small trees).
    public struct Locations {
        public var swordModules = "/usr/share/sword/mods.d"
        public var catalogues = "/usr/lib/libreoffice/program/resource/hi/LC_MESSAGES"
        public var englishHelp = "/usr/share/libreoffice/help/en-US"
        public var hindiHelp = "/usr/share/libreoffice/help/hi"
        public init() {}
    }

    /// Builds the corpus of `pair` ("en-es" or "en-hi") into `out` (see `writeParallelCorpus`), holding out
    /// whole documents (about 5% of the pairs each for valid and test) chosen by `seed`.
    @discardableResult
    public static func prepare(pair: String, out: String, seed: UInt64, locations: Locations = Locations(),
                               log: (String) -> Void = { print($0) }) throws -> ParallelCorpusManifest {
        guard let needed = packages[pair] else {
            throw ConfigError("--pair \(pair): expected one of \(packages.keys.sorted().joined(separator: ", "))")
        }
        let versions = try installedVersions(needed)
        var documents: [ParallelDocument] = []
        var sources: [ParallelCorpusManifest.Source] = []
        switch pair {
        case "en-es":
            // diatheke spends its time in one thread decompressing: read both Bibles at once.
            let modules = ["engKJV2006eb", "spaRV1909eb"]
            let lock = NSLock()
            var read: [String: Result<(verses: [SwordBible.Verse], license: String), Error>] = [:]
            DispatchQueue.concurrentPerform(iterations: modules.count) { i in
                let result = Result { try bible(module: modules[i], locations: locations) }
                lock.lock()
                read[modules[i]] = result
                lock.unlock()
            }
            let kjv = try read[modules[0]]!.get(), rv = try read[modules[1]]!.get()
            documents = SwordBible.align(source: kjv.verses, target: rv.verses)
            sources.append(.init(name: "King James Version (SWORD engKJV2006eb) / Reina-Valera 1909 (SWORD spaRV1909eb), verses aligned by reference, one document per book",
                                 packages: versions, license: "KJV: \(kjv.license); RV1909: \(rv.license)",
                                 documents: documents.count, pairs: documents.reduce(0) { $0 + $1.pairs.count }))
        default:
            let ui = try catalogueDocuments(directory: locations.catalogues)
            let help = try helpDocuments(english: locations.englishHelp, translated: locations.hindiHelp)
            let license = "MPL-2.0 (some files Apache-2.0; /usr/share/doc/libreoffice-l10n-hi/copyright)"
            sources.append(.init(name: "LibreOffice UI catalogues (msgid -> Hindi msgstr), one document per .mo file",
                                 packages: versions.filter { $0.key == "libreoffice-l10n-hi" }, license: license,
                                 documents: ui.count, pairs: ui.reduce(0) { $0 + $1.pairs.count }))
            sources.append(.init(name: "LibreOffice help paragraphs aligned by file and paragraph id (translated ones only), one document per help page",
                                 packages: versions.filter { $0.key != "libreoffice-l10n-hi" }, license: license,
                                 documents: help.count, pairs: help.reduce(0) { $0 + $1.pairs.count }))
            documents = ui + help
        }
        let splits = splitByDocument(documents, seed: seed)
        let manifest = try writeParallelCorpus(directory: out, pair: pair, seed: seed, sources: sources, splits: splits)
        // Read back what was written: the same check a training run makes.
        for split in CorpusSplit.allCases {
            _ = try readParallelText(sourcePath: (out as NSString).appendingPathComponent("\(split.rawValue).src"),
                                     targetPath: (out as NSString).appendingPathComponent("\(split.rawValue).tgt"))
        }
        log("prepare-translation \(pair): " + CorpusSplit.allCases.map { s in
            let c = manifest.splits[s.rawValue]!
            return "\(s.rawValue) \(c.pairs) pairs (\(c.documents) documents)"
        }.joined(separator: ", ") + " in \(out)")
        return manifest
    }

    /// Prints sacreBLEU's line for the hypotheses read from `hypotheses` (one a line) against `reference`.
    /// With `bySourceLength` (the source sentences, aligned), also the corpus BLEU of each bucket of
    /// source length in words (`lengthBuckets`), the figure of Bahdanau et al. 2015.
    @discardableResult
    public static func bleu(reference: String, bySourceLength sourcePath: String? = nil,
                            hypotheses: FileHandle = .standardInput) throws -> BLEUScore {
        let references = try readLines(reference)
        let hyps = lines(String(decoding: hypotheses.readDataToEndOfFile(), as: UTF8.self))
        guard hyps.count == references.count else {
            throw DataError.invalidFormat(path: "stdin", reason: "\(hyps.count) hypotheses but \(reference) has \(references.count) lines")
        }
        let score = try BLEU.corpusScore(hypotheses: hyps, references: references)
        print(score.formatted)
        guard let sourcePath else { return score }
        let sources = try readLines(sourcePath)
        guard sources.count == references.count else {
            throw DataError.invalidFormat(path: sourcePath, reason: "\(sources.count) source lines but \(reference) has \(references.count)")
        }
        var buckets = [BLEU.Statistics](repeating: BLEU.Statistics(), count: lengthBuckets.count)
        var sentences = [Int](repeating: 0, count: lengthBuckets.count)
        for (i, source) in sources.enumerated() {
            let words = source.split(whereSeparator: \.isWhitespace).count
            let k = lengthBuckets.lastIndex { words >= $0.lowerBound }!
            buckets[k].add(BLEU.statistics(hypothesis: hyps[i], reference: references[i]))
            sentences[k] += 1
        }
        print("source words | sentences | BLEU")
        for (k, range) in lengthBuckets.enumerated() where sentences[k] > 0 {
            let name = range.upperBound == Int.max ? "\(range.lowerBound)+" : "\(range.lowerBound)-\(range.upperBound)"
            print(String(format: "%@ | %d | %.2f", name, sentences[k], buckets[k].score.score))
        }
        return score
    }

    /// The source-length buckets of `bleu(bySourceLength:)`, in words.
    public static let lengthBuckets: [ClosedRange<Int>] = [0...10, 11...20, 21...30, 31...40, 41...50, 51...Int.max]

    static func readLines(_ path: String) throws -> [String] {
        // Through a file handle, so that pipes (bash's <(...)) read as well as files.
        guard let handle = FileHandle(forReadingAtPath: path) else { throw DataError.io(path: path, reason: "cannot read") }
        defer { try? handle.close() }
        return lines(String(decoding: handle.readDataToEndOfFile(), as: UTF8.self))
    }

    /// Lines of a text file, without the newline after the last one.
    public static func lines(_ text: String) -> [String] {
        var text = text[...]
        if text.hasSuffix("\n") { text = text.dropLast() }
        return text.isEmpty ? [] : text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    // MARK: - Sources

    /// Installed versions of Debian packages; a missing one is an error saying how to install it.
    static func installedVersions(_ names: [String]) throws -> [String: String] {
        var versions: [String: String] = [:]
        for name in names {
            let (status, output) = try run("/usr/bin/dpkg-query", ["-W", "-f", "${Status}\t${Version}", name])
            let fields = output.split(separator: "\t")
            guard status == 0, fields.count == 2, fields[0].hasSuffix("installed") && !fields[0].contains("not-installed") else {
                throw ConfigError("Debian package \(name) is not installed (launch/common.sh installs it: source it and run tandem_ensure_packages)")
            }
            versions[name] = String(fields[1])
        }
        return versions
    }

    /// A whole SWORD Bible through diatheke, and its DistributionLicense.
    static func bible(module: String, locations: Locations) throws -> (verses: [SwordBible.Verse], license: String) {
        let conf = (locations.swordModules as NSString).appendingPathComponent(module + ".conf")
        guard let text = try? String(contentsOfFile: conf, encoding: .utf8) else { throw DataError.io(path: conf, reason: "cannot read the SWORD module's configuration") }
        let license = text.split(separator: "\n").first { $0.hasPrefix("DistributionLicense=") }.map { String($0.dropFirst("DistributionLicense=".count)) } ?? "unknown"
        let (status, output) = try run("/usr/bin/diatheke", ["-b", module, "-k", "Gen 1:1-Rev 22:21"])
        guard status == 0 else { throw DataError.io(path: "diatheke -b \(module)", reason: "exit status \(status)") }
        let verses = try SwordBible.parse(output, name: "diatheke -b \(module)")
        guard verses.count > 30_000 else { throw DataError.invalidFormat(path: "diatheke -b \(module)", reason: "only \(verses.count) verses") }
        return (verses, license)
    }

    /// One document per .mo file of `directory`, in name order.
    static func catalogueDocuments(directory: String) throws -> [ParallelDocument] {
        let names = try contents(of: directory).filter { $0.hasSuffix(".mo") }.sorted()
        guard !names.isEmpty else { throw DataError.io(path: directory, reason: "no .mo catalogues") }
        return try names.map { name in
            ParallelDocument(name: name, pairs: translationPairs(of: try GettextCatalog(path: (directory as NSString).appendingPathComponent(name))))
        }
    }

    /// One document per help page present in both trees, in path order.
    static func helpDocuments(english: String, translated: String) throws -> [ParallelDocument] {
        guard let walker = FileManager.default.enumerator(atPath: translated) else { throw DataError.io(path: translated, reason: "cannot list") }
        let pages = walker.compactMap { $0 as? String }.filter { $0.hasPrefix("text/") && $0.hasSuffix(".html") }.sorted()
        guard !pages.isEmpty else { throw DataError.io(path: translated, reason: "no help pages under text/") }
        var documents: [ParallelDocument] = []
        for page in pages {
            let englishPath = (english as NSString).appendingPathComponent(page)
            guard let e = FileManager.default.contents(atPath: englishPath),
                  let t = FileManager.default.contents(atPath: (translated as NSString).appendingPathComponent(page)) else { continue }
            documents.append(ParallelDocument(name: page, pairs: LibreOfficeHelp.align(english: String(decoding: e, as: UTF8.self),
                                                                                        translated: String(decoding: t, as: UTF8.self))))
        }
        return documents
    }

    private static func contents(of directory: String) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw DataError.io(path: directory, reason: "cannot list: \(error.localizedDescription)")
        }
    }

    /// Runs a program, its standard output collected through a temporary file (diatheke prints megabytes).
    private static func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: program) else {
            throw ConfigError("\(program) not found (launch/common.sh installs its package: source it and run tandem_ensure_packages)")
        }
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-\(getpid())-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else { throw DataError.io(path: temporary.path, reason: "cannot create") }
        defer { try? FileManager.default.removeItem(at: temporary) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let sink = try FileHandle(forWritingTo: temporary)
        process.standardOutput = sink
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try sink.close()
        let output = String(decoding: (try? Data(contentsOf: temporary)) ?? Data(), as: UTF8.self)
        return (process.terminationStatus, output)
    }
}
