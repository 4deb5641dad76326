import Foundation

/// `trainer_state.json` of a checkpoint (DESIGN.md "Checkpoint directory"): where the run stands (step,
/// epoch, global sample cursor), what it ran with (world size, batch, optimizer, schedule, every config
/// value) and how its random draws are keyed. Every draw is a function of (seed, stream, step, index), so
/// there is no generator state to save. A resume reads `step`, `global_batch` and `optimizer`.
struct TrainerState: Codable {
    struct OptimizerState: Codable {
        var kind: String
        var step: Int
    }

    struct SchedulerState: Codable {
        var peakLR: Double
        var warmup: Int
        var total: Int
        var decay: String
        /// The learning rate of the next step.
        var nextLR: Double
        enum CodingKeys: String, CodingKey {
            case peakLR = "peak_lr", warmup, total, decay, nextLR = "next_lr"
        }
    }

    struct RNGState: Codable {
        var generator = "philox4x32-10"
        var seed: Int
        var keys = "every draw is keyed by (seed, stream, step, index): no state to save"
    }

    var format = "tandem-trainer-state"
    var version = 1
    var tandemVersion = TrainingRun.version
    var step: Int
    var epoch: Int
    var sampleCursor: Int
    var worldSize: Int
    var globalBatch: Int
    var microBatch: Int
    var optimizer: OptimizerState
    var scheduler: SchedulerState
    var rng: RNGState
    /// The config file of the run and its values (defaults included) as `key: text`.
    var configFile: String
    var config: [String: String]

    enum CodingKeys: String, CodingKey {
        case format, version, tandemVersion = "tandem_version", step, epoch, sampleCursor = "sample_cursor"
        case worldSize = "world_size", globalBatch = "global_batch", microBatch = "micro_batch", optimizer, scheduler
        case rng, configFile = "config_file", config
    }

    /// The state of `trainer` after its last step.
    init(_ t: Trainer, config: TrainingConfig) {
        let s = t.settings
        step = t.step
        sampleCursor = t.step * s.globalBatch
        epoch = t.sampler.epoch(ofCursor: sampleCursor)
        worldSize = t.communicator.size
        globalBatch = s.globalBatch
        microBatch = s.microBatch
        optimizer = OptimizerState(kind: s.optimizer.rawValue, step: t.optimizer.step)
        scheduler = SchedulerState(peakLR: Double(s.schedule.peak), warmup: s.schedule.warmup, total: s.schedule.total,
                                   decay: s.schedule.decay.rawValue, nextLR: Double(s.schedule(t.step)))
        rng = RNGState(seed: Int(s.seed))
        configFile = config.file
        self.config = config.values
    }

    /// Pretty-printed JSON with sorted keys.
    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }

    /// Reads `dir/trainer_state.json`; errors name the file and the field.
    static func read(checkpoint dir: String) throws -> TrainerState {
        let path = dir + "/trainer_state.json"
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigError("\(path): cannot read (\(error.localizedDescription))")
        }
        do { return try JSONDecoder().decode(TrainerState.self, from: data) } catch let e as DecodingError {
            throw ConfigError("\(path): not a Tandem trainer state (\(describeDecodingError(e)))")
        }
    }
}
