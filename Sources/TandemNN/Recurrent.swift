import TandemAutograd
import TandemKernels

/// The states a recurrent network starts from or ends in: hidden (L D, B, H) and, for LSTM, cell
/// (L D, B, H), layer-major then direction (torch's h_n / c_n order).
public struct RecurrentState {
    public var hidden: Tensor
    public var cell: Tensor?

    public init(hidden: Tensor, cell: Tensor?) { self.hidden = hidden; self.cell = cell }
}

/// A multi-layer, optionally bidirectional RNN, LSTM or GRU, equivalent to
/// `torch.nn.RNN(nonlinearity=...)` / `nn.LSTM` / `nn.GRU` with `batch_first=True` (equations in
/// TandemKernels' Recurrent.swift). Layer k > 0 reads layer k-1's output (D H wide), with dropout between
/// layers (not after the last; training only). Padding-aware through per-sequence lengths, as
/// `pack_padded_sequence` / `pad_packed_sequence`.
///
/// Parameters are registered under torch's names, shapes and order: for each layer k, for each direction,
/// `weight_ih_l{k}` (G H, I_k), `weight_hh_l{k}` (G H, H), `bias_ih_l{k}`, `bias_hh_l{k}` (G H), the second
/// direction with the suffix `_reverse`; G = 4 (LSTM, i|f|g|o), 3 (GRU, r|z|n), 1 (RNN). All start
/// U(-1/√H, 1/√H) as torch's `reset_parameters`. Biases are excluded from weight decay, as elsewhere here.
public final class Recurrent {
    public let cell: RecurrentCell
    public let inputSize: Int
    public let hiddenSize: Int
    public let layers: Int
    public let bidirectional: Bool
    public let dropout: Float
    /// [layer][direction] parameters.
    public let parameters: [[RecurrentParameters]]

    public var directions: Int { bidirectional ? 2 : 1 }

    public init(_ scope: ParameterScope, cell: RecurrentCell, inputSize: Int, hiddenSize: Int, layers: Int = 1,
                bidirectional: Bool = false, dropout: Float = 0) {
        precondition(inputSize > 0 && hiddenSize > 0 && layers > 0, "Recurrent: sizes must be positive")
        self.cell = cell; self.inputSize = inputSize; self.hiddenSize = hiddenSize; self.layers = layers
        self.bidirectional = bidirectional; self.dropout = dropout
        let G = cell.gates, H = hiddenSize, D = bidirectional ? 2 : 1
        let initializer = ParameterInit.uniform(bound: 1 / Float(H).squareRoot())
        parameters = (0..<layers).map { k in
            (0..<D).map { d in
                let suffix = "_l\(k)" + (d == 1 ? "_reverse" : "")
                let I = k == 0 ? inputSize : D * H
                return RecurrentParameters(
                    inputWeight: scope.parameter("weight_ih" + suffix, Shape(G * H, I), initializer),
                    hiddenWeight: scope.parameter("weight_hh" + suffix, Shape(G * H, H), initializer),
                    inputBias: scope.parameter("bias_ih" + suffix, Shape(G * H), initializer, decays: false),
                    hiddenBias: scope.parameter("bias_hh" + suffix, Shape(G * H), initializer, decays: false))
            }
        }
    }

    /// x (B, T, inputSize) -> output (B, T, D H) of the last layer, and the final states (L D, B, H).
    /// `lengths` (B), each in 0...T and filled before `tape.forward()`, mark where each sequence ends
    /// (outputs past it are zero, its final state is the one at its last step); nil means all T.
    /// `initial` nil starts from zeros (hidden, and cell for LSTM, each (L D, B, H)); initial states
    /// receive gradients when they have gradient buffers.
    public func callAsFunction(_ x: Tensor, lengths: UnsafeMutablePointer<Int32>?, initial: RecurrentState? = nil,
                               on tape: Tape) -> (output: Tensor, final: RecurrentState) {
        precondition(x.shape.rank == 3 && x.shape[2] == inputSize, "Recurrent: input \(x.shape) does not end in \(inputSize)")
        let D = directions, B = x.shape[0], H = hiddenSize
        if let initial {
            precondition(initial.hidden.shape == Shape(layers * D, B, H)
                         && (!cell.hasCellState || initial.cell?.shape == Shape(layers * D, B, H)),
                         "Recurrent: initial state \(initial.hidden.shape) / \(initial.cell?.shape.description ?? "nil"), "
                         + "expected \(Shape(layers * D, B, H)) each")
        }
        var y = x
        var hidden: [Tensor] = [], cells: [Tensor] = []
        for k in 0..<layers {
            if k > 0 { y = tape.dropout(y, p: dropout) }
            let layer = tape.recurrent(y, cell: cell, directions: parameters[k], lengths: lengths,
                                       initialHidden: initial.map { slice($0.hidden, layer: k) },
                                       initialCell: initial?.cell.map { slice($0, layer: k) })
            y = layer.output
            hidden.append(layer.hidden)
            if let c = layer.cell { cells.append(c) }
        }
        let final = RecurrentState(hidden: layers == 1 ? hidden[0] : tape.concatenate(hidden),
                                   cell: cells.isEmpty ? nil : layers == 1 ? cells[0] : tape.concatenate(cells))
        return (y, final)
    }

    /// Layer k's (D, B, H) part of a (L D, B, H) state: a view, so gradients land in the whole tensor's buffer.
    private func slice(_ state: Tensor, layer k: Int) -> Tensor {
        let count = state.count / layers, offset = k * count
        return Tensor(shape: Shape(directions, state.shape[1], state.shape[2]), data: state.data + offset,
                      grad: state.grad.map { $0 + offset })
    }
}
