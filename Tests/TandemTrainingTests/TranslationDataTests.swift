import Foundation
import XCTest
import TandemCollectives
import TandemData
@testable import TandemTraining

/// `tandem prepare-translation` on the real Debian packages (installed by launch/common.sh; skipped
/// where they are not), then the training side: vocabularies, line-aligned shards, ParallelDataset and
/// length bucketing.
final class TranslationDataTests: XCTestCase {
    private func requirePackages(_ pair: String) throws {
        do { _ = try TranslationCommands.installedVersions(TranslationCommands.packages[pair]!) } catch {
            throw XCTSkip("\(error)")
        }
    }

    private func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-translation-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// EN-ES: about 31k verse pairs split by book, aligned end to end into token shards; bucketed global
    /// batches of 64 pad far less than shuffled ones.
    func testEnglishSpanishBibleToBucketedPairs() throws {
        try requirePackages("en-es")
        let out = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let manifest = try TranslationCommands.prepare(pair: "en-es", out: out, seed: 0, log: { _ in })
        let total = manifest.splits.values.reduce(0) { $0 + $1.pairs }
        XCTAssertGreaterThan(total, 31_000)
        XCTAssertLessThanOrEqual(total, 31_102)
        XCTAssertEqual(manifest.splits.values.reduce(0) { $0 + $1.documents }, 66)
        XCTAssertGreaterThanOrEqual(manifest.splits["test"]!.pairs, total / 20)
        XCTAssertEqual(manifest.sources.first?.license, "KJV: Public Domain; RV1909: Public Domain")
        let train = try readParallelText(sourcePath: "\(out)/train.src", targetPath: "\(out)/train.tgt")
        let all = try CorpusSplit.allCases.flatMap { try readParallelText(sourcePath: "\(out)/\($0.rawValue).src", targetPath: "\(out)/\($0.rawValue).tgt") }
        XCTAssertEqual(all.count, total)
        XCTAssertTrue(all.contains(SentencePair(source: "In the beginning God created the heaven and the earth.",
                                                target: "EN el principio crió Dios los cielos y la tierra.")), "Genesis 1:1")
        XCTAssertFalse(all.contains { $0.source.contains("<") || $0.source.contains("¶") || $0.target.contains("<") })

        var sides: [(shards: String, vocab: WordPieceTokenizer)] = []
        for (file, cased) in [("train.src", false), ("train.tgt", true)] {
            var trainer = WordPieceTrainer(vocabSize: 4000, minFrequency: 2, normalization: cased ? .cased : .uncased)
            _ = try trainer.train(files: ["\(out)/\(file)"], output: "\(out)/\(file).vocab.txt")
            let vocab = try WordPieceTokenizer(vocabFile: "\(out)/\(file).vocab.txt", cased: cased)
            try prepareText(vocab: vocab, out: "\(out)/\(file)-shards", inputs: TextShardJob.plan(inputs: ["\(out)/\(file)"]), lineAligned: true, log: { _ in })
            sides.append(("\(out)/\(file)-shards", vocab))
        }
        let data = try ParallelDataset(sourceDirectory: sides[0].shards, sourceVocab: sides[0].vocab,
                                       targetDirectory: sides[1].shards, targetVocab: sides[1].vocab)
        XCTAssertEqual(data.count, train.count)
        for i in stride(from: 0, to: train.count, by: 997) {
            XCTAssertEqual(Array(data.pair(i).source), sides[0].vocab.encode(train[i].source), "pair \(i)")
            XCTAssertEqual(Array(data.pair(i).target), sides[1].vocab.encode(train[i].target), "pair \(i)")
        }

        let g = 64
        let bucketed = LengthBucketing(lengths: data.sourceLengths, secondaryLengths: data.targetLengths, globalBatch: g, seed: 0).order(epoch: 0)
        let shuffled = Sampler(count: data.count, globalBatch: g, seed: 0).permutation(epoch: 0)
        var figures: [String] = []
        for (side, lengths) in [("source", data.sourceLengths), ("target", data.targetLengths)] {
            let b = LengthBucketing.meanPaddingFraction(lengths: lengths, order: bucketed, batch: g)
            let s = LengthBucketing.meanPaddingFraction(lengths: lengths, order: shuffled, batch: g)
            figures.append(String(format: "%@ padding %.3f shuffled, %.3f bucketed", side, s, b))
            // Sorted by source length, the target follows it only loosely.
            XCTAssertLessThan(b, side == "source" ? s / 10 : s / 2, side)
        }
        print("EN-ES train, global batch \(g): " + figures.joined(separator: "; "))
    }

    /// EN-HI: about 12k UI strings and 9k help paragraphs, no accelerator or empty side left.
    func testEnglishHindiLibreOffice() throws {
        try requirePackages("en-hi")
        let out = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let manifest = try TranslationCommands.prepare(pair: "en-hi", out: out, seed: 0, log: { _ in })
        XCTAssertEqual(manifest.sources.count, 2)
        XCTAssertEqual(manifest.sources[0].documents, 33)
        XCTAssertGreaterThan(manifest.sources[0].pairs, 10_000)
        XCTAssertGreaterThan(manifest.sources[1].pairs, 8_000)
        var all: [SentencePair] = []
        for split in CorpusSplit.allCases {
            all += try readParallelText(sourcePath: "\(out)/\(split.rawValue).src", targetPath: "\(out)/\(split.rawValue).tgt")
        }
        XCTAssertEqual(all.count, manifest.sources[0].pairs + manifest.sources[1].pairs)
        XCTAssertFalse(all.contains { $0.source == $0.target })
        // Help pages mention "~" and "_" literally; the catalogues' "(~N)" / "(_N)" accelerators are gone.
        XCTAssertFalse(all.contains { $0.target.contains("(~") || $0.target.contains("(_") })
        XCTAssertTrue(all.contains { $0.target.unicodeScalars.contains { (0x0900...0x097F).contains($0.value) } })
    }
}
