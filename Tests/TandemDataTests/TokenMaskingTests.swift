import Foundation
import XCTest
@testable import TandemData

/// `TokenMasking`: BERT's 80/10/10 replacement, and SpanBERT's span masking (`SpanMaskingOptions`):
/// whole-word spans with geometric lengths, 15% of the tokens, each merged span replaced as a whole, and
/// every masked token's span-boundary target.
final class TokenMaskingTests: XCTestCase {
    // 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], 4 [MASK], words 5..<45, ## pieces 45..<55.
    let vocabulary = 55
    let special: [Int32] = [0, 1, 2, 3, 4]
    var isContinuation: [Bool] { (0..<vocabulary).map { $0 >= 45 } }

    /// `[CLS]` + `n` tokens (a quarter continuation pieces, a [SEP] between two documents at n/2) + `[SEP]`.
    func sequence(_ n: Int, seed: UInt64) -> [Int32] {
        let rng = Philox(seed: seed)
        var ids: [Int32] = [2]
        for i in 0..<n {
            if i == n / 2 { ids.append(3); continue }
            let continuation = i > 0 && ids.last! >= 5 && rng.uniform(stream: 1, step: 0, index: UInt64(i)) < 0.25
            ids.append(continuation ? Int32(45 + rng.below(10, stream: 2, step: 0, index: UInt64(i)))
                                    : Int32(5 + rng.below(40, stream: 3, step: 0, index: UInt64(i))))
        }
        return ids + [3]
    }

    struct Masked {
        var ids: [Int32], positions: [Int32], labels: [Int32], left: [Int32], right: [Int32], offset: [Int32], spanLabels: [Int32]
    }

    func mask(_ original: [Int32], _ masking: TokenMasking, epoch: UInt64, index: UInt64) -> Masked {
        let T = masking.options.maxSequence, P = masking.options.maxPredictions
        var m = Masked(ids: original + [Int32](repeating: 0, count: T - original.count), positions: .init(repeating: 7, count: P),
                       labels: .init(repeating: 7, count: P), left: .init(repeating: 7, count: P), right: .init(repeating: 7, count: P),
                       offset: .init(repeating: 7, count: P), spanLabels: .init(repeating: 7, count: P))
        var types = [Int32](repeating: 0, count: T), attention = [Float](repeating: 1, count: T), nsp: Int32 = 0
        m.ids.withUnsafeMutableBufferPointer { ids in types.withUnsafeMutableBufferPointer { types in
            attention.withUnsafeMutableBufferPointer { attention in m.positions.withUnsafeMutableBufferPointer { positions in
                m.labels.withUnsafeMutableBufferPointer { labels in m.left.withUnsafeMutableBufferPointer { left in
                    m.right.withUnsafeMutableBufferPointer { right in m.offset.withUnsafeMutableBufferPointer { offset in
                        m.spanLabels.withUnsafeMutableBufferPointer { spanLabels in withUnsafeMutablePointer(to: &nsp) { nsp in
                            masking.mask(used: original.count, epoch: epoch, index: index, slots: PretrainingSlots(
                                inputIDs: ids.baseAddress!, tokenTypeIDs: types.baseAddress!, attentionMask: attention.baseAddress!,
                                maskedPositions: positions.baseAddress!, maskedLabels: labels.baseAddress!, nextSentenceLabel: nsp,
                                spans: SpanSlots(left: left.baseAddress!, right: right.baseAddress!, offset: offset.baseAddress!,
                                                 label: spanLabels.baseAddress!)))
                        } } } } } } } } } }
        return m
    }

    func makeMasking(T: Int = 128, maxTargets: Int = 20) -> TokenMasking {
        var options = PretrainingOptions()
        options.maxSequence = T
        options.maxPredictions = T
        options.spanMasking = SpanMaskingOptions()
        options.spanMasking!.maxTargets = maxTargets
        return TokenMasking(options: options, seed: 5, maskID: 4, vocabSize: vocabulary, special: special, isContinuation: isContinuation)
    }

    /// BERT's replacement: 80% [MASK], 10% a random token of the vocabulary, 10% kept.
    func testMaskedTokensAreEightyPercentMaskTenPercentRandomTenPercentKept() {
        var options = PretrainingOptions()
        options.maxSequence = 128
        options.maxPredictions = 20
        let masking = TokenMasking(options: options, seed: 5, maskID: 4, vocabSize: vocabulary, special: special,
                                   isContinuation: isContinuation)
        var counts = [0, 0, 0], total = 0
        for i in 0..<1000 {
            let original = sequence(120, seed: UInt64(i))
            let m = mask(original, masking, epoch: 0, index: UInt64(i))
            for (k, p) in m.positions.enumerated() where m.labels[k] != -100 {
                total += 1
                counts[m.ids[Int(p)] == 4 ? 0 : m.ids[Int(p)] == original[Int(p)] ? 2 : 1] += 1
            }
        }
        let shares = counts.map { Double($0) / Double(total) }
        print("word masking: \(total) masked tokens, [MASK] \(shares[0]), random \(shares[1]), kept \(shares[2])")
        XCTAssertEqual(shares[0], 0.8, accuracy: 0.01)
        // A random draw of a special token or of the original itself keeps the original: 6 ids of 55.
        XCTAssertEqual(shares[1], 0.1 * 49 / 55, accuracy: 0.01)
        XCTAssertEqual(shares[2], 0.1 + 0.1 * 6 / 55, accuracy: 0.01)
    }

    func testSpanLengthsFollowTheClippedGeometricDistribution() {
        let p = makeMasking().spanProbabilities
        XCTAssertEqual(p.count, 10)
        let total = (1...10).reduce(0.0) { $0 + 0.2 * pow(0.8, Double($1 - 1)) }
        for k in 1...10 { XCTAssertEqual(p[k - 1], 0.2 * pow(0.8, Double(k - 1)) / total, accuracy: 1e-12) }
        // SpanBERT: a mean span of 3.8 words.
        XCTAssertEqual((1...10).reduce(0.0) { $0 + Double($1) * p[$1 - 1] }, 3.8, accuracy: 0.05)
    }

    func testSpansAreWholeWordsFifteenPercentReplacedAsAWholeWithBoundaryTargets() {
        let masking = makeMasking()
        var runs = 0, allMask = 0, kept = 0, runWords = 0, exactBudget = 0
        let examples = 400
        for i in 0..<examples {
            let original = sequence(120, seed: UInt64(i))
            let used = original.count
            let m = mask(original, masking, epoch: 0, index: UInt64(i))
            let count = m.labels.firstIndex(of: -100) ?? m.labels.count
            let budget = Int((Double(used) * 0.15).rounded())
            XCTAssertLessThanOrEqual(count, budget)
            if count == budget { exactBudget += 1 }
            XCTAssertTrue(m.labels[count...].allSatisfy { $0 == -100 } && m.spanLabels[count...].allSatisfy { $0 == -100 })
            let positions = m.positions[..<count].map(Int.init)
            XCTAssertEqual(positions, positions.sorted())
            let set = Set(positions)
            for (k, p) in positions.enumerated() {
                XCTAssertEqual(m.labels[k], original[p])
                XCTAssertFalse(special.contains(original[p]), "a special token is never masked")
                // Whole words: a masked piece's word is masked from its start to its end.
                if isContinuation[Int(original[p])] { XCTAssertTrue(set.contains(p - 1)) }
                if p + 1 < used && isContinuation[Int(original[p + 1])] { XCTAssertTrue(set.contains(p + 1)) }
            }
            // Merged spans: runs of adjacent positions, replaced as a whole, with their boundary targets.
            var k = 0
            while k < count {
                var e = k
                while e + 1 < count && positions[e + 1] == positions[e] + 1 { e += 1 }
                let start = positions[k], end = positions[e]
                let replaced = (k...e).map { m.ids[positions[$0]] }
                if replaced.allSatisfy({ $0 == 4 }) { allMask += 1 }
                else if (k...e).allSatisfy({ m.ids[positions[$0]] == original[positions[$0]] }) { kept += 1 }
                else { XCTAssertFalse(replaced.contains(4), "a span is replaced as a whole") }
                runs += 1
                runWords += (k...e).filter { !isContinuation[Int(original[positions[$0]])] }.count
                for j in k...e {
                    XCTAssertEqual(m.left[j], Int32(start - 1)); XCTAssertEqual(m.right[j], Int32(end + 1))
                    XCTAssertEqual(m.offset[j], Int32(j - k)); XCTAssertEqual(m.spanLabels[j], original[positions[j]])
                }
                k = e + 1
            }
        }
        let maskShare = Double(allMask) / Double(runs), keptShare = Double(kept) / Double(runs)
        print("span masking: \(runs) merged spans, \(Double(runWords) / Double(runs)) words each, [MASK] \(maskShare), kept \(keptShare), budget met in \(exactBudget) of \(examples)")
        XCTAssertEqual(maskShare, 0.8, accuracy: 0.05)
        XCTAssertEqual(keptShare, 0.1, accuracy: 0.04)  // a one-token span's random draw may be its own token
        XCTAssertGreaterThan(Double(runWords) / Double(runs), 2.5, "spans are several words long on average")
        XCTAssertGreaterThan(exactBudget, examples * 3 / 4, "the budget is met in most sequences")
    }

    func testTokensPastThePositionTableHaveNoBoundaryTarget() {
        let masking = makeMasking(T: 128, maxTargets: 3)
        var cut = 0
        for i in 0..<100 {
            let m = mask(sequence(120, seed: UInt64(i)), masking, epoch: 0, index: UInt64(i))
            for j in m.labels.indices where m.labels[j] != -100 {
                if m.spanLabels[j] == -100 { cut += 1; XCTAssertEqual(m.offset[j], 0) } else { XCTAssertLessThan(m.offset[j], 3) }
            }
        }
        XCTAssertGreaterThan(cut, 0, "spans longer than 3 tokens occur")
    }

    func testMasksAreRedrawnPerEpochAndReproducible() {
        let masking = makeMasking(), original = sequence(120, seed: 9)
        let a = mask(original, masking, epoch: 0, index: 3), b = mask(original, masking, epoch: 0, index: 3)
        let c = mask(original, masking, epoch: 1, index: 3)
        XCTAssertEqual(a.ids, b.ids); XCTAssertEqual(a.positions, b.positions); XCTAssertEqual(a.left, b.left)
        XCTAssertNotEqual(a.positions, c.positions)
    }
}
