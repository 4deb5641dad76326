import TandemKernels

/// One direction's parameters of a recurrent layer: W_ih (G H, I), W_hh (G H, H), b_ih, b_hh (G H)
/// (torch's `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, `_reverse` for the second).
public struct RecurrentParameters {
    public let inputWeight: Parameter
    public let hiddenWeight: Parameter
    public let inputBias: Parameter
    public let hiddenBias: Parameter

    public init(inputWeight: Parameter, hiddenWeight: Parameter, inputBias: Parameter, hiddenBias: Parameter) {
        self.inputWeight = inputWeight; self.hiddenWeight = hiddenWeight
        self.inputBias = inputBias; self.hiddenBias = hiddenBias
    }

    /// In torch's order: weight_ih, weight_hh, bias_ih, bias_hh.
    public var all: [Parameter] { [inputWeight, hiddenWeight, inputBias, hiddenBias] }

    var weights: RecurrentWeights {
        RecurrentWeights(inputWeight: inputWeight.value, hiddenWeight: hiddenWeight.value,
                         inputBias: inputBias.value, hiddenBias: hiddenBias.value)
    }

    var gradients: RecurrentWeightGradients {
        RecurrentWeightGradients(inputWeight: inputWeight.grad, hiddenWeight: hiddenWeight.grad,
                                 inputBias: inputBias.grad, hiddenBias: hiddenBias.grad)
    }
}

extension Tape {
    /// One recurrent layer (`recurrentForward`), in one direction or two (then the second runs t = T-1 ... 0):
    /// x (B, T, I) -> output (B, T, D H) with the directions' outputs side by side (forward | reverse),
    /// hidden (D, B, H) the final states and, for LSTM, cell (D, B, H) the final cell states, as one layer
    /// of `torch.nn.RNN/LSTM/GRU(batch_first=True)` gives them. `lengths` (B), filled by the caller before
    /// `forward()` with values in 0...T, make it padding-aware (`pack_padded_sequence`); nil runs all T steps.
    /// `initialHidden`/`initialCell` (D, B, H) nil start from zeros; given, they receive gradients when they
    /// have a gradient buffer. The final states can receive gradients too. Products run in the tape's
    /// `precision` at recording time.
    public func recurrent(_ x: Tensor, cell: RecurrentCell, directions: [RecurrentParameters],
                          lengths: UnsafeMutablePointer<Int32>?, initialHidden: Tensor?, initialCell: Tensor?)
        -> (output: Tensor, hidden: Tensor, cell: Tensor?) {
        let D = directions.count
        precondition(D == 1 || D == 2, "recurrent: \(D) directions")
        precondition(x.shape.rank == 3, "recurrent: input \(x.shape) is not (B, T, I)")
        let B = x.shape[0], T = x.shape[1], I = x.shape[2]
        let H = directions[0].hiddenWeight.shape[1]
        for p in directions {
            precondition(p.inputWeight.shape == Shape(cell.gates * H, I) && p.hiddenWeight.shape == Shape(cell.gates * H, H),
                         "recurrent \(p.inputWeight.name): \(p.inputWeight.shape), \(p.hiddenWeight.shape) do not fit "
                         + "\(cell.rawValue) with input \(I), hidden \(H)")
        }
        for state in [initialHidden, initialCell].compactMap({ $0 }) {
            precondition(state.shape == Shape(D, B, H), "recurrent: initial state \(state.shape), expected \(Shape(D, B, H))")
        }
        let y = tensor(Shape(B, T, D * H))
        let hN = tensor(Shape(D, B, H))
        let cN = cell.hasCellState ? tensor(Shape(D, B, H)) : nil
        let shapes = (0..<D).map { RecurrentShape(cell: cell, B: B, T: T, I: I, H: H, reverse: $0 == 1) }
        let saved = shapes.map { scratch(count: $0.savedCount) }
        let work = scratch(count: shapes[0].backwardScratchCount)
        // W_hh packed for the steps' products, one buffer for both directions, forward and backward.
        let packed = shapes[0].packedWeightCount > 0 ? scratch(count: shapes[0].packedWeightCount) : nil
        let h0 = initialHidden, c0 = cell.hasCellState ? initialCell : nil
        let precision = precision
        record(parameters: directions.flatMap(\.all), inputs: [x] + [h0, c0].compactMap { $0 }, forward: {
            for d in 0..<D {
                let o = d * B * H
                recurrentForward(out: y.data + d * H, ldo: D * H, hN: hN.data + o, cN: cN.map { $0.data + o },
                                 saved: saved[d], inp: x.data, h0: h0.map { UnsafePointer($0.data + o) },
                                 c0: c0.map { UnsafePointer($0.data + o) }, lengths: lengths,
                                 weights: directions[d].weights, shape: shapes[d], packed: packed, precision: precision)
            }
        }, backward: {
            for d in 0..<D {
                let o = d * B * H
                recurrentBackward(dinp: x.grad, dh0: h0?.grad.map { $0 + o }, dc0: c0?.grad.map { $0 + o },
                                  dweights: directions[d].gradients, scratch: work, dout: y.grad! + d * H, ldo: D * H,
                                  dhN: hN.grad! + o, dcN: cN.map { $0.grad! + o }, saved: saved[d], inp: x.data,
                                  lengths: lengths, weights: directions[d].weights, shape: shapes[d], packed: packed,
                                  precision: precision)
            }
        })
        return (y, hN, cN)
    }

    /// The tensors stacked along their first dimension: (n_1, ...), (n_2, ...) -> (n_1 + n_2 + ..., ...);
    /// the trailing dimensions must agree. Backward adds each slice of the gradient into its source.
    public func concatenate(_ parts: [Tensor]) -> Tensor {
        let trailing = Array(parts[0].shape.dims.dropFirst())
        precondition(parts.allSatisfy { Array($0.shape.dims.dropFirst()) == trailing },
                     "concatenate: \(parts.map(\.shape)) differ after the first dimension")
        let y = tensor(Shape([parts.reduce(0) { $0 + $1.shape[0] }] + trailing))
        record(inputs: parts, forward: {
            var at = y.data
            for p in parts { at.update(from: p.data, count: p.count); at += p.count }
        }, backward: {
            var at = UnsafePointer(y.grad!)
            for p in parts {
                if let g = p.grad { residualBackward(da: g, db: nil, dout: at, count: p.count) }
                at += p.count
            }
        })
        return y
    }
}
