import XCTest
import TandemAutograd
import TandemKernels
import TandemModels
import TandemNN
import TandemTestSupport

/// Greedy decoding and beam search against the teacher-forced graph: the scores and attention they report
/// are the model's, beam width 1 is greedy, and a wider beam never finds a worse translation than greedy.
final class Seq2SeqDecodingTests: XCTestCase {
    /// Small random models; a 9-token vocabulary makes eos likely enough that some translations finish.
    static let configs = [
        Seq2SeqConfig(rnnType: .gru, attention: .bahdanau, sourceVocabSize: 11, targetVocabSize: 9, embeddingSize: 5,
                      hiddenSize: 7, dropout: 0.3),
        Seq2SeqConfig(rnnType: .lstm, attention: .luongGeneral, sourceVocabSize: 11, targetVocabSize: 9, embeddingSize: 5,
                      hiddenSize: 6, numLayers: 2, bidirectionalEncoder: true),
        Seq2SeqConfig(rnnType: .gru, attention: .luongDot, sourceVocabSize: 11, targetVocabSize: 9, embeddingSize: 4,
                      hiddenSize: 6, bidirectionalEncoder: true),
        Seq2SeqConfig(rnnType: .lstm, attention: .none, sourceVocabSize: 11, targetVocabSize: 9, embeddingSize: 4,
                      hiddenSize: 5, numLayers: 2),
    ]
    static let sources: [[Int32]] = [[3, 4, 5], [7, 2, 9, 9, 10, 3], [6]]

    /// A model with random weights: embeddings and layers scaled up so that the distributions are not flat.
    static func model(_ config: Seq2SeqConfig, seed: UInt64) -> (Seq2SeqModel, ParameterArena) {
        let arena = ParameterArena()
        let model = Seq2SeqModel(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        for p in arena.parameters { for i in 0..<p.count { p.value[i] *= 2 } }
        return (model, arena)
    }

    /// Calls `body` with each config, its random model and a decoder, for each source.
    static func forEachCase(_ body: (Seq2SeqConfig, Seq2SeqModel, Seq2SeqDecoder, [Int32]) -> Void) {
        for (n, config) in configs.enumerated() {
            let (model, arena) = Self.model(config, seed: UInt64(n))
            defer { withExtendedLifetime(arena) {} }
            let decoder = Seq2SeqDecoder(model: model)
            for source in sources { body(config, model, decoder, source) }
        }
    }

    /// The hypothesis's log-probability and attention under the teacher-forced graph.
    static func teacherForced(_ model: Seq2SeqModel, source: [Int32], tokens: [Int32]) -> (logProbability: Double, attention: [Float]) {
        let tape = Tape()
        tape.training = false
        let S = source.count, T = tokens.count
        let graph = model.record(on: tape, batch: 1, sourceLength: S, targetLength: T)
        graph.sourceIDs.update(from: source, count: S)
        graph.decoderInputIDs.update(from: [Int32(model.config.bosTokenId)] + tokens.dropLast(), count: T)
        graph.labels.update(from: tokens, count: T)
        tape.forward()
        return (-Double(graph.loss.data[0]) * Double(T), graph.attention.map { Array($0.values) } ?? [])
    }

    func testDecodersReportTheModelsScoresAndAttention() {
        Self.forEachCase { config, model, decoder, source in
            let label = "\(config.rnnType.rawValue) \(config.attention.rawValue) source \(source)"
            let greedy = decoder.greedy(source: source, maxLength: 7)
            XCTAssertTrue(greedy.finished || greedy.tokens.count == 7, label)
            XCTAssertEqual(greedy.finished, greedy.tokens.last == Int32(config.eosTokenId), label)
            let forced = Self.teacherForced(model, source: source, tokens: greedy.tokens)
            XCTAssertEqual(greedy.logProbability, forced.logProbability, accuracy: 1e-4 * max(1, abs(forced.logProbability)), label)
            assertClose(greedy.attention, forced.attention, atol: 1e-5, rtol: 1e-4, "\(label) attention")
            XCTAssertEqual(greedy.attention.count, config.attention == .none ? 0 : greedy.tokens.count * source.count, label)
            for h in decoder.beamSearch(source: source, width: 3, lengthPenalty: 0.6, maxLength: 7) {
                let forced = Self.teacherForced(model, source: source, tokens: h.tokens)
                XCTAssertEqual(h.logProbability, forced.logProbability, accuracy: 1e-4 * max(1, abs(forced.logProbability)), label)
                assertClose(h.attention, forced.attention, atol: 1e-5, rtol: 1e-4, "\(label) beam attention")
            }
        }
    }

    func testBeamWidthOneIsGreedy() {
        Self.forEachCase { config, model, decoder, source in
            let greedy = decoder.greedy(source: source, maxLength: 7)
            let beam = decoder.beamSearch(source: source, width: 1, lengthPenalty: 0.6, maxLength: 7)
            XCTAssertEqual(beam, [greedy], "\(config.attention.rawValue) source \(source)")
        }
    }

    /// Decoding a batch of sentences padded together gives each sentence's own greedy translation.
    func testBatchedGreedyMatchesOneSentenceAtATime() {
        for (n, config) in Self.configs.enumerated() {
            let (model, arena) = Self.model(config, seed: UInt64(n))
            defer { withExtendedLifetime(arena) {} }
            let decoder = Seq2SeqDecoder(model: model)
            let batched = decoder.greedy(sources: Self.sources, maxLength: 7)
            for (source, h) in zip(Self.sources, batched) {
                let alone = decoder.greedy(source: source, maxLength: 7)
                let label = "\(config.attention.rawValue) source \(source)"
                XCTAssertEqual(h.tokens, alone.tokens, label)
                XCTAssertEqual(h.finished, alone.finished, label)
                XCTAssertEqual(h.logProbability, alone.logProbability, accuracy: 1e-5 * max(1, abs(alone.logProbability)), label)
                assertClose(h.attention, alone.attention, atol: 1e-6, rtol: 1e-5, "\(label) attention")
            }
        }
    }

    /// A wider beam scores at least as high as greedy decoding under the model, with one known exception
    /// pinned here: beam search (as Hugging Face's and fairseq's) finishes an eos extension only when it
    /// ranks among the `width` best candidates, so it can drop greedy's translation and then find only
    /// worse ones. In the luong_dot case below with width 2, greedy's [4, 3, 2] (log p -4.34) ranks third at
    /// step 3 behind [4, 4, 3] and [4, 4, 4], whose continuations end at -7.05. Any other case where a beam
    /// falls below greedy fails the test.
    func testWiderBeamsNeverScoreBelowGreedyButForKnownSearchErrors() {
        var wins = 0
        var searchErrors: [String] = []
        Self.forEachCase { config, model, decoder, source in
            let greedy = decoder.greedy(source: source, maxLength: 7)
            for width in [2, 4] {
                for alpha in [0, 0.6] {
                    let beam = decoder.beamSearch(source: source, width: width, lengthPenalty: alpha, maxLength: 7)
                    XCTAssertLessThanOrEqual(beam.count, width)
                    // Both scored by the teacher-forced graph: the same tokens get the same score.
                    func score(_ tokens: [Int32]) -> Double {
                        Self.teacherForced(model, source: source, tokens: tokens).logProbability
                            / Seq2SeqDecoder.lengthPenalty(length: tokens.count, alpha: alpha)
                    }
                    let best = score(beam[0].tokens), baseline = score(greedy.tokens)
                    if best < baseline {
                        searchErrors.append("\(config.attention.rawValue) \(source) width \(width) alpha \(alpha): "
                                            + "beam \(beam[0].tokens), greedy \(greedy.tokens)")
                    }
                    if best > baseline + 1e-6 { wins += 1 }
                }
            }
        }
        XCTAssertEqual(searchErrors, [
            "luong_dot [7, 2, 9, 9, 10, 3] width 2 alpha 0.0: beam [4, 4, 4, 3, 2], greedy [4, 3, 2]",
            "luong_dot [7, 2, 9, 9, 10, 3] width 2 alpha 0.6: beam [4, 4, 4, 3, 2], greedy [4, 3, 2]",
        ])
        // The search must matter somewhere, or the comparison above proves nothing.
        XCTAssertGreaterThan(wins, 0)
    }
}
