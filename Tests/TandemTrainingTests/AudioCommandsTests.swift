import Foundation
import XCTest
import TandemData
import TandemTestSupport
@testable import TandemTraining

final class AudioCommandsTests: XCTestCase {
    func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "tandem-audio-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func testReadsTabSeparatedAndSphinxTranscripts() throws {
        let dir = try temporaryDirectory()
        try "<s> he was not an ill disposed young man </s> (ss-0880)\n\nten of clubs (001)\n"
            .write(toFile: dir + "/a.transcription", atomically: true, encoding: .utf8)
        try "u7\tSome Text, cased.\n".write(toFile: dir + "/b.tsv", atomically: true, encoding: .utf8)
        let texts = try AudioCommands.readTranscripts([dir + "/a.transcription", dir + "/b.tsv"])
        XCTAssertEqual(texts, ["ss-0880": "he was not an ill disposed young man", "001": "ten of clubs", "u7": "Some Text, cased."])
        try "fine\tline\nno id here\n".write(toFile: dir + "/bad.tsv", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try AudioCommands.readTranscripts([dir + "/bad.tsv"])) { error in
            XCTAssertEqual("\(error)", dir + "/bad.tsv: line 2: neither 'ID<TAB>TEXT' nor 'TEXT (ID)'")
        }
    }

    /// prepare end to end on WAVs at 8 and 22.05 kHz (one stereo): every utterance comes out at 16 kHz,
    /// normalised, in input order with its transcript; a file without a transcript is skipped.
    func testPreparesResampledNormalisedShards() throws {
        let dir = try temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/in", withIntermediateDirectories: true)
        let tone = (0..<8000).map { 0.3 * Float(sin(2 * Double.pi * 300 * Double($0) / 8000)) }
        try writeWAV(dir + "/in/a.wav", samples: [tone], rate: 8000)
        let long = (0..<11025).map { 0.2 * Float(sin(2 * Double.pi * 500 * Double($0) / 22050)) }
        try writeWAV(dir + "/in/b.wav", samples: [long, long.map { -$0 * 0.5 }], rate: 22050)
        try writeWAV(dir + "/in/c.wav", samples: [tone], rate: 8000)
        try "a\tfirst one\nb\tsecond one\n".write(toFile: dir + "/t.tsv", atomically: true, encoding: .utf8)
        var lines: [String] = []
        let manifest = try AudioCommands.prepare(inputs: [dir + "/in"], out: dir + "/out", transcripts: [dir + "/t.tsv"],
                                                 shardSeconds: 3600, threads: 2, log: { lines.append($0) })
        XCTAssertEqual(manifest.utterances, 2)
        XCTAssertEqual(manifest.skipped.map(\.reason), ["no transcript for utterance id c"])
        let shards = try AudioShards(directory: dir + "/out")
        XCTAssertEqual((0..<2).map(shards.length), [16000, 8000])
        XCTAssertEqual((0..<2).map(shards.transcript), ["first one", "second one"])
        for i in 0..<2 {
            let x = Array(shards.samples(i)).map(Double.init)
            let mean = x.reduce(0, +) / Double(x.count)
            let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
            XCTAssertEqual(mean, 0, accuracy: 1e-5)
            XCTAssertEqual(variance, 1, accuracy: 1e-4)
        }
        XCTAssertTrue(lines.last?.contains("s of audio per second per core") ?? false, "\(lines)")
    }
}
