import XCTest
@testable import TandemData

/// The character vocabulary of CTC and wav2vec 2.0's masking and distractor draws.
final class SpeechDataTests: XCTestCase {
    func testCharacterVocabularyEncodesDecodesAndRejects() throws {
        let v = CharacterVocabulary.english
        XCTAssertEqual(v.count, 32)
        XCTAssertEqual(v.padID, 0)
        let ids = try v.encode("let's go", origin: "t")
        XCTAssertEqual(ids.count, 8)
        XCTAssertEqual(v.tokens[Int(ids[5])], "|")
        // Greedy CTC: repeats collapse, blanks separate real repeats, delimiters become single spaces.
        var frames: [Int32] = []
        for id in ids { frames += [id, id, 0] }
        XCTAssertEqual(v.decodeCTC([0] + frames + [4, 4]), "let's go")
        XCTAssertEqual(v.decodeCTC(try v.encode("all", origin: "t")), "al")
        XCTAssertThrowsError(try v.encode("naïve", origin: "shard 3 utterance 7")) { error in
            XCTAssertTrue("\(error)".contains("shard 3 utterance 7") && "\(error)".contains("ï"), "\(error)")
        }
        let path = NSTemporaryDirectory() + "vocab-\(getpid()).json"
        try v.json.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try CharacterVocabulary(path: path), v)
        XCTAssertEqual(CharacterVocabulary.editDistance("kitten", "sitting"), 3)
        XCTAssertEqual(CharacterVocabulary.editDistance("", "abc"), 3)
    }

    func testTimeMaskFollowsTransformersCounts() {
        let rng = Philox(seed: 5)
        for utterance in 0..<50 {
            let frames = 40 + utterance
            let mask = SpeechMasking.timeMask(frames: frames, probability: 0.65, length: 10, minMasks: 2, rng: rng, epoch: 1,
                                              utterance: utterance)
            XCTAssertEqual(mask, SpeechMasking.timeMask(frames: frames, probability: 0.65, length: 10, minMasks: 2, rng: rng,
                                                        epoch: 1, utterance: utterance))
            let masked = mask.filter { $0 }.count
            // At least one span, at most ⌊0.65 frames / 10 + 1⌋ spans of 10 frames.
            XCTAssertGreaterThanOrEqual(masked, 10)
            XCTAssertLessThanOrEqual(masked, min(frames, (Int(0.65 * Double(frames) / 10) + 1) * 10))
            // Runs of masked frames come in spans of at least 10.
            var run = 0
            for m in mask + [false] {
                if m { run += 1 } else { XCTAssertTrue(run == 0 || run >= 10); run = 0 }
            }
        }
        XCTAssertEqual(SpeechMasking.timeMask(frames: 5, probability: 0.65, length: 10, minMasks: 2, rng: rng, epoch: 0, utterance: 0),
                       [Bool](repeating: false, count: 5))
        XCTAssertNotEqual(SpeechMasking.timeMask(frames: 200, probability: 0.65, length: 10, minMasks: 2, rng: rng, epoch: 0, utterance: 0),
                          SpeechMasking.timeMask(frames: 200, probability: 0.65, length: 10, minMasks: 2, rng: rng, epoch: 1, utterance: 0))
    }

    /// transformers' `_compute_mask_indices((1, L), mask_prob, mask_length, min_masks=min_masks)` without an
    /// attention mask, line by line, given its two draws: epsilon and the chosen span starts.
    private func computeMaskIndices(sequenceLength L: Int, maskProb: Double, maskLength: Int, minMasks: Int, epsilon: Double,
                                    choose: (_ population: Int, _ count: Int) -> [Int]) -> [Bool] {
        func computeNumMaskedSpan(_ inputLength: Int) -> Int {
            var n = Int(maskProb * Double(inputLength) / Double(maskLength) + epsilon)
            n = max(n, minMasks)
            if n * maskLength > L { n = L / maskLength }
            if inputLength - (maskLength - 1) < n { n = max(inputLength - (maskLength - 1), 0) }
            return n
        }
        var specAugMask = [Bool](repeating: false, count: L)
        let maxNumMaskedSpan = computeNumMaskedSpan(L)
        if maxNumMaskedSpan == 0 { return specAugMask }
        let inputLength = L
        let numMaskedSpan = computeNumMaskedSpan(inputLength)
        var idx = choose(inputLength - (maskLength - 1), numMaskedSpan)
        let dummy = idx.first ?? L - 1
        idx += [Int](repeating: dummy, count: maxNumMaskedSpan - numMaskedSpan)
        for start in idx {
            for offset in 0..<maskLength { specAugMask[min(start + offset, L - 1)] = true }
        }
        return specAugMask
    }

    func testFeatureMaskIsComputeMaskIndicesOverTheChannels() {
        let rng = Philox(seed: 7)
        for (channels, prob, length, minMasks) in [(32, 0.3, 4, 0), (48, 0.05, 10, 2), (36, 0.9, 3, 0), (16, 0.2, 16, 0), (768, 0.0025, 64, 0)] {
            for (epoch, utterance) in [(0, 0), (2, 5), (9, 1234)] {
                let mask = SpeechMasking.featureMask(channels: channels, probability: prob, length: length, minMasks: minMasks,
                                                     rng: rng, epoch: epoch, utterance: utterance)
                // The same two draws, made by hand: epsilon, then np.random.choice without replacement as a
                // partial Fisher–Yates shuffle over the possible starts, both on the feature stream.
                let base = UInt64(utterance) << 24, stream = SpeechMasking.featureStream
                let epsilon = Double(rng.uniform(stream: stream, step: UInt64(epoch), index: base))
                let expected = computeMaskIndices(sequenceLength: channels, maskProb: prob, maskLength: length, minMasks: minMasks,
                                                  epsilon: epsilon) { population, count in
                    var starts = Array(0..<population)
                    for k in 0..<count {
                        starts.swapAt(k, k + rng.below(population - k, stream: stream, step: UInt64(epoch), index: base + 1 + UInt64(k)))
                    }
                    return Array(starts.prefix(count))
                }
                XCTAssertEqual(mask, expected, "channels \(channels) prob \(prob) length \(length) epoch \(epoch) utterance \(utterance)")
            }
        }
        // A fixed draw, written out: 32 channels, spans of 4 at 0.3, seed 7, epoch 2, utterance 5.
        let fixed = SpeechMasking.featureMask(channels: 32, probability: 0.3, length: 4, minMasks: 0, rng: rng, epoch: 2, utterance: 5)
        // ⌊0.3 · 32 / 4 + epsilon⌋ = 3 spans here (epsilon ≥ 0.6), none overlapping.
        XCTAssertEqual(fixed.enumerated().filter(\.element).map(\.offset), [2, 3, 4, 5, 15, 16, 17, 18, 26, 27, 28, 29])
    }

    func testFeatureMaskIsDeterministicAndIndependentOfTheTimeMask() {
        let rng = Philox(seed: 3)
        func draw(_ epoch: Int, _ utterance: Int, seed: UInt64 = 3) -> [Bool] {
            SpeechMasking.featureMask(channels: 256, probability: 0.2, length: 10, minMasks: 0, rng: Philox(seed: seed),
                                      epoch: epoch, utterance: utterance)
        }
        XCTAssertEqual(draw(1, 17), draw(1, 17))
        XCTAssertNotEqual(draw(1, 17), draw(2, 17))
        XCTAssertNotEqual(draw(1, 17), draw(1, 18))
        XCTAssertNotEqual(draw(1, 17), draw(1, 17, seed: 4))
        // Its own stream: the time mask of the same (seed, epoch, utterance) and shape differs.
        XCTAssertNotEqual(draw(1, 17), SpeechMasking.timeMask(frames: 256, probability: 0.2, length: 10, minMasks: 0, rng: rng,
                                                               epoch: 1, utterance: 17))
        // Statistics over many utterances: ⌊0.2 · 256 / 10 + u⌋ spans (5.12 on average), so 51.2 channels before
        // overlaps merge; every run of masked channels at least a span long.
        var masked = 0, spans = 0
        let n = 4000
        for utterance in 0..<n {
            let mask = draw(0, utterance)
            masked += mask.filter { $0 }.count
            let u = Double(rng.uniform(stream: SpeechMasking.featureStream, step: 0, index: UInt64(utterance) << 24))
            spans += Int(0.2 * 256 / 10 + u)
            var run = 0
            for m in mask + [false] {
                if m { run += 1 } else { XCTAssertTrue(run == 0 || run >= 10); run = 0 }
            }
        }
        let meanSpans = Double(spans) / Double(n), fraction = Double(masked) / Double(n * 256)
        XCTAssertEqual(meanSpans, 5.12, accuracy: 0.03)
        XCTAssertLessThanOrEqual(fraction, 0.2 + 0.003)
        XCTAssertGreaterThan(fraction, 0.16, "overlapping spans merge, but most do not overlap")
        // min_masks and a span as long as the axis.
        XCTAssertEqual(SpeechMasking.featureMask(channels: 40, probability: 0.0001, length: 10, minMasks: 2, rng: rng, epoch: 0,
                                                 utterance: 3).filter { $0 }.count >= 10, true)
        XCTAssertEqual(SpeechMasking.featureMask(channels: 8, probability: 0.5, length: 8, minMasks: 1, rng: rng, epoch: 0, utterance: 3),
                       [Bool](repeating: true, count: 8))
        XCTAssertEqual(SpeechMasking.featureMask(channels: 8, probability: 0.5, length: 9, minMasks: 0, rng: rng, epoch: 0, utterance: 3),
                       [Bool](repeating: false, count: 8))
    }

    func testNegativesComeFromOtherMaskedFramesOfTheUtterance() {
        let mask = (0..<30).map { $0 % 3 == 0 }
        let K = 7
        let out = UnsafeMutablePointer<Int32>.allocate(capacity: 30 * K)
        defer { out.deallocate() }
        SpeechMasking.negatives(mask: mask, K: K, offset: 60, rng: Philox(seed: 1), epoch: 0, utterance: 4, into: out)
        for t in 0..<30 {
            for k in 0..<K {
                let j = Int(out[t * K + k]) - 60
                if mask[t] { XCTAssertTrue(mask[j] && j != t, "frame \(t) distractor \(j)") } else { XCTAssertEqual(j, t) }
            }
        }
    }
}
