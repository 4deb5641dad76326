import Foundation
import XCTest
import TandemAutograd
import TandemData
import TandemModels
import TandemTestSupport
@testable import TandemTraining

final class Seq2SeqTaskTests: ScratchDirectoryTestCase {
    let sourceVocab = try! WordPieceTokenizer(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "in", "the", "beginning",
                                                       "god", "created", "heaven", "and", "earth", "light", "was", "good", "."])
    let targetVocab = try! WordPieceTokenizer(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "en", "el", "principio",
                                                       "dios", "creo", "los", "cielos", "y", "la", "tierra", "luz", "fue",
                                                       "buena", "."], normalization: .cased)
    let sources = ["in the beginning god created the heaven and the earth .", "and god saw the light .", "the light was good .",
                   "god created light", "the earth was good .", "and the heaven .", "in the beginning .", "god"]
    let targets = ["en el principio creo dios los cielos y la tierra .", "y vio dios la luz .", "la luz fue buena .",
                   "dios creo la luz", "la tierra fue buena .", "y los cielos .", "en el principio .", "dios"]

    /// The corpus above as line-aligned shards.
    func corpus(sources: [String]? = nil, targets: [String]? = nil) throws -> ParallelDataset {
        let dir = scratch.path
        func side(_ name: String, _ lines: [String], _ vocab: WordPieceTokenizer) throws -> String {
            let path = "\(dir)/\(name)"
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            try? FileManager.default.removeItem(atPath: path + "-shards")
            _ = try prepareText(vocab: vocab, out: path + "-shards", inputs: TextShardJob.plan(inputs: [path]), lineAligned: true,
                                log: { _ in })
            return path + "-shards"
        }
        return try ParallelDataset(sourceDirectory: side("train.src", sources ?? self.sources, sourceVocab), sourceVocab: sourceVocab,
                                   targetDirectory: side("train.tgt", targets ?? self.targets, targetVocab), targetVocab: targetVocab)
    }

    func task(_ attention: Seq2SeqConfig.Attention = .bahdanau, maxSource: Int = 20, maxTarget: Int = 20, globalBatch: Int = 4,
              eval: Bool = false) throws -> Seq2SeqTask {
        let c = Seq2SeqConfig(rnnType: .gru, attention: attention, sourceVocabSize: sourceVocab.vocabSize,
                              targetVocabSize: targetVocab.vocabSize, embeddingSize: 5, hiddenSize: 7, numLayers: 1,
                              dropout: 0, sourcePadTokenId: 0, targetPadTokenId: 0, bosTokenId: 2, eosTokenId: 3)
        let data = try corpus()
        return try Seq2SeqTask(config: c, train: data, eval: eval ? data : nil, sourceVocab: sourceVocab, targetVocab: targetVocab,
                               vocabFiles: ("", ""), maxSource: maxSource, maxTarget: maxTarget, globalBatch: globalBatch, seed: 3)
    }

    /// Records the graph `indices` need on `tape` (reset first) and fills it.
    func prepare(_ task: Seq2SeqTask, _ tape: Tape, _ indices: [Int]) -> Tensor {
        let shape = indices.withUnsafeBufferPointer { task.graphShape(samples: $0, evaluation: false) }
        XCTAssertNotNil(shape)
        tape.reset()
        let loss = task.record(on: tape, microBatch: indices.count)
        tape.seal()
        indices.withUnsafeBufferPointer { task.fill(samples: $0, epoch: 0, microBatchIndex: 0) }
        return loss
    }

    /// A slot holds the source then [SEP] (its length counts it), the decoder reads bos then the target,
    /// the labels are the target then eos, -100 after; the graph is as long as the longest pair (+ 1).
    func testPairsFillTheGraphOfTheirOwnShape() throws {
        let task = try self.task()
        XCTAssertEqual(task.sampleCount, 8)
        let shape = [1, 7].withUnsafeBufferPointer { task.graphShape(samples: $0, evaluation: false) }
        XCTAssertEqual(shape, [7, 7])  // "and god saw the light ." is 6 tokens ([UNK] for saw) + [SEP]; its target 6 + eos
        let tape = Tape()
        _ = prepare(task, tape, [1, 7])
        let g = try XCTUnwrap(task.graph)
        XCTAssertEqual(g.sourceLength, 7)
        XCTAssertEqual(g.targetLength, 7)
        let source = sourceVocab.encode(sources[1]), target = targetVocab.encode(targets[1])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.sourceIDs, count: 7)), source + [3])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.sourceIDs + 7, count: 7)), [8, 3, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.sourceLengths, count: 2)), [7, 2])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.decoderInputIDs, count: 7)), [2] + target)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.labels, count: 7)), target + [3])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.decoderInputIDs + 7, count: 7)), [2, 8, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.labels + 7, count: 7)), [8, 3, -100, -100, -100, -100, -100])
        tape.forward()
        XCTAssertTrue(g.loss.data[0].isFinite)
    }

    /// Re-recording the tape for other shapes and back gives the first graph's loss and gradients bit for
    /// bit: nothing of an earlier graph leaks into a later one through the rewound arenas.
    func testRerecordingIsExact() throws {
        for attention in Seq2SeqConfig.Attention.allCases {
            let task = try self.task(attention)
            let tape = Tape()
            func run(_ indices: [Int]) -> (Float, [Float]) {
                let loss = prepare(task, tape, indices)
                task.arena.zeroGrads()
                tape.forward()
                tape.backward(from: loss)
                return (loss.data[0], Array(task.arena.grads))
            }
            let first = run([0, 2, 5])
            _ = run([7, 3, 1])
            _ = run([0, 1, 2, 3, 4, 5, 6, 7])
            let again = run([0, 2, 5])
            XCTAssertEqual(first.0.bitPattern, again.0.bitPattern, "\(attention)")
            XCTAssertEqual(first.1, again.1, "\(attention)")
        }
    }

    /// Pairs over the length limits are skipped and counted; too few left for a global batch is an error.
    func testLongPairsAreSkipped() throws {
        let task = try self.task(maxSource: 6, maxTarget: 6)
        XCTAssertEqual(task.pairs, [2, 3, 4, 5, 6, 7])
        XCTAssertEqual(task.skipped.train, 2)
        XCTAssertTrue(task.modelDescription.contains("pairs=6 (skipped 2 over 6/6 tokens)"), task.modelDescription)
        XCTAssertThrowsError(try self.task(maxSource: 3, maxTarget: 3, globalBatch: 4)) {
            XCTAssertTrue("\($0)".contains("1 of 8 pairs fit data.seq_len 3 and data.target_seq_len 3, fewer than one global batch of 4"), "\($0)")
        }
    }

    /// Evaluation: a padding slot (-1) adds nothing; the statistics are loss, tokens and BLEU's.
    func testEvaluationCountsOnlyRealPairs() throws {
        let task = try self.task(eval: true)
        XCTAssertEqual(task.evalSampleCount, 8)
        XCTAssertEqual(task.evalStatisticsCount, 12)
        let tape = Tape()
        tape.training = false
        func evaluate(_ indices: [Int]) -> [Double] {
            indices.withUnsafeBufferPointer { _ = task.graphShape(samples: $0, evaluation: true) }
            tape.reset()
            _ = task.record(on: tape, microBatch: indices.count)
            tape.seal()
            indices.withUnsafeBufferPointer { task.fill(evalSamples: $0) }
            tape.forward()
            var s = [Double](repeating: 0, count: 12)
            task.accumulateEvalStatistics(into: &s)
            return s
        }
        // One block of the evaluation order: all 8 pairs by source length, so eval sample 0 is the
        // shortest pair ("god" -> "dios": 1 target token and eos).
        XCTAssertEqual(task.evalPairs.first, 7)
        XCTAssertEqual(Set(task.evalPairs), Set(0..<8))
        let padded = evaluate([0, -1]), alone = evaluate([0])
        XCTAssertEqual(padded[1], 2)
        XCTAssertEqual(alone[1], 2)
        XCTAssertEqual(padded[0], alone[0], accuracy: 1e-5)
        XCTAssertEqual(Array(padded[2...]), Array(alone[2...]))
        let metrics = Dictionary(uniqueKeysWithValues: task.describeEval(padded))
        XCTAssertEqual(metrics["eval_perplexity"]!, exp(metrics["eval_loss"]!), accuracy: 1e-9)
        XCTAssertTrue((0...100).contains(metrics["eval_bleu"]!))
    }

    /// A partial evaluation samples every length: the first 256 of 1,000 pairs of lengths 1...1000 span
    /// them, each block of 256 is sorted, and the order is a permutation.
    func testEvaluationOrderSpreadsLengths() {
        let lengths = Array(1...1000)
        let order = Seq2SeqTask.evaluationOrder(Array(0..<1000), lengths: lengths)
        XCTAssertEqual(order.sorted(), Array(0..<1000))
        let first = order.prefix(256).map { lengths[$0] }
        XCTAssertEqual(first, first.sorted())
        XCTAssertLessThan(first.first!, 50)
        XCTAssertGreaterThan(first.last!, 950)
    }

    /// The family reads both sides from the config and names the missing key.
    func testFamilyNeedsBothSides() throws {
        let data = try corpus()
        try sourceVocab.tokens.joined(separator: "\n").write(toFile: scratch.path + "/src.txt", atomically: true, encoding: .utf8)
        try targetVocab.tokens.joined(separator: "\n").write(toFile: scratch.path + "/tgt.txt", atomically: true, encoding: .utf8)
        let base = """
        model: {preset: seq2seq-gru-bahdanau, hidden_size: 8, embedding_size: 4}
        data: {train: \(data.source.directory), vocab: \(scratch.path)/src.txt, target_vocab: \(scratch.path)/tgt.txt, target_cased: true}
        train: {steps: 2, global_batch: 4, micro_batch: 2, lr: 1.0e-3}
        """
        func make(_ overrides: [String]) throws -> TrainingTask {
            let config = try TrainingConfig(yaml: base, file: "s2s.yaml", overrides: overrides)
            return try ModelFamilies.makeTask(config, settings: RunSettings(config, worldSize: 1), initFrom: nil)
        }
        XCTAssertThrowsError(try make([])) {
            XCTAssertTrue("\($0)".contains("data.train_target is required with data.train"), "\($0)")
        }
        let task = try XCTUnwrap(make(["data.train_target=\(data.target.directory)"]) as? Seq2SeqTask)
        XCTAssertEqual((task.model as! Seq2SeqModel).config.sourceVocabSize, sourceVocab.vocabSize)
        XCTAssertEqual((task.model as! Seq2SeqModel).config.targetVocabSize, targetVocab.vocabSize)
        XCTAssertEqual((task.model as! Seq2SeqModel).config.eosTokenId, 3)
        XCTAssertEqual(task.checkpointTextFiles.map(\.name), ["source_vocab.txt", "target_vocab.txt"])
        XCTAssertTrue(task.hfConfigJSON.contains("\"model_type\" : \"seq2seq\""), task.hfConfigJSON)
    }
}
