import Foundation
import TandemCheckpoint
import TandemTraining

/// `tandem debug forward` and `tandem debug grads` (DESIGN.md "Command line"): a transformers model
/// directory and a batch file in, the model's outputs or the loss and every parameter gradient out, under
/// HF names, so that a script can compare them with PyTorch's. The model directory's `model_type` picks
/// the family (`ModelFamilies`); dropout is off.
public enum DebugCommands {
    /// Writes the family's outputs (HF output names) and, when the batch has the targets, the scalar `loss`.
    public static func forward(model directory: String, batch: String, out: String,
                               log: (String) -> Void = standardErrorLog) throws {
        let m = try load(directory, batch, forGradients: false, log: log)
        m.tape.forward()
        var writer = SafeTensorsWriter()
        for o in m.outputs() { writer.add(o.name, shape: o.shape, floats: o.values) }
        if let loss = m.loss { writer.add("loss", shape: [], floats: [loss.data[0]]) }
        try writer.write(toPath: out)
    }

    /// Writes the scalar `loss` of the batch and d(loss)/d(parameter) for every parameter under its HF name
    /// (a tied weight's gradient holds every use's, as in PyTorch).
    public static func grads(model directory: String, batch: String, out: String,
                             log: (String) -> Void = standardErrorLog) throws {
        let m = try load(directory, batch, forGradients: true, log: log)
        guard let loss = m.loss else {
            throw ConfigError("\(batch): no \(m.missingTargets) tensor, so there is no loss to differentiate")
        }
        m.arena.zeroGrads()
        m.tape.forward()
        m.tape.backward(from: loss)
        var writer = SafeTensorsWriter()
        writer.add("loss", shape: [], floats: [loss.data[0]])
        for p in m.parameters { writer.add(p.name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(p.grads)) }
        try writer.write(toPath: out)
    }

    /// The family's model with the batch in its graph, after checking that the batch file holds only
    /// tensors the family's batch files may hold (a misspelt name would otherwise be ignored silently).
    private static func load(_ directory: String, _ batch: String, forGradients: Bool,
                             log: (String) -> Void) throws -> DebugModel {
        let family = try ModelFamilies.family(ofDirectory: directory)
        let names = try SafeTensorsFile(path: batch).tensors.keys
        if let unknown = names.sorted().first(where: { !family.batchInputs.contains($0) }) {
            throw ConfigError("\(batch): tensor \(unknown) is not an input of a \(family.name) model (its batch files hold \(family.batchInputs.joined(separator: ", ")))")
        }
        return try family.debugModel(directory: directory, batch: batch, forGradients: forGradients, log: log)
    }

    /// Writes a line to standard error, where the commands' remarks go (standard output stays clean).
    public static func standardErrorLog(_ line: String) {
        FileHandle.standardError.write(Data("tandem: \(line)\n".utf8))
    }
}
