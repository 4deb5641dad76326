import XCTest
import TandemCollectives

final class ConsistencyTests: XCTestCase {
    func testLocalCommunicatorChecksAndCollectivesAreIdentities() throws {
        let comm = LocalCommunicator()
        try comm.verifyConsistency(configHash: 1, parameterCount: 10, version: "x")
        let arena = ParameterArena()
        arena.register("w", Shape(4, 4), initializer: .normal(std: 1))
        arena.seal()
        let before = Array(arena.values)
        comm.broadcastParameters(arena: arena)
        try comm.checkReplicasAgree(arena: arena, step: 3)
        XCTAssertEqual(Array(arena.values), before)
        XCTAssertEqual(comm.allReduce(2.5, op: .sum), 2.5)
        XCTAssertEqual(comm.allGather(UInt64(7)), [7])
        XCTAssertEqual(comm.broadcast("hi"), "hi")
    }

    func testDeterministicReducerOnOneRankIsTheGlobalOrderFold() {
        let count = 101, k = 4
        var grads: [[Float]] = []
        for m in 0..<k {
            let scale = Float(1 << m), shift = 0.1 * Float(m)
            grads.append((0..<count).map { i -> Float in Float(i % 9) * scale + shift })
        }
        let reducer = DeterministicReducer(communicator: LocalCommunicator(), count: count, microBatches: k)
        XCTAssertEqual(reducer.localMicroBatches, 0..<4)
        for m in 0..<k { grads[m].withUnsafeBufferPointer { reducer.store($0, microBatch: m) } }
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { reducer.reduce(into: $0) }
        var expected = [Float](repeating: 0, count: count)
        for i in 0..<count {
            var sum: Float = grads[0][i] + grads[1][i]
            sum += grads[2][i]
            sum += grads[3][i]
            expected[i] = sum / 4
        }
        XCTAssertEqual(out.map { $0.bitPattern }, expected.map { $0.bitPattern })
    }
}
