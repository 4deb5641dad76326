import XCTest
import TandemAutograd
import TandemKernels
import TandemNN
import TandemTestSupport

/// The Recurrent layer's parameters and shapes as torch.nn.LSTM/GRU/RNN registers them (the numerics are
/// held against PyTorch in TandemModelsTests' RNNParityTests).
final class RecurrentLayerTests: XCTestCase {
    func testParametersAreNamedShapedAndOrderedAsTorch() {
        let arena = ParameterArena()
        let lstm = Recurrent(ParameterScope(arena: arena, rng: Philox(seed: 0))("rnn"), cell: .lstm, inputSize: 5,
                             hiddenSize: 3, layers: 2, bidirectional: true)
        var expected: [(String, Shape)] = []
        for k in 0..<2 {
            for suffix in ["", "_reverse"] {
                let I = k == 0 ? 5 : 6
                expected += [("rnn.weight_ih_l\(k)\(suffix)", Shape(12, I)), ("rnn.weight_hh_l\(k)\(suffix)", Shape(12, 3)),
                             ("rnn.bias_ih_l\(k)\(suffix)", Shape(12)), ("rnn.bias_hh_l\(k)\(suffix)", Shape(12))]
            }
        }
        XCTAssertEqual(arena.parameters.map(\.name), expected.map(\.0))
        XCTAssertEqual(arena.parameters.map(\.shape), expected.map(\.1))
        // U(-1/sqrt(H), 1/sqrt(H)) everywhere, biases included (torch's reset_parameters).
        let bound = 1 / Float(3).squareRoot()
        XCTAssertTrue(arena.parameters.allSatisfy { $0.initializer == .uniform(bound: bound) })
        XCTAssertTrue(Array(arena.values).allSatisfy { abs($0) <= bound })
        XCTAssertEqual(lstm.parameters.count, 2)
        XCTAssertEqual(lstm.parameters[1].count, 2)
    }

    func testShapesOfOutputsAndFinalStates() {
        for cell in RecurrentCell.allCases {
            let arena = ParameterArena()
            let rnn = Recurrent(ParameterScope(arena: arena, rng: Philox(seed: 1)), cell: cell, inputSize: 4,
                                hiddenSize: 6, layers: 3, bidirectional: true, dropout: 0.2)
            XCTAssertEqual(arena.parameters.first?.shape, Shape(cell.gates * 6, 4))
            arena.seal()
            let tape = Tape()
            let x = tape.tensor(Shape(2, 5, 4))
            x.values.update(from: GradCheck.random(count: 40, seed: 3)).0
            let (output, final) = rnn(x, lengths: nil, on: tape)
            tape.forward()
            XCTAssertEqual(output.shape, Shape(2, 5, 12), "\(cell)")
            XCTAssertEqual(final.hidden.shape, Shape(6, 2, 6), "\(cell)")
            XCTAssertEqual(final.cell?.shape, cell == .lstm ? Shape(6, 2, 6) : nil, "\(cell)")
            // The last layer's forward direction ends at t = T-1, its reverse direction at t = 0.
            for b in 0..<2 {
                for j in 0..<6 {
                    XCTAssertEqual(final.hidden.data[(4 * 2 + b) * 6 + j], output.data[(b * 5 + 4) * 12 + j])
                    XCTAssertEqual(final.hidden.data[(5 * 2 + b) * 6 + j], output.data[(b * 5) * 12 + 6 + j])
                }
            }
        }
    }
}
