import TandemAutograd
import XCTest
import TandemTestSupport

/// Finite-difference checks of a recorded tape's scalar `loss` against each of `tensors` (inputs or
/// parameters, by name): every probe replays the tape forward, the analytic gradient is one backward
/// pass seeded with dout, read from the tensor's gradient buffer after zeroing the arena's. Each tensor
/// gets its values back afterwards.
func gradCheckTapeLoss(_ tape: Tape, loss: Tensor, arena: ParameterArena, tensors: [(String, Tensor)],
                       file: StaticString = #filePath, line: UInt = #line) {
    for (name, t) in tensors {
        let start = Array(t.values)
        gradCheck(name, x: start, outputCount: 1, forward: { values in
            t.data.update(from: values, count: values.count)
            tape.forward()
            return [loss.data[0]]
        }, backward: { values, dout, dx in
            t.data.update(from: values, count: values.count)
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: loss, seed: dout[0])
            for i in 0..<dx.count { dx[i] += t.grad![i] }
        }, file: file, line: line)
        t.data.update(from: start, count: start.count)
    }
}

/// One forward and backward of `tape` from `loss`: every parameter of `arena` hears its gradient-ready hook
/// exactly once.
func assertGradientHooksFireOncePerParameter(_ tape: Tape, loss: Tensor, arena: ParameterArena,
                                             file: StaticString = #filePath, line: UInt = #line) {
    var seen: [String] = []
    tape.onGradientFinal = { seen.append($0.name) }
    tape.forward()
    tape.backward(from: loss)
    XCTAssertEqual(seen.sorted(), arena.parameters.map(\.name).sorted(), file: file, line: line)
}
