import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemModels
import TandemTestSupport
@testable import TandemTraining

/// The marian family: one joint vocabulary for both sides, its special ids in the config, the
/// translation task's graph filled from a parallel corpus, HF's config.json, and the errors it names.
final class MarianTaskTests: ScratchDirectoryTestCase {
    let vocab = try! WordPieceTokenizer(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "in", "the", "beginning", "god",
                                                 "created", "light", "was", "good", ".", "en", "el", "principio", "dios", "creo",
                                                 "la", "luz", "fue", "buena"], normalization: .cased)
    let sources = ["in the beginning god created light .", "the light was good .", "god created light", "god"]
    let targets = ["en el principio dios creo la luz .", "la luz fue buena .", "dios creo la luz", "dios"]

    /// The corpus as line-aligned shards and the joint vocab.txt; returns the config's YAML.
    func setUpCorpus() throws -> String {
        let dir = scratch.path
        try vocab.tokens.joined(separator: "\n").write(toFile: dir + "/vocab.txt", atomically: true, encoding: .utf8)
        for (name, lines) in [("train.src", sources), ("train.tgt", targets)] {
            try (lines.joined(separator: "\n") + "\n").write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
            _ = try prepareText(vocab: vocab, out: "\(dir)/\(name)-shards", inputs: TextShardJob.plan(inputs: ["\(dir)/\(name)"]),
                                lineAligned: true, log: { _ in })
        }
        return """
        model: {preset: transformer-tiny, d_model: 8, encoder_attention_heads: 2, decoder_attention_heads: 2, encoder_ffn_dim: 12, decoder_ffn_dim: 12, dropout: 0}
        data: {train: \(dir)/train.src-shards, train_target: \(dir)/train.tgt-shards, eval: \(dir)/train.src-shards, eval_target: \(dir)/train.tgt-shards, vocab: \(dir)/vocab.txt, cased: true, seq_len: 12, target_seq_len: 12}
        train: {steps: 2, global_batch: 4, micro_batch: 2, lr: 1.0e-3, label_smoothing: 0.1}
        """
    }

    func make(_ yaml: String, _ overrides: [String] = []) throws -> TrainingTask {
        let config = try TrainingConfig(yaml: yaml, file: "marian.yaml", overrides: overrides)
        return try ModelFamilies.makeTask(config, settings: RunSettings(config, worldSize: 1), initFrom: nil)
    }

    func testTaskTrainsTheTransformerOnThePairs() throws {
        let yaml = try setUpCorpus()
        let task = try XCTUnwrap(make(yaml) as? Seq2SeqTask)
        let model = try XCTUnwrap(task.model as? MarianMT)
        XCTAssertEqual(model.config.vocabSize, vocab.vocabSize)
        XCTAssertEqual([model.config.padTokenId, model.config.decoderStartTokenId, model.config.eosTokenId], [0, 2, 3])
        XCTAssertEqual(model.config.activationFunction, "swish")
        XCTAssertTrue(task.hfConfigJSON.contains("\"MarianMTModel\""), task.hfConfigJSON)
        XCTAssertTrue(task.modelDescription.contains("label_smoothing=0.1"), task.modelDescription)
        XCTAssertEqual(task.checkpointTensors.first?.0, "model.shared.weight")

        // One micro-batch: the longest pair's shape, source + [SEP], decoder [CLS] + target, labels target + [SEP].
        let indices = [0, 3]
        let shape = indices.withUnsafeBufferPointer { task.graphShape(samples: $0, evaluation: false) }
        let tape = Tape()
        tape.training = false
        let loss = task.record(on: tape, microBatch: 2)
        indices.withUnsafeBufferPointer { task.fill(samples: $0, epoch: 0, microBatchIndex: 0) }
        let graph = try XCTUnwrap(task.graph)
        XCTAssertEqual(shape, [graph.sourceLength, graph.targetLength])
        let first = task.train.pair(task.pairs[0])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: graph.sourceIDs, count: first.source.count + 1)), Array(first.source) + [3])
        XCTAssertEqual(graph.decoderInputIDs[0], 2)
        XCTAssertEqual(graph.labels[first.target.count], 3)
        task.arena.zeroGrads()
        tape.forward()
        tape.backward(from: loss)
        XCTAssertTrue(loss.data[0].isFinite && loss.data[0] > 0)
        XCTAssertEqual(model.finalLogitsBias.grads.reduce(0) { $0 + abs($1) }, 0, "final_logits_bias is a buffer: no gradient")
        XCTAssertGreaterThan(model.shared.weight.grads.reduce(0) { $0 + abs($1) }, 0)

        // Evaluation: teacher-forced loss and greedy BLEU through the key/value-cached decoder.
        let eval = [0, 1, 2, -1]
        _ = eval.withUnsafeBufferPointer { task.graphShape(samples: $0, evaluation: true) }
        tape.reset()
        _ = task.record(on: tape, microBatch: 4)
        eval.withUnsafeBufferPointer { task.fill(evalSamples: $0) }
        tape.forward()
        var sums = [Double](repeating: 0, count: task.evalStatisticsCount)
        task.accumulateEvalStatistics(into: &sums)
        let metrics = Dictionary(uniqueKeysWithValues: task.describeEval(sums))
        XCTAssertEqual(sums[1], Double(task.evalPairs.prefix(3).map { task.train.targetLengths[$0] + 1 }.reduce(0, +)))
        XCTAssertNotNil(metrics["eval_bleu"])
    }

    func testErrorsNameTheKey() throws {
        let yaml = try setUpCorpus()
        try "[PAD]\n[UNK]\n[CLS]\n[SEP]\n".write(toFile: scratch.path + "/other.txt", atomically: true, encoding: .utf8)
        for (overrides, expected) in [
            (["data.target_vocab=\(scratch.path)/other.txt"], "data.target_vocab"),
            (["data.seq_len=600"], "data.seq_len = 600 exceeds model.max_position_embeddings"),
            (["model.activation_function=tanh"], "activation_function"),
            (["model.vocab_size=10"], "model.vocab_size = 10 is smaller"),
            (["model.hidden_size=10"], "unknown model field model.hidden_size"),
        ] {
            XCTAssertThrowsError(try make(yaml, overrides), "\(overrides)") {
                XCTAssertTrue("\($0)".contains(expected), "\($0) does not contain \(expected)")
            }
        }
    }

    /// --init-from a directory transformers wrote (the parity fixture's save_pretrained output): its
    /// config.json is the architecture, its weights load with nothing kept at init or ignored.
    func testInitFromATransformersDirectory() throws {
        let yaml = try setUpCorpus().replacingOccurrences(of: #"model: {preset: transformer-tiny, d_model: 8, encoder_attention_heads: 2, decoder_attention_heads: 2, encoder_ffn_dim: 12, decoder_ffn_dim: 12, dropout: 0}"#,
                                                          with: "model: {dropout: 0}")
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TandemModelsTests/Fixtures/marian/marian-relu").path
        let config = try TrainingConfig(yaml: yaml, file: "marian.yaml", overrides: [])
        let task = try XCTUnwrap(try ModelFamilies.makeTask(config, settings: RunSettings(config, worldSize: 1), initFrom: fixture)
                                 as? Seq2SeqTask)
        var logs: [String] = []
        try task.loadPretrained(directory: fixture) { logs.append($0) }
        XCTAssertEqual(logs, [])
        let model = try XCTUnwrap(task.model as? MarianMT)
        XCTAssertEqual([model.config.dModel, model.config.vocabSize, model.config.encoderLayers], [15, 29, 1])
        XCTAssertEqual(model.config.activationFunction, "relu")
        let weights = try SafeTensorsFile(path: fixture + "/model.safetensors")
        XCTAssertEqual(Array(model.shared.weight.values), try weights.floats("model.shared.weight"))
        XCTAssertEqual(Array(model.finalLogitsBias.values), try weights.floats("final_logits_bias"))
    }
}
