import Foundation
import XCTest
import TandemCollectives
@testable import TandemTraining

/// BERT-family checkpoints carry the vocab.txt they were trained with, and `--init-from` checks it against
/// data.vocab (continued pretraining needs the same vocabulary).
final class BertCheckpointVocabularyTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "tandem-bert-vocab-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Words of two or three syllables, enough distinct pairs for a 150-token vocabulary.
        let syllables = ["pro", "te", "in", "en", "zy", "me", "ma", "trix", "vec", "tor", "ge", "ne", "cel", "lu", "lar", "bi"]
        var state: UInt64 = 7
        func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) }
        let text = (0..<600).map { _ in
            (0..<8).map { _ in (0..<(2 + next() % 2)).map { _ in syllables[next() % syllables.count] }.joined() }.joined(separator: " ") + "."
        }
        try text.joined(separator: "\n").write(toFile: dir + "/corpus.txt", atomically: true, encoding: .utf8)
        try TextCommands.vocab(size: 150, minFrequency: 2, cased: false, out: dir + "/vocab.txt", inputs: [dir + "/corpus.txt"])
        try TextCommands.prepare(vocab: dir + "/vocab.txt", cased: false, out: dir + "/shards", inputs: [dir + "/corpus.txt"],
                                 evalFraction: 0, seed: 0, communicator: LocalCommunicator())
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func makeTask(objective: String, initFrom: String? = nil) throws -> TrainingTask {
        let yaml = """
        model: {preset: bert-tiny, num_hidden_layers: 1}
        data: {train: \(dir)/shards, vocab: \(dir)/vocab.txt, seq_len: 32}
        train: {steps: 2, global_batch: 2, micro_batch: 2, lr: 1.0e-3, objective: \(objective)}
        """
        let config = try TrainingConfig(yaml: yaml, file: "vocab.yaml", overrides: [])
        return try ModelFamilies.makeTask(config, settings: try RunSettings(config, worldSize: 1), initFrom: initFrom)
    }

    /// A checkpoint directory: the task's config.json and `vocab` as its vocab.txt (nil: none).
    private func checkpoint(_ name: String, task: TrainingTask, vocab: String?) throws -> String {
        let path = dir + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try task.hfConfigJSON.write(toFile: path + "/config.json", atomically: true, encoding: .utf8)
        try vocab?.write(toFile: path + "/vocab.txt", atomically: true, encoding: .utf8)
        return path
    }

    func testCheckpointsCarryTheirVocabTxt() throws {
        let vocab = try String(contentsOfFile: dir + "/vocab.txt", encoding: .utf8)
        for objective in ["mlm_nsp", "spanbert"] {
            let files = try makeTask(objective: objective).checkpointTextFiles
            XCTAssertEqual(files.map(\.name), ["vocab.txt"], objective)
            XCTAssertEqual(files.first?.text, vocab, objective)
        }
    }

    /// Another vocabulary in the checkpoint is one error naming both files and the first line that differs;
    /// the same vocabulary passes, and a checkpoint without vocab.txt passes with a note.
    func testInitFromChecksTheCheckpointVocabulary() throws {
        let task = try makeTask(objective: "mlm_nsp")
        let vocab = try String(contentsOfFile: dir + "/vocab.txt", encoding: .utf8)
        var lines = vocab.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertGreaterThan(lines.count, 120)
        lines[110] = "zzzdomain"
        let other = try checkpoint("other", task: task, vocab: lines.joined(separator: "\n"))
        for objective in ["mlm_nsp", "spanbert"] {
            XCTAssertThrowsError(try makeTask(objective: objective, initFrom: other)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(other + "/vocab.txt") && message.contains(self.dir + "/vocab.txt")
                              && message.contains("line 111") && message.contains("\"zzzdomain\""), message)
            }
        }
        let same = try checkpoint("same", task: task, vocab: vocab)
        XCTAssertNoThrow(try makeTask(objective: "mlm_nsp", initFrom: same))
        XCTAssertNil(CheckpointVocabulary.note(initFrom: same))
        let none = try checkpoint("none", task: task, vocab: nil)
        XCTAssertNoThrow(try makeTask(objective: "mlm_nsp", initFrom: none))
        XCTAssertNotNil(CheckpointVocabulary.note(initFrom: none))
    }
}
