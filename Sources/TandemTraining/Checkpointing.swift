import Foundation
import TandemCheckpoint
import TandemCollectives

/// The coordinator's checkpoints (DESIGN.md "Checkpoint directory"): rank 0 copies the parameter arena
/// and the optimizer moments into a snapshot, then writes `model.safetensors` (HF names), `config.json`,
/// `optimizer.safetensors`, `trainer_state.json`, `carried_state.safetensors` (only for a task that
/// carries state across steps: `TrainingTask.carriedState`, tensor `state` (G, perSlot)) and the manifest
/// on a background thread while training goes on. A save waits only for the previous one. Every random
/// draw is keyed by (seed, step), so the step and the sample cursor are all the state a resume needs
/// besides the tensors.
final class Checkpointer {
    let writer: CheckpointWriter
    private let queue = DispatchQueue(label: "tandem-checkpoint")
    private let group = DispatchGroup()
    private var failure: Error?
    private let failureLock = NSLock()
    private var snapshot: UnsafeMutableBufferPointer<Float>?
    /// Seconds the last `save` kept the training thread (snapshot copy and waiting for the previous save).
    private(set) var lastBlockingSeconds = 0.0

    init(root: String, keep: Int, keepEvery: Int) {
        writer = CheckpointWriter(root: root, retention: RetentionPolicy(keep: keep, keepEvery: keepEvery))
    }

    deinit { snapshot.map { AlignedMemory.deallocate($0.baseAddress!) } }

    /// Snapshots the trainer's state and writes it in the background. Throws the error of an earlier
    /// background save, if any (the previous checkpoint is intact in that case).
    func save(trainer: Trainer, config: TrainingConfig) throws {
        let started = monotonicSeconds()
        try wait()
        let arena = trainer.task.arena, opt = trainer.optimizer
        let n = arena.count
        if snapshot == nil {
            snapshot = .init(start: AlignedMemory.allocate(Float.self, count: 3 * n), count: 3 * n)
        }
        let snap = snapshot!.baseAddress!
        let frozen = Snapshot(base: snap)
        snap.update(from: arena.values.baseAddress!, count: n)
        (snap + n).update(from: opt.m.baseAddress!, count: n)
        (snap + 2 * n).update(from: opt.v.baseAddress!, count: n)
        let step = trainer.step
        let state = try TrainerState(trainer, config: config).json()
        let modelConfig = trainer.task.hfConfigJSON
        let tensorFiles = [(file: "model.safetensors", tensors: trainer.task.checkpointTensors)] + trainer.task.additionalCheckpointFiles
        let textFiles = trainer.task.checkpointTextFiles
        let optimizerStep = opt.step
        let carried = trainer.task.carriedState.map { (values: Array($0.values), shape: [$0.values.count / $0.perSlot, $0.perSlot]) }
        lastBlockingSeconds = monotonicSeconds() - started
        group.enter()
        queue.async { [writer] in
            defer { self.group.leave() }
            let snap = frozen.base
            do {
                var moments = SafeTensorsWriter(metadata: ["format": "pt", "optimizer": opt.kind.rawValue,
                                                          "step": String(optimizerStep)])
                let models = tensorFiles.map { file in
                    var w = SafeTensorsWriter()
                    for (name, p) in file.tensors {
                        w.add(name, shape: p.shape.dims, borrowing: UnsafeBufferPointer(start: snap + p.offset, count: p.count))
                    }
                    return CheckpointFile.safetensors(file.file, w)
                }
                for p in arena.parameters {
                    moments.add("exp_avg." + p.name, shape: p.shape.dims,
                                borrowing: UnsafeBufferPointer(start: snap + n + p.offset, count: p.count))
                    moments.add("exp_avg_sq." + p.name, shape: p.shape.dims,
                                borrowing: UnsafeBufferPointer(start: snap + 2 * n + p.offset, count: p.count))
                }
                var files: [CheckpointFile] = [
                    models[0],
                    .text("config.json", modelConfig),
                    .safetensors("optimizer.safetensors", moments),
                    .text("trainer_state.json", state),
                ]
                files += models.dropFirst()
                files += textFiles.map { CheckpointFile.text($0.name, $0.text) }
                if let carried {
                    var w = SafeTensorsWriter()
                    w.add(Resumer.carriedStateTensor, shape: carried.shape, floats: carried.values)
                    files.append(.safetensors(Resumer.carriedStateFile, w))
                }
                _ = try writer.save(step: step, files: files)
            } catch {
                self.failureLock.lock(); self.failure = error; self.failureLock.unlock()
            }
        }
    }

    /// Waits for the save in flight; rethrows its error.
    func wait() throws {
        group.wait()
        failureLock.lock(); defer { failureLock.unlock() }
        if let f = failure { failure = nil; throw f }
    }
}

/// The snapshot buffer handed to the writer thread: the training thread does not touch it until the
/// next `save`, which first waits for this write.
private struct Snapshot: @unchecked Sendable { let base: UnsafeMutablePointer<Float> }

/// Restores a trainer from a checkpoint directory: rank 0 reads and checks it, then broadcasts the
/// parameters, the optimizer moments and the step, so ranks need no shared file system and any rank
/// count can resume any checkpoint with the same global batch.
enum Resumer {
    /// Returns the checkpoint resumed from, or nil for a fresh start (`auto` with none found).
    static func resume(_ spec: String, root: String?, trainer: Trainer, log: (String) -> Void) throws -> String? {
        let comm = trainer.communicator
        var chosen: String? = nil
        var step = 0, optimizerStep = 0
        let outcome: String
        if comm.rank == 0 {
            do {
                guard spec != "auto" || root != nil else {
                    throw ConfigError("--resume auto needs checkpoint.dir in the config")
                }
                let selection = try CheckpointStore.resolveResume(spec, root: root ?? ".")
                for skipped in selection.skipped { log("\(skipped)") }
                if let dir = selection.directory {
                    (step, optimizerStep) = try load(dir, into: trainer)
                    chosen = dir
                } else {
                    log("no valid checkpoint in \(root ?? spec): starting from step 0")
                }
                outcome = ""
            } catch {
                outcome = "\(error)"
            }
        } else {
            outcome = ""
        }
        // Every rank learns rank 0's outcome before any tensor moves, so a bad checkpoint stops all ranks.
        let message = comm.broadcast(outcome, root: 0)
        if !message.isEmpty { throw ConfigError(message) }
        let resumed = comm.broadcast(chosen ?? "", root: 0)
        guard !resumed.isEmpty else { return nil }
        comm.broadcast(trainer.task.arena.values, root: 0)
        comm.broadcast(trainer.optimizer.m, root: 0)
        comm.broadcast(trainer.optimizer.v, root: 0)
        if let carried = trainer.task.carriedState { comm.broadcast(carried.values, root: 0) }
        trainer.releaseUnownedOptimizerState()
        trainer.step = Int(comm.broadcast(Int64(step), root: 0))
        trainer.optimizer.step = Int(comm.broadcast(Int64(optimizerStep), root: 0))
        return resumed
    }

    /// The file and tensor of a task's carried state (`TrainingTask.carriedState`).
    static let carriedStateFile = "carried_state.safetensors", carriedStateTensor = "state"

    /// Reads a verified checkpoint into the trainer on this rank; returns (step, optimizer step).
    static func load(_ dir: String, into trainer: Trainer) throws -> (Int, Int) {
        let state = try TrainerState.read(checkpoint: dir)
        let globalBatch = state.globalBatch, kind = state.optimizer.kind
        guard globalBatch == trainer.settings.globalBatch else {
            throw ConfigError("\(dir): the checkpoint was trained with train.global_batch = \(globalBatch), this run has \(trainer.settings.globalBatch); the sample stream would change")
        }
        guard kind == trainer.settings.optimizer.rawValue else {
            throw ConfigError("\(dir): the checkpoint's optimizer is \(kind), this run's train.optimizer is \(trainer.settings.optimizer.rawValue)")
        }
        for (file, tensors) in [(file: "model.safetensors", tensors: trainer.task.checkpointTensors)] + trainer.task.additionalCheckpointFiles {
            let path = dir + "/" + file
            guard FileManager.default.fileExists(atPath: path) else { throw ConfigError("\(dir): no \(file), which this run's model needs") }
            let model = try SafeTensorsFile(path: path)
            for (name, p) in tensors { try copy(model, name, into: p, file: path) }
        }
        let moments = try SafeTensorsFile(path: dir + "/optimizer.safetensors")
        let arena = trainer.task.arena, opt = trainer.optimizer
        for p in arena.parameters {
            try moments.copyFloats("exp_avg." + p.name, into: UnsafeMutableBufferPointer(rebasing: opt.m[p.offset..<(p.offset + p.count)]))
            try moments.copyFloats("exp_avg_sq." + p.name, into: UnsafeMutableBufferPointer(rebasing: opt.v[p.offset..<(p.offset + p.count)]))
        }
        if let carried = trainer.task.carriedState {
            let path = dir + "/" + carriedStateFile
            guard FileManager.default.fileExists(atPath: path) else {
                throw ConfigError("\(dir): no \(carriedStateFile), which this run's carried state (data.carry_state) needs")
            }
            let file = try SafeTensorsFile(path: path)
            let shape = [carried.values.count / carried.perSlot, carried.perSlot]
            guard let info = file.tensors[carriedStateTensor], info.shape == shape else {
                throw ConfigError("\(path): tensor \(carriedStateTensor) must have shape \(shape) (global batch x state per sample)")
            }
            try file.copyFloats(carriedStateTensor, into: carried.values)
        }
        return (state.step, state.optimizer.step)
    }

    static func copy(_ file: SafeTensorsFile, _ name: String, into p: Parameter, file path: String) throws {
        guard let info = file.tensors[name] else { throw ConfigError("\(path): no tensor \(name)") }
        guard info.shape == p.shape.dims else {
            throw ConfigError("\(path): \(name) has shape \(info.shape), the model expects \(p.shape.dims)")
        }
        try file.copyFloats(name, into: p.values)
    }
}

/// `tandem inspect`: the checkpoint module's report (manifest, trainer state, config.json, tensors) and,
/// for a checkpoint directory with a config.json, the model family its `model_type` names
/// (`ModelFamilies`), or why none does.
public enum CheckpointInspector {
    public static func inspect(_ path: String) -> (report: String, isValid: Bool) {
        let i = inspectCheckpoint(path)
        var report = i.report
        if FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json")) {
            do {
                let family = try ModelFamilies.family(ofDirectory: path)
                report += "model family: \(family.name) (model_types \(family.modelTypes.joined(separator: ", ")))\n"
                do {
                    if let line = try family.describe(directory: path) { report += "model: \(line)\n" }
                } catch {
                    report += "model: \(error)\n"
                }
            } catch {
                report += "model family: none (\(error))\n"
            }
        }
        return (report, i.isValid)
    }
}
