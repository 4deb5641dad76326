import Foundation
import XCTest
import TandemAutograd
import TandemData
import TandemKernels
import TandemModels
@testable import TandemTraining

/// A token stream held in memory.
final class ArrayTokens: TokenSource {
    let tokens: [Int32]
    init(_ tokens: [Int32]) { self.tokens = tokens }
    var count: Int { tokens.count }
    var vocabSize: Int { Int(tokens.max()!) + 1 }
    var origin: String { "memory" }
    func copy(from start: Int, count n: Int, into out: UnsafeMutablePointer<Int32>) {
        for i in 0..<n { out[i] = tokens[start + i] }
    }
}

final class RNNLanguageModelTaskTests: XCTestCase {
    let source = ArrayTokens((0..<1000).map { Int32(($0 * 7919 + $0 / 13) % 50) })
    let config = RNNLMConfig(rnnType: .lstm, vocabSize: 50, embeddingSize: 6, hiddenSize: 6, numLayers: 2, dropout: 0)

    /// A task's graph for B sequences, sealed.
    func graph(_ task: RNNLanguageModelTask, batch B: Int) -> Tape {
        let tape = Tape()
        _ = task.record(on: tape, microBatch: B)
        tape.seal()
        return tape
    }

    func run(_ task: RNNLanguageModelTask, _ tape: Tape, samples: [Int]) {
        samples.withUnsafeBufferPointer { task.fill(samples: $0, epoch: 0, microBatchIndex: 0) }
        tape.forward()
        task.finishedForward()
    }

    /// Truncated BPTT: sample k G + s is chunk k (T + 1 tokens from k T) of stream s (the s-th of G equal
    /// parts of the stream), in order; each stream's state after chunk k starts chunk k + 1, so two carried
    /// chunks of 5 end in the state of one window of 10 from zero; chunk 0 starts from zero.
    func testCarriedStateContinuesEachStream() throws {
        let G = 4, T = 5, L = 1000 / G
        let task = try RNNLanguageModelTask(config: config, source: source, eval: nil, sequenceLength: T, carryState: true,
                                            globalBatch: G, seed: 1)
        XCTAssertEqual(task.sampleCount, G * ((L - 1) / T))
        guard case .sequential = task.sampleOrder else { return XCTFail("carried state needs the sequential order") }
        let tape = graph(task, batch: 2)
        run(task, tape, samples: [0, 3])
        let g = try XCTUnwrap(task.graph)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.inputIDs, count: 2 * T)),
                       Array(source.tokens[0..<T] + source.tokens[3 * L..<(3 * L + T)]))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.labels, count: T)), Array(source.tokens[1...T]))
        run(task, tape, samples: [G, G + 3])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.inputIDs, count: T)), Array(source.tokens[T..<(2 * T)]))
        let carried = Array(g.finalState.hidden.values) + Array(g.finalState.cell!.values)

        // The same 10 tokens of stream 0 in one window from zero, the other slot stream 3's.
        let whole = try RNNLanguageModelTask(config: config, source: source, eval: nil, sequenceLength: 2 * T,
                                             carryState: true, globalBatch: G, seed: 1)
        let wholeTape = graph(whole, batch: 2)
        run(whole, wholeTape, samples: [0, 3])
        let w = try XCTUnwrap(whole.graph)
        let reference = Array(w.finalState.hidden.values) + Array(w.finalState.cell!.values)
        XCTAssertEqual(carried.count, reference.count)
        for (a, b) in zip(carried, reference) { XCTAssertEqual(a, b, accuracy: 1e-6) }

        // The carried state is the task's, by global-batch slot (stream): streams 1 and 2 are untouched.
        let state = try XCTUnwrap(task.carriedState)
        XCTAssertEqual(state.perSlot, 2 * 2 * 6)
        XCTAssertTrue(state.values[(1 * state.perSlot)..<(3 * state.perSlot)].allSatisfy { $0 == 0 })
        XCTAssertFalse(state.values[0..<state.perSlot].allSatisfy { $0 == 0 })
        // A new epoch (chunk 0 again) starts from zero, not from the carried state.
        run(task, tape, samples: [0, 3])
        let fresh = try RNNLanguageModelTask(config: config, source: source, eval: nil, sequenceLength: T, carryState: true,
                                             globalBatch: G, seed: 1)
        let freshTape = graph(fresh, batch: 2)
        run(fresh, freshTape, samples: [0, 3])
        let f = try XCTUnwrap(fresh.graph)
        XCTAssertEqual(Array(g.finalState.hidden.values), Array(f.finalState.hidden.values))
    }

    /// Without carried state, samples are independent windows i T ..< i T + T + 1, shuffled, from zero.
    func testIndependentWindows() throws {
        let task = try RNNLanguageModelTask(config: config, source: source, eval: source, sequenceLength: 9,
                                            carryState: false, globalBatch: 4, seed: 1)
        XCTAssertEqual(task.sampleCount, 999 / 9)
        XCTAssertNil(task.carriedState)
        guard case .shuffled = task.sampleOrder else { return XCTFail("independent windows are shuffled") }
        let tape = graph(task, batch: 1)
        run(task, tape, samples: [7])
        let g = try XCTUnwrap(task.graph)
        XCTAssertNil(g.initialState)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.inputIDs, count: 9)), Array(source.tokens[63..<72]))
        XCTAssertEqual(task.evalSampleCount, 999 / 9)
    }

    func testTooFewTokensPerStreamIsAnError() {
        XCTAssertThrowsError(try RNNLanguageModelTask(config: config, source: source, eval: nil, sequenceLength: 35,
                                                      carryState: true, globalBatch: 40, seed: 1)) {
            XCTAssertTrue("\($0)".contains("cut into 40 streams (train.global_batch) leave fewer than 36 per stream"), "\($0)")
        }
    }
}
