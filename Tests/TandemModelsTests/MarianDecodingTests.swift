import XCTest
import TandemAutograd
import TandemKernels
import TandemModels
import TandemTestSupport

/// The Transformer's key/value-cached decoding against its teacher-forced graph: the same tokens get the
/// same log-probability, greedy picks the teacher-forced argmax, beam search of width 1 is greedy, and
/// sentences decoded together (padded sources) equal sentences decoded alone.
final class MarianDecodingTests: XCTestCase {
    static let config = MarianConfig(vocabSize: 13, dModel: 12, encoderLayers: 2, decoderLayers: 2, encoderAttentionHeads: 3,
                                     decoderAttentionHeads: 2, encoderFfnDim: 20, decoderFfnDim: 16, maxPositionEmbeddings: 16,
                                     dropout: 0.1, activationFunction: "swish", scaleEmbedding: true, initStd: 0.5,
                                     padTokenId: 0, decoderStartTokenId: 1, eosTokenId: 2)
    static let sources: [[Int32]] = [[7, 2], [5, 9, 9, 10, 3, 2], [12, 4, 2]]

    static func model(seed: UInt64) -> (MarianMT, ParameterArena) {
        let arena = ParameterArena()
        let model = MarianMT(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        // Random biases, LayerNorms and final_logits_bias too, so that every term matters.
        for p in model.parameters where !p.name.hasSuffix(".weight") || p.name.contains("layer_norm") {
            for i in 0..<p.count { p.value[i] += Philox(seed: seed).normal(stream: 9, step: UInt64(p.index), index: UInt64(i)) * 0.3 }
        }
        return (model, arena)
    }

    /// Σ log p(tokens | source) under the teacher-forced graph, and the argmax of each row.
    static func teacherForced(_ model: MarianMT, source: [Int32], tokens: [Int32]) -> (logProbability: Double, argmax: [Int32]) {
        let tape = Tape()
        tape.training = false
        let S = source.count, T = tokens.count, V = config.vocabSize
        let graph = model.record(on: tape, batch: 1, sourceLength: S, targetLength: T)
        graph.sourceIDs.update(from: source, count: S)
        graph.decoderInputIDs.update(from: [model.decoderStartID] + tokens.dropLast(), count: T)
        graph.labels.update(from: tokens, count: T)
        tape.forward()
        let argmax = (0..<T).map { t -> Int32 in
            let row = graph.logits.data + t * V
            return Int32((0..<V).max { row[$0] < row[$1] }!)
        }
        return (-Double(graph.loss.data[0]) * Double(T), argmax)
    }

    func testCachedDecodingScoresAsTheTeacherForcedGraph() {
        var lengths: [Int] = []
        defer { XCTAssertTrue(lengths.contains { $0 >= 4 }, "every translation is short (\(lengths)): the test checks little of the cache") }
        for seed: UInt64 in [1, 2] {
            let (model, arena) = Self.model(seed: seed)
            defer { withExtendedLifetime(arena) {} }
            let decoder = Seq2SeqDecoder(model: model)
            for source in Self.sources {
                let label = "seed \(seed) source \(source)"
                let greedy = decoder.greedy(source: source, maxLength: 9)
                lengths.append(greedy.tokens.count)
                XCTAssertTrue(greedy.finished || greedy.tokens.count == 9, label)
                let forced = Self.teacherForced(model, source: source, tokens: greedy.tokens)
                XCTAssertEqual(greedy.tokens, forced.argmax, label)
                XCTAssertEqual(greedy.logProbability, forced.logProbability, accuracy: 1e-4 * max(1, abs(forced.logProbability)), label)
                XCTAssertEqual(decoder.beamSearch(source: source, width: 1, maxLength: 9), [greedy], label)
                for h in decoder.beamSearch(source: source, width: 3, lengthPenalty: 0.6, maxLength: 9) {
                    let forced = Self.teacherForced(model, source: source, tokens: h.tokens)
                    XCTAssertEqual(h.logProbability, forced.logProbability, accuracy: 1e-4 * max(1, abs(forced.logProbability)), label)
                }
            }
            for (source, h) in zip(Self.sources, decoder.greedy(sources: Self.sources, maxLength: 9)) {
                let alone = decoder.greedy(source: source, maxLength: 9)
                XCTAssertEqual(h.tokens, alone.tokens, "batched, source \(source)")
                XCTAssertEqual(h.logProbability, alone.logProbability, accuracy: 1e-5 * max(1, abs(alone.logProbability)))
            }
        }
    }

    /// A limit past the position table stops at the table's end instead of running out of cache.
    func testLengthStopsAtMaxPositions() {
        let (model, arena) = Self.model(seed: 1)
        defer { withExtendedLifetime(arena) {} }
        let decoder = Seq2SeqDecoder(model: model)
        XCTAssertLessThanOrEqual(decoder.greedy(source: Self.sources[1], maxLength: 100).tokens.count, Self.config.maxPositionEmbeddings)
        for h in decoder.beamSearch(source: Self.sources[1], width: 2, maxLength: 100) {
            XCTAssertLessThanOrEqual(h.tokens.count, Self.config.maxPositionEmbeddings)
        }
    }
}
