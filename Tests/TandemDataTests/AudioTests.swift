import Foundation
import XCTest
@testable import TandemData
import TandemTestSupport

func sine(_ hz: Double, rate: Int, seconds: Double, amplitude: Float = 0.5) -> [Float] {
    (0..<Int(Double(rate) * seconds)).map { amplitude * Float(sin(2 * .pi * hz * Double($0) / Double(rate))) }
}

final class AudioTests: XCTestCase {
    func testReadsPCMAndAveragesChannels() throws {
        let dir = try Fixtures.temporaryDirectory()
        let left = sine(300, rate: 8000, seconds: 0.5), right = sine(700, rate: 8000, seconds: 0.5, amplitude: 0.25)
        try writeWAV(dir + "/stereo.wav", samples: [left, right], rate: 8000)
        let (mono, rate) = try Audio.read(dir + "/stereo.wav")
        XCTAssertEqual(rate, 8000)
        XCTAssertEqual(mono.count, 4000)
        // 16-bit quantisation: each channel within 1/32767 of the original.
        for i in 0..<mono.count { XCTAssertEqual(mono[i], (left[i] + right[i]) / 2, accuracy: 2e-4) }
    }

    func testResamplesToSixteenKilohertzKeepingTheTone() throws {
        let tone = sine(440, rate: 8000, seconds: 1)
        let out = try Audio.resample(tone, from: 8000)
        XCTAssertEqual(out.count, 16000)
        // Away from the edges (the sinc filter's delay line starts and ends in silence) the tone is the
        // same tone sampled at 16 kHz.
        let reference = sine(440, rate: 16000, seconds: 1)
        var worst: Float = 0
        for i in 800..<15200 { worst = max(worst, abs(out[i] - reference[i])) }
        XCTAssertLessThan(worst, 5e-3)
        XCTAssertEqual(try Audio.resample(tone, from: 16000), tone)
        XCTAssertEqual(try Audio.resample(sine(440, rate: 22050, seconds: 0.5), from: 22050).count, 8000)
    }

    func testNormalizesAsTheFeatureExtractor() {
        var x: [Float] = (0..<1001).map { Float($0 % 17) * 0.01 - 0.03 + Float($0) * 1e-4 }
        let original = x
        Audio.normalize(&x)
        // numpy: (x - x.mean()) / np.sqrt(x.var() + 1e-7), here in Double.
        let mean = original.map(Double.init).reduce(0, +) / Double(original.count)
        let variance = original.map { (Double($0) - mean) * (Double($0) - mean) }.reduce(0, +) / Double(original.count)
        for i in x.indices {
            XCTAssertEqual(Double(x[i]), (Double(original[i]) - mean) / (variance + 1e-7).squareRoot(), accuracy: 1e-6)
        }
        var silence = [Float](repeating: 0, count: 10)
        Audio.normalize(&silence)
        XCTAssertEqual(silence, [Float](repeating: 0, count: 10), "silence stays silence (the 1e-7 guards the division)")
    }

    func testBadFilesGetAnErrorNamingThem() throws {
        let dir = try Fixtures.temporaryDirectory()
        try "not audio at all\n".write(toFile: dir + "/text.wav", atomically: true, encoding: .utf8)
        try writeWAV(dir + "/short.wav", samples: [sine(200, rate: 16000, seconds: 1)], rate: 16000, dataFrames: 4000)
        try writeWAV(dir + "/zero.wav", samples: [sine(200, rate: 16000, seconds: 0.1)], rate: 0)
        for (name, expected) in [("text.wav", "not readable as audio"),
                                 ("short.wav", "truncated: its header announces 32000 bytes of audio, the file holds 8000"),
                                 ("zero.wav", "sample rate 0 in its WAV header")] {
            XCTAssertThrowsError(try Audio.read(dir + "/" + name), name) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix(dir + "/" + name + ": "), text)
                if !expected.isEmpty { XCTAssertTrue(text.contains(expected), text) }
            }
        }
    }

    func testShardsRoundTripWithTranscriptsPaddingAndChecksums() throws {
        let dir = try Fixtures.temporaryDirectory()
        let utterances: [[Float]] = [(0..<1000).map { Float($0) }, [1, 2, 3], (0..<50).map { -Float($0) }]
        // Shards of at most 1010 samples: the third utterance does not fit beside the first two.
        let writer = try AudioShardWriter(directory: dir + "/shards", shardSamples: 1010, withTranscripts: true)
        for (i, u) in utterances.enumerated() {
            try writer.append(u, transcript: "utterance\n number  \(i) ", id: "u\(i)", source: "/x/u\(i).wav")
        }
        let manifest = try writer.finish(skipped: [.init(path: "/x/bad.wav", reason: "truncated")], resampler: "test")
        XCTAssertEqual(manifest.shards.map(\.utterances), [2, 1])
        XCTAssertEqual(manifest.skipped, [.init(path: "/x/bad.wav", reason: "truncated")])
        let shards = try AudioShards(directory: dir + "/shards")
        try shards.verifyChecksums()
        XCTAssertEqual(shards.count, 3)
        for (i, u) in utterances.enumerated() {
            XCTAssertEqual(Array(shards.samples(i)), u)
            XCTAssertEqual(shards.length(i), u.count)
            XCTAssertEqual(shards.transcript(i), "utterance number \(i)")
        }
        let (values, mask, t) = shards.batch([1, 2], maxSamples: 40)
        XCTAssertEqual(t, 40)
        XCTAssertEqual(Array(values[0..<4]), [1, 2, 3, 0])
        XCTAssertEqual(Array(mask[0..<4]), [1, 1, 1, 0])
        XCTAssertEqual(mask[3..<40].reduce(0, +), 0)
        XCTAssertEqual(Array(values[40..<80]), (0..<40).map { -Float($0) })
        XCTAssertEqual(mask[40..<80].reduce(0, +), 40)

        // A flipped byte fails the checksum; a cut .bin fails the open, each naming the file.
        let bin = dir + "/shards/audio-00001.bin"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: bin))
        bytes[5] ^= 1
        try bytes.write(to: URL(fileURLWithPath: bin))
        XCTAssertThrowsError(try shards.verifyChecksums()) { XCTAssertTrue("\($0)".hasPrefix(bin + ": SHA-256"), "\($0)") }
        try bytes.prefix(bytes.count - 4).write(to: URL(fileURLWithPath: bin))
        XCTAssertThrowsError(try AudioShards(directory: dir + "/shards")) { XCTAssertTrue("\($0)".hasPrefix(bin + ":"), "\($0)") }
        XCTAssertThrowsError(try AudioShards(directory: dir)) { XCTAssertTrue("\($0)".contains("run tandem prepare-audio"), "\($0)") }
    }

    func testLengthGroupedOrderIsAPermutationSortedWithinMegaBatches() {
        let lengths = (0..<1000).map { ($0 * 7919) % 613 + 1 }
        let order = AudioShards.lengthGroupedOrder(lengths: lengths, batchSize: 4, seed: 3)
        XCTAssertEqual(order.sorted(), Array(0..<1000))
        XCTAssertEqual(lengths[order[0]], lengths.max())
        // Mega-batches of 50 x 4 sorted longest first, but for their heads (the longest one's head was
        // swapped with the first mega-batch's).
        for start in stride(from: 0, to: 1000, by: 200) {
            let lens = order[(start + 1)..<min(1000, start + 200)].map { lengths[$0] }
            XCTAssertEqual(lens, lens.sorted(by: >))
        }
        XCTAssertNotEqual(order, AudioShards.lengthGroupedOrder(lengths: lengths, batchSize: 4, seed: 3, epoch: 1))
        XCTAssertEqual(order, AudioShards.lengthGroupedOrder(lengths: lengths, batchSize: 4, seed: 3))
    }
}
