import XCTest
import TandemAutograd
import TandemKernels
import TandemTestSupport

/// `Tape.profiling` and `opProfile` (`tandem bench step --profile`): ops grouped by the function that
/// recorded them, timed only while profiling, and the same results with the clock on as off.
final class OpProfileTests: XCTestCase {
    func testProfileGroupsOpsByNameAndLeavesResultsAlone() {
        let arena = ParameterArena()
        let w1 = arena.register("w1", Shape(64, 32), initializer: .normal(std: 0.2))
        let w2 = arena.register("w2", Shape(8, 64), initializer: .normal(std: 0.2))
        arena.seal()
        arena.reinitialize(rng: Philox(seed: 3))
        let tape = Tape()
        let x = tape.tensor(Shape(200, 32))
        let h = tape.gelu(tape.linear(x, weight: w1, bias: nil))
        let loss = tape.crossEntropy(tape.linear(h, weight: w2, bias: nil), targets: tape.intInput(count: 200), labelSmoothing: 0)
        tape.seal()
        x.data.update(from: GradCheck.random(count: x.count, seed: 1), count: x.count)

        func pass() -> [Float] {
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: loss)
            return Array(arena.grads) + [loss.data[0]]
        }
        let plain = pass()
        XCTAssertTrue(tape.opProfile().isEmpty, "nothing is timed unless profiling")
        tape.profiling = true
        let timed = [pass(), pass(), pass()]
        for t in timed { XCTAssertEqual(t.map(\.bitPattern), plain.map(\.bitPattern)) }
        let rows = tape.opProfile()
        XCTAssertEqual(Set(rows.map(\.name)), ["linear", "gelu", "crossEntropy"])
        XCTAssertEqual(rows.first { $0.name == "linear" }?.ops, 2)
        XCTAssertEqual(rows.first { $0.name == "gelu" }?.ops, 1)
        for r in rows {
            XCTAssertGreaterThan(r.forward, 0, r.name)
            XCTAssertGreaterThan(r.backward, 0, r.name)
        }
        XCTAssertEqual(rows.map { $0.forward + $0.backward }, rows.map { $0.forward + $0.backward }.sorted(by: >))
        tape.resetProfile()
        XCTAssertTrue(tape.opProfile().isEmpty)
    }
}
