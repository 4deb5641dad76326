import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels

/// Tandem's visual tokenizer for BEiT (`VQVAE`, `model_type: vqvae`): a VQ-VAE trained on image shards to
/// reconstruct them through a grid of discrete codes, whose codes `tandem tokenize-images` then writes as
/// the visual tokens BEiT's masked image modeling predicts. Not a transformers model: its checkpoints are
/// read by Tandem (`--init-from`, `tokenize-images`).
public enum VQVAEFamily: ModelFamily {
    public static let name = "vqvae"
    public static let modelTypes = [VQVAEConfig.modelType]
    public static let batchInputs = ["pixel_values"]

    public static let presets: [(name: String, fields: [String: Any])] = [
        // 28 px images (MNIST, Fashion-MNIST) to 7x7 tokens of 512 codes: the grid of a BEiT with 4-pixel
        // patches (beit-mini-28, beit-tiny-28).
        ("vqvae-28", ["image_size": 28, "base_channels": 32, "hidden_channels": 64, "residual_channels": 32,
                      "num_residual_blocks": 2, "downsample_factor": 4, "codebook_size": 512, "codebook_dim": 32,
                      "commitment_cost": 0.25]),
        // 224 px images to BEiT-B/16's 14x14 grid with DALL-E's 8192 codes.
        ("vqvae-224", ["image_size": 224, "base_channels": 64, "hidden_channels": 128, "residual_channels": 64,
                       "num_residual_blocks": 2, "downsample_factor": 16, "codebook_size": 8192, "codebook_dim": 32,
                       "commitment_cost": 0.25]),
    ]

    /// The `model.<field>` keys a VQ-VAE config takes.
    static let fieldNames = ["image_size", "base_channels", "hidden_channels", "residual_channels", "num_residual_blocks",
                             "downsample_factor", "codebook_size", "codebook_dim", "commitment_cost", "init_codebook_from_data",
                             "restart_dead_codes_every"]

    public static func makeTask(_ config: TrainingConfig, settings: RunSettings, initFrom: String?) throws -> TrainingTask {
        let (train, eval) = try VisionOptions.datasets(config)
        var fields: [String: Any]
        if let initFrom {
            fields = try ModelFields.read(directory: initFrom)
            fields["architectures"] = nil
        } else {
            fields = try ModelFields.preset(config.model.preset ?? "", of: self, file: config.file)
        }
        fields["num_channels"] = train.channels
        try ModelFields.merge(&fields, config.model.fields, known: fieldNames, file: config.file)
        // The normalisation of the training shards, kept in config.json for tokenize-images.
        fields["image_mean"] = train.manifest.mean
        fields["image_std"] = train.manifest.std
        let vq: VQVAEConfig
        do { vq = try ModelFields.decode(fields, file: config.file) } catch let e as VQVAEError {
            throw ConfigError("\(config.file): model: \(e.message)")
        }
        if config.data.mixup > 0 || config.data.cutmix > 0 {
            throw ConfigError("\(config.file): data.mixup and data.cutmix do not apply to a VQ-VAE tokenizer (it reconstructs single images)")
        }
        do {
            return try ImageTokenizerTask(config: vq, train: train, eval: eval,
                                          horizontalFlip: (config.data.augment ?? true) && config.data.hflip, seed: settings.seed,
                                          microBatchesPerStep: settings.globalBatch / settings.microBatch)
        } catch let e as VQVAEError {
            throw ConfigError("\(config.file): model: \(e.message)")
        }
    }

    /// A tokenizer checkpoint directory (config.json with `model_type: vqvae`, model.safetensors with every
    /// tensor) in a new, sealed arena; errors name the file. `tandem debug` and `tokenize-images` load
    /// through it.
    public static func loadPretrained(directory: String) throws -> (model: VQVAE, arena: ParameterArena, weightsPath: String) {
        let (configPath, type) = try ModelFields.checkpointModelType(directory: directory)
        guard type == VQVAEConfig.modelType else {
            throw ConfigError("\(configPath): model_type \(type ?? "none") is not \(VQVAEConfig.modelType) (a VQ-VAE tokenizer checkpoint is needed: train one with a vqvae preset)")
        }
        let config = try readModelConfig(VQVAEConfig.self, directory: directory, kind: "VQ-VAE") { ConfigError($0) }.config
        let arena = ParameterArena()
        let model = try VQVAE(config, arena: arena, rng: Philox(seed: 0))
        arena.seal()
        let weightsPath = (directory as NSString).appendingPathComponent("model.safetensors")
        let weights: SafeTensorsFile
        do { weights = try SafeTensorsFile(path: weightsPath) } catch { throw ConfigError("\(weightsPath): \(error)") }
        _ = try model.load(shapes: weights.tensors.mapValues(\.shape), origin: weightsPath) { try weights.copyFloats($0, into: $1) }
        return (model, arena, weightsPath)
    }

    /// A tokenizer checkpoint directory (`loadPretrained`) with a batch file's `pixel_values` (B, channels,
    /// H, W) in its graph: outputs `reconstruction` (B, H, W, channels, channels-last) and `codes` (B, grid,
    /// grid, as floats); the loss is the training loss (reconstruction MSE + codebook and commitment terms).
    public static func debugModel(directory: String, batch path: String, forGradients: Bool,
                                  log: (String) -> Void) throws -> DebugModel {
        let (model, arena, _) = try loadPretrained(directory: directory)
        let config = model.config
        let file = try SafeTensorsFile(path: path)
        let (B, pixels) = try file.pixelValues(channels: config.numChannels, size: config.imageSize) { VQVAEError("\(path): \($0)") }
        let tape = Tape()
        tape.training = false
        let g = model.record(on: tape, batch: B)
        g.pixelValues.data.update(from: pixels, count: pixels.count)
        return DebugModel(tape: tape, parameters: model.parameters, arena: arena, outputs: {
            [("reconstruction", g.reconstruction.shape.dims, Array(g.reconstruction.values)),
             ("codes", [B, config.gridSize, config.gridSize], (0..<(B * config.numTokens)).map { Float(g.codes[$0]) })]
        }, loss: g.loss, missingTargets: "")
    }
}

/// Training a `VQVAE` on image shards: each image in its evaluation view (resized to image_size when it
/// differs, normalised with the shards' mean and std), mirrored at random with `data.hflip` under
/// `data.augment`, the flip a function of (seed, epoch, sample). Evaluation on `data.eval` reports the
/// reconstruction's mean squared error (in normalised units) and PSNR (in pixel units, peak 1), and the
/// perplexity and count of the codes the held-out images use.
///
/// Two measures keep the codebook in use, both computed alike on every rank from (seed, step) and the
/// replicated weights, so they need no communication and keep exact resume and deterministic mode: the
/// codebook starts as encoder outputs of a sample of training images (`init_codebook_from_data`, the
/// k-means-style initialisation of SoundStream and Jukebox, here rows drawn at random), and every
/// `restart_dead_codes_every` steps the codes that a fresh sample of training images does not use restart
/// at rows of that sample (Jukebox's and Dhariwal et al.'s dead-code restarts).
public final class ImageTokenizerTask: EvaluatingTask, BatchWriting {
    public let arena = ParameterArena()
    public let model: VQVAE
    public let train: ImageDataset
    public let eval: ImageDataset?
    private let augmenter: ImageAugmenter
    private let evalAugmenter: ImageAugmenter?
    private var graph: VQVAE.Graph?
    private var microBatch = 0
    private var slotValid: [Bool] = []
    private let seed: UInt64
    private let microBatchesPerStep: Int
    /// The last step whose dead codes were restarted.
    private var lastRestart = -1
    /// Codes restarted so far by this process (for tests and the curious).
    public private(set) var restartedCodes = 0

    /// Philox streams of the codebook sample's images and rows.
    static let sampleImageStream: UInt64 = 0x5651_494D, sampleRowStream: UInt64 = 0x5651_5257

    public init(config: VQVAEConfig, train: ImageDataset, eval: ImageDataset?, horizontalFlip: Bool, seed: UInt64,
                microBatchesPerStep: Int = 1) throws {
        for (key, data) in [("data.train", train)] + (eval.map { [("data.eval", $0)] } ?? []) where data.channels != config.numChannels {
            throw ConfigError("\(key): \(data.directory) holds \(data.channels)-channel images but the tokenizer has \(config.numChannels)")
        }
        model = try VQVAE(config, arena: arena, rng: Philox(seed: seed))
        arena.seal()
        self.train = train
        self.eval = eval
        let options = AugmentationOptions(outputSize: config.imageSize, randomResizedCrop: false,
                                          horizontalFlip: horizontalFlip, mean: train.mean, std: train.std)
        augmenter = ImageAugmenter(options: options, inputHeight: train.height, inputWidth: train.width,
                                   channels: train.channels, seed: seed)
        evalAugmenter = eval.map {
            ImageAugmenter(options: options, inputHeight: $0.height, inputWidth: $0.width, channels: $0.channels, seed: seed)
        }
        self.seed = seed
        self.microBatchesPerStep = max(1, microBatchesPerStep)
        if config.initCodebookFromData { resetCodes(step: 0, onlyUnused: false) }
    }

    /// Images in a codebook sample: at least 256, and enough for two rows per code.
    private var sampleImages: Int {
        let c = model.config
        return max(256, (2 * c.codebookSize + c.numTokens - 1) / c.numTokens)
    }

    /// Runs the encoder on a sample of training images drawn from (seed, `step`) and moves codes to rows of
    /// it: every code (`onlyUnused` false: the initialisation) or those no row of the sample picks.
    func resetCodes(step: Int, onlyUnused: Bool) {
        let c = model.config, NT = c.numTokens, D = c.codebookDim, K = c.codebookSize
        let rng = Philox(seed: seed)
        let M = sampleImages, B = min(64, M)
        let tape = Tape()
        tape.training = false
        let (pixels, _, z) = model.recordEncoder(on: tape, batch: B)
        tape.seal()
        var rows = [Float](repeating: 0, count: M * NT * D)
        var done = 0
        while done < M {
            for b in 0..<B {
                let image = rng.below(train.count, stream: Self.sampleImageStream, step: UInt64(step), index: UInt64(min(done + b, M - 1)))
                augmenter.eval(train.pixels(image), into: pixels.data + b * imageFloats)
            }
            tape.forward()
            let count = min(B, M - done)
            rows.withUnsafeMutableBufferPointer { $0.baseAddress!.advanced(by: done * NT * D).update(from: z.data, count: count * NT * D) }
            done += count
        }
        let R = M * NT
        var targets: [Int]
        if onlyUnused {
            var codes = [Int32](repeating: 0, count: R)
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: vectorQuantizeScratchCount(N: R, K: K, D: D))
            defer { scratch.deallocate() }
            rows.withUnsafeBufferPointer { r in
                codes.withUnsafeMutableBufferPointer {
                    vectorQuantizeCodes($0.baseAddress!, z: r.baseAddress!, codebook: model.codebook.value, N: R, K: K, D: D, scratch: scratch)
                }
            }
            var used = [Bool](repeating: false, count: K)
            for code in codes { used[Int(code)] = true }
            targets = (0..<K).filter { !used[$0] }
        } else {
            targets = Array(0..<K)
        }
        // Rows of distinct values for the targets, in a random order (a Fisher-Yates shuffle drawn as it
        // goes): flat regions such as a black background give many equal rows, and equal codes would be
        // wasted. Should the sample hold fewer distinct rows than targets, the rest take rows again.
        var order = Array(0..<R), chosen: [Int] = [], seen = Set<[Float]>()
        var j = 0
        while chosen.count < targets.count && j < R {
            order.swapAt(j, j + rng.below(R - j, stream: Self.sampleRowStream, step: UInt64(step), index: UInt64(j)))
            if seen.insert(Array(rows[(order[j] * D)..<((order[j] + 1) * D)])).inserted { chosen.append(order[j]) }
            j += 1
        }
        for (t, k) in targets.enumerated() {
            let row = chosen.isEmpty ? order[t % R] : chosen[t % chosen.count]
            rows.withUnsafeBufferPointer { (model.codebook.value + k * D).update(from: $0.baseAddress! + row * D, count: D) }
        }
        restartedCodes += onlyUnused ? targets.count : 0
    }

    public var sampleCount: Int { train.count }
    public var tokensPerSample: Int { model.config.numTokens }
    public var trainingFLOPsPerSample: Double { model.trainingFLOPsPerImage }

    public var modelDescription: String {
        let c = model.config
        return "\(VQVAEConfig.architecture) image=\(c.imageSize)px channels=\(c.numChannels) grid=\(c.gridSize)x\(c.gridSize) codebook=\(c.codebookSize)x\(c.codebookDim) hidden=\(c.hiddenChannels) params=\(arena.parameterCount)"
    }

    public var hfConfigJSON: String { ModelFields.configJSON(model.config) }

    public func record(on tape: Tape, microBatch B: Int) -> Tensor {
        let g = model.record(on: tape, batch: B)
        graph = g
        microBatch = B
        slotValid = Array(repeating: true, count: B)
        return g.loss
    }

    private var imageFloats: Int { model.config.numChannels * model.config.imageSize * model.config.imageSize }

    public func fill(samples indices: UnsafeBufferPointer<Int>, epoch: Int, microBatchIndex: Int) {
        guard let g = graph else { preconditionFailure("record the graph before filling it") }
        // Before the step's first forward pass on this rank, every restart_dead_codes_every steps.
        let step = microBatchIndex / microBatchesPerStep, every = model.config.restartDeadCodesEvery
        if every > 0, step > 0, step % every == 0, step != lastRestart {
            lastRestart = step
            resetCodes(step: step, onlyUnused: true)
        }
        for (b, i) in indices.enumerated() {
            augmenter.train(train.pixels(i), epoch: epoch, sample: i, into: g.pixelValues.data + b * imageFloats)
        }
    }

    public func writeBatch(to path: String) throws {
        guard let g = graph else { return }
        var w = SafeTensorsWriter()
        w.add("pixel_values", shape: g.pixelValues.shape.dims, borrowing: UnsafeBufferPointer(g.pixelValues.values))
        try w.write(toPath: path)
    }

    public func loadPretrained(directory: String, log: (String) -> Void) throws {
        try loadInitFrom(directory: directory, log: log) { try model.load(shapes: $0, origin: $1, copy: $2) }
    }

    // MARK: - Evaluation

    public var evalSampleCount: Int { eval?.count ?? 0 }
    public var padsEvaluation: Bool { true }

    public func fill(evalSamples indices: UnsafeBufferPointer<Int>) {
        guard let g = graph, let eval, let evalAugmenter else { return }
        for (b, i) in indices.enumerated() {
            slotValid[b] = i >= 0
            evalAugmenter.eval(eval.pixels(max(i, 0)), into: g.pixelValues.data + b * imageFloats)
        }
    }

    /// Squared error in normalised units, squared error in pixel units, values, then one count per code.
    public var evalStatisticsCount: Int { 3 + model.config.codebookSize }

    public func accumulateEvalStatistics(into s: UnsafeMutablePointer<Double>) {
        guard let g = graph else { return }
        let n = imageFloats, C = model.config.numChannels, tokens = model.config.numTokens
        for b in 0..<microBatch where slotValid[b] {
            let x = g.input.data + b * n, y = g.reconstruction.data + b * n
            var normalised = 0.0, pixels = 0.0
            // Channels-last: element j is channel j % C, normalised with the training shards' std.
            for j in 0..<n {
                let d = Double(y[j] - x[j]), std = Double(train.std[j % C])
                normalised += d * d
                pixels += d * d * std * std
            }
            s[0] += normalised
            s[1] += pixels
            s[2] += Double(n)
            for t in 0..<tokens { s[3 + Int(g.codes[b * tokens + t])] += 1 }
        }
    }

    public func describeEval(_ s: [Double]) -> [(String, Double)] {
        let values = max(s[2], 1), histogram = s[3...]
        return [("eval_reconstruction_mse", s[0] / values),
                ("eval_psnr_db", 10 * log10(1 / max(s[1] / values, 1e-12))),
                ("eval_codebook_perplexity", codebookPerplexity(counts: histogram)),
                ("eval_codes_used", Double(histogram.filter { $0 > 0 }.count))]
    }
}
