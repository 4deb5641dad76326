import XCTest
import TandemCollectives

final class ConsistencyTests: XCTestCase {
    func testChecksumSeesEveryBitAndLength() {
        var bytes = (0..<1037).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let base = bytes.withUnsafeBytes { Checksum.fnv1a64($0) }
        XCTAssertEqual(base, bytes.withUnsafeBytes { Checksum.fnv1a64($0) })
        for position in [0, 7, 8, 31, 32, 500, 1031, 1036] {
            for bit in [0, 3, 7] {
                bytes[position] ^= UInt8(1 << bit)
                XCTAssertNotEqual(bytes.withUnsafeBytes { Checksum.fnv1a64($0) }, base, "byte \(position) bit \(bit)")
                bytes[position] ^= UInt8(1 << bit)
            }
        }
        // Swapping two words must change it (the lanes are not a plain xor of words).
        bytes.swapAt(0, 8)
        XCTAssertNotEqual(bytes.withUnsafeBytes { Checksum.fnv1a64($0) }, base)
        XCTAssertNotEqual(Checksum.fnv1a64(""), Checksum.fnv1a64("\0"))
    }

    func testSingleByteMatchesReferenceFNV1aStructure() {
        // Below 8 bytes only the byte-wise tail runs: compare with a direct FNV-1a-based construction.
        let offset: UInt64 = 0xcbf2_9ce4_8422_2325, prime: UInt64 = 0x100_0000_01b3
        var h = offset
        for lane in [offset, offset ^ 1, offset ^ 2, offset ^ 3] { h = (h ^ lane) &* prime }
        for b in Array("abc".utf8) { h = (h ^ UInt64(b)) &* prime }
        h = (h ^ 3) &* prime
        XCTAssertEqual(Checksum.fnv1a64("abc"), h)
    }

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
