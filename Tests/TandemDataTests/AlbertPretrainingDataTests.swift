import Foundation
import XCTest
@testable import TandemData

/// ALBERT's data options: sentence-order pairs (two consecutive segments of one document, swapped with
/// probability 0.5) and n-gram masking (runs of 1...3 whole words, P(n) proportional to 1/n).
final class AlbertPretrainingDataTests: XCTestCase {
    let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (0..<40).map { "w\($0)" } + (0..<10).map { "##p\($0)" }

    /// 30 documents of 3-6 sentences of 4-12 tokens (a quarter `##` pieces), and the documents' tokens.
    func makeData(T: Int, shortSequenceProbability: Double, seed: UInt64) throws -> (PretrainingExamples, [[Int32]]) {
        let dir = NSTemporaryDirectory() + "tandem-albert-data-\(getpid())-\(T)-\(shortSequenceProbability)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokenizer = try WordPieceTokenizer(tokens: tokens)
        let writer = try TokenShardWriter(directory: dir, name: "shard-0", vocabSize: tokens.count)
        let rng = Philox(seed: 1)
        var k: UInt64 = 0
        var documents: [[Int32]] = []
        for _ in 0..<30 {
            writer.beginDocument()
            documents.append([])
            for _ in 0..<(3 + rng.below(4, stream: 0, step: 0, index: k)) {
                k += 1
                let n = 4 + rng.below(9, stream: 0, step: 1, index: k)
                let sentence: [Int32] = (0..<n).map { i in
                    k += 1
                    return i > 0 && rng.uniform(stream: 0, step: 2, index: k) < 0.25
                        ? Int32(45 + rng.below(10, stream: 0, step: 3, index: k)) : Int32(5 + rng.below(40, stream: 0, step: 4, index: k))
                }
                documents[documents.count - 1] += sentence
                try writer.addSentence(sentence)
            }
        }
        try writer.finish()
        try TokenShardManifest.build(directory: dir, names: ["shard-0"], vocabSize: tokens.count,
                                     vocabHash: tokenizer.vocabHash).write(directory: dir)
        var options = PretrainingOptions()
        options.maxSequence = T
        options.maxPredictions = 20
        options.shortSequenceProbability = shortSequenceProbability
        options.sentenceOrder = true
        options.maxNgram = 3
        let dataset = try ShardDataset(directory: dir, tokenizer: tokenizer)
        return (try PretrainingExamples(dataset: dataset, tokenizer: tokenizer, options: options, seed: seed), documents)
    }

    /// Example i of `epoch` with the masked tokens put back, its two segments and its label.
    func example(_ e: PretrainingExamples, _ i: Int, epoch: Int) -> (first: [Int32], second: [Int32], label: Int32, masked: Set<Int>, ids: [Int32]) {
        let T = e.options.maxSequence, P = e.options.maxPredictions
        var ids = [Int32](repeating: 0, count: T), types = ids, positions = [Int32](repeating: 0, count: P), labels = positions
        var mask = [Float](repeating: 0, count: T)
        var label: Int32 = -1
        ids.withUnsafeMutableBufferPointer { a in types.withUnsafeMutableBufferPointer { b in mask.withUnsafeMutableBufferPointer { c in
            positions.withUnsafeMutableBufferPointer { d in labels.withUnsafeMutableBufferPointer { f in
                withUnsafeMutablePointer(to: &label) { g in
                    e.fill(example: i, epoch: epoch, into: PretrainingSlots(
                        inputIDs: a.baseAddress!, tokenTypeIDs: b.baseAddress!, attentionMask: c.baseAddress!,
                        maskedPositions: d.baseAddress!, maskedLabels: f.baseAddress!, nextSentenceLabel: g))
                } } } } } }
        let maskedIDs = ids
        var masked = Set<Int>()
        for m in 0..<P where labels[m] != -100 { ids[Int(positions[m])] = labels[m]; masked.insert(Int(positions[m])) }
        let used = Int(mask.reduce(0, +))
        let sep = ids.firstIndex(of: 3)!
        XCTAssertEqual(ids[0], 2)
        XCTAssertEqual(ids[used - 1], 3)
        XCTAssertTrue(types[0...sep].allSatisfy { $0 == 0 } && types[(sep + 1)..<used].allSatisfy { $0 == 1 })
        return (Array(ids[1..<sep]), Array(ids[(sep + 1)..<(used - 1)]), label, masked, maskedIDs)
    }

    /// Whether `run` occurs contiguously in `document`.
    func occurs(_ run: [Int32], in document: [Int32]) -> Bool {
        guard !run.isEmpty, run.count <= document.count else { return run.isEmpty }
        return (0...(document.count - run.count)).contains { Array(document[$0..<($0 + run.count)]) == run }
    }

    func testSentenceOrderPairsAreTwoConsecutiveSegmentsOfOneDocumentSwappedHalfTheTime() throws {
        // 0: chunks of whole documents; 1: every document cut at short targets, so one-sentence chunks
        // (split inside their sentence) occur too.
        for shortSequenceProbability in [0.0, 1.0] {
            let (e, documents) = try makeData(T: 128, shortSequenceProbability: shortSequenceProbability, seed: 3)
            var swapped = 0, total = 0
            for epoch in 0..<10 {
                for i in 0..<e.count {
                    let x = example(e, i, epoch: epoch)
                    XCTAssertTrue(x.label == 0 || x.label == 1)
                    XCTAssertFalse(x.first.isEmpty || x.second.isEmpty, "example \(i): two non-empty segments")
                    let inOrder = x.label == 1 ? x.second + x.first : x.first + x.second
                    XCTAssertTrue(documents.contains { occurs(inOrder, in: $0) },
                                  "example \(i) epoch \(epoch): the segments, label \(x.label), are not consecutive in one document")
                    swapped += Int(x.label)
                    total += 1
                }
            }
            let fraction = Double(swapped) / Double(total)
            print("SOP: \(total) pairs (short_seq_prob \(shortSequenceProbability)), swapped fraction \(fraction)")
            XCTAssertEqual(fraction, 0.5, accuracy: 0.07)
        }
    }

    /// N-gram masking masks whole words: a masked word's `##` pieces are masked with it, and a masked
    /// `##` piece comes with the piece before it. The count is BERT's 15% of the tokens.
    func testNgramMaskingMasksWholeWords() throws {
        let (e, _) = try makeData(T: 128, shortSequenceProbability: 0, seed: 5)
        var checked = 0
        for i in 0..<e.count {
            let x = example(e, i, epoch: 1)
            let original = [2] + x.first + [3] + x.second + [3]
            XCTAssertEqual(x.masked.count, min(20, max(1, Int((Double(original.count) * 0.15).rounded()))))
            for p in x.masked {
                if original[p] >= 45 { XCTAssertTrue(x.masked.contains(p - 1), "example \(i): ## piece at \(p) masked without its word") }
                if p + 1 < original.count && original[p + 1] >= 45 {
                    XCTAssertTrue(x.masked.contains(p + 1), "example \(i): the ## piece after masked position \(p) left unmasked")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 0)
    }

    /// N-gram lengths follow P(n) proportional to 1/n (6/11, 3/11, 2/11 for n <= 3): measured on 2,000
    /// single-piece words with 60 predictions, where runs rarely touch (so each masked run is one draw).
    func testNgramLengthsFollowOneOverN() {
        var options = PretrainingOptions()
        let words = 2000
        options.maxSequence = words + 2
        options.maxPredictions = 60
        options.maskProbability = 0.03
        options.maxNgram = 3
        let V = 5 + words
        let masking = TokenMasking(options: options, seed: 11, maskID: 4, vocabSize: V, special: [0, 1, 2, 3, 4],
                                   isContinuation: [Bool](repeating: false, count: V))
        for (p, expected) in zip(masking.ngramProbabilities, [6.0 / 11, 3.0 / 11, 2.0 / 11]) { XCTAssertEqual(p, expected, accuracy: 1e-12) }
        let T = options.maxSequence, P = options.maxPredictions
        var counts = [0, 0, 0, 0], longer = 0
        XCTAssertEqual(masking.ngramProbabilities.count, 3)
        var ids = [Int32](repeating: 0, count: T), types = ids, positions = [Int32](repeating: 0, count: P), labels = positions
        var mask = [Float](repeating: 1, count: T)
        var label: Int32 = 0
        for example in 0..<200 {
            ids[0] = 2; ids[T - 1] = 3
            for w in 0..<words { ids[1 + w] = Int32(5 + w) }
            ids.withUnsafeMutableBufferPointer { a in types.withUnsafeMutableBufferPointer { b in mask.withUnsafeMutableBufferPointer { c in
                positions.withUnsafeMutableBufferPointer { d in labels.withUnsafeMutableBufferPointer { f in
                    withUnsafeMutablePointer(to: &label) { g in
                        masking.mask(used: T, epoch: 0, index: UInt64(example), slots: PretrainingSlots(
                            inputIDs: a.baseAddress!, tokenTypeIDs: b.baseAddress!, attentionMask: c.baseAddress!,
                            maskedPositions: d.baseAddress!, maskedLabels: f.baseAddress!, nextSentenceLabel: g))
                    } } } } } }
            let masked = (0..<P).filter { labels[$0] != -100 }.map { Int(positions[$0]) }
            XCTAssertEqual(masked.count, 60)
            XCTAssertEqual(masked, masked.sorted())
            var run = 1
            for k in 1...masked.count {
                if k < masked.count && masked[k] == masked[k - 1] + 1 { run += 1; continue }
                if run <= 3 { counts[run] += 1 } else { longer += 1 }
                run = 1
            }
        }
        let total = Double(counts.reduce(0, +) + longer)
        let observed = counts[1...].map { Double($0) / total }
        print("n-gram masking: \(Int(total)) runs, lengths 1/2/3 \(observed), longer (touching runs) \(longer)")
        XCTAssertEqual(observed[0], 6.0 / 11, accuracy: 0.03)
        XCTAssertEqual(observed[1], 3.0 / 11, accuracy: 0.03)
        XCTAssertEqual(observed[2], 2.0 / 11, accuracy: 0.03)
    }
}
