import XCTest
import TandemData

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
