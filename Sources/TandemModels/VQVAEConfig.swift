import Foundation

/// An error in a VQ-VAE tokenizer config or checkpoint, naming the field or tensor concerned.
public struct VQVAEError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The hyper-parameters of Tandem's VQ-VAE image tokenizer (`VQVAE`), as its config.json names them
/// (`model_type: vqvae`; transformers has no such model, so the names are Tandem's, in transformers'
/// snake_case style). It turns an image_size x image_size image into a grid of
/// (image_size / downsample_factor)² visual tokens from a codebook of codebook_size entries: the
/// targets of BEiT's masked image modeling, with downsample_factor equal to BEiT's patch_size.
public struct VQVAEConfig: Codable, Equatable, Sendable {
    /// Square images of image_size x image_size pixels.
    public var imageSize: Int
    public var numChannels: Int
    /// Channels of the first and last convolutions (at full resolution).
    public var baseChannels: Int
    /// Channels at the token grid's resolution (and of every downsampled layer).
    public var hiddenChannels: Int
    /// The inner width of each residual block (3x3 convolution to this, 1x1 back).
    public var residualChannels: Int
    /// Residual blocks at the token grid, in the encoder and again in the decoder.
    public var numResidualBlocks: Int
    /// Pixels per token side: a power of two, one stride-2 convolution (and one 2x upsampling) per factor 2.
    public var downsampleFactor: Int
    /// The visual-token vocabulary.
    public var codebookSize: Int
    /// The dimension of the codes (the encoder projects to it before the search).
    public var codebookDim: Int
    /// β, the weight of the commitment term.
    public var commitmentCost: Float
    /// The per-channel mean and std (in units of pixel/255) the tokenizer's inputs were normalised with:
    /// those of its training shards, written by training so that `tokenize-images` normalises any image set
    /// the same way (transformers' image processors call them so). nil until set.
    /// Training: whether the codebook starts as encoder outputs of training images (a random sample of
    /// rows, as k-means initialisation seeds its centres) rather than at random directions.
    public var initCodebookFromData: Bool
    /// Training: every this many steps (0: never), codes that a sample of training images no longer uses
    /// restart at rows of that sample.
    public var restartDeadCodesEvery: Int
    public var imageMean: [Double]?
    public var imageStd: [Double]?

    public init(imageSize: Int = 28, numChannels: Int = 1, baseChannels: Int = 32, hiddenChannels: Int = 64,
                residualChannels: Int = 32, numResidualBlocks: Int = 2, downsampleFactor: Int = 4, codebookSize: Int = 512,
                codebookDim: Int = 32, commitmentCost: Float = 0.25, initCodebookFromData: Bool = true,
                restartDeadCodesEvery: Int = 100, imageMean: [Double]? = nil, imageStd: [Double]? = nil) {
        self.imageSize = imageSize; self.numChannels = numChannels; self.baseChannels = baseChannels
        self.hiddenChannels = hiddenChannels; self.residualChannels = residualChannels
        self.numResidualBlocks = numResidualBlocks; self.downsampleFactor = downsampleFactor
        self.codebookSize = codebookSize; self.codebookDim = codebookDim; self.commitmentCost = commitmentCost
        self.initCodebookFromData = initCodebookFromData; self.restartDeadCodesEvery = restartDeadCodesEvery
        self.imageMean = imageMean; self.imageStd = imageStd
    }

    /// The architecture name config.json's `architectures` holds.
    public static let architecture = "VQVAEImageTokenizer"
    public static let modelType = "vqvae"

    /// Tokens per image side.
    public var gridSize: Int { imageSize / downsampleFactor }
    /// Tokens per image.
    public var numTokens: Int { gridSize * gridSize }
    /// Stride-2 convolutions in the encoder (and 2x upsamplings in the decoder).
    public var downsamplings: Int { downsampleFactor.trailingZeroBitCount }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", numChannels = "num_channels", baseChannels = "base_channels"
        case hiddenChannels = "hidden_channels", residualChannels = "residual_channels"
        case numResidualBlocks = "num_residual_blocks", downsampleFactor = "downsample_factor"
        case codebookSize = "codebook_size", codebookDim = "codebook_dim", commitmentCost = "commitment_cost"
        case initCodebookFromData = "init_codebook_from_data", restartDeadCodesEvery = "restart_dead_codes_every"
        case imageMean = "image_mean", imageStd = "image_std"
        case modelType = "model_type", architectures
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != Self.modelType {
            throw VQVAEError("model_type \"\(type)\" is not \(Self.modelType)")
        }
        let d = VQVAEConfig()
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        imageSize = try value(.imageSize, d.imageSize)
        numChannels = try value(.numChannels, d.numChannels)
        baseChannels = try value(.baseChannels, d.baseChannels)
        hiddenChannels = try value(.hiddenChannels, d.hiddenChannels)
        residualChannels = try value(.residualChannels, d.residualChannels)
        numResidualBlocks = try value(.numResidualBlocks, d.numResidualBlocks)
        downsampleFactor = try value(.downsampleFactor, d.downsampleFactor)
        codebookSize = try value(.codebookSize, d.codebookSize)
        codebookDim = try value(.codebookDim, d.codebookDim)
        commitmentCost = try value(.commitmentCost, d.commitmentCost)
        initCodebookFromData = try value(.initCodebookFromData, d.initCodebookFromData)
        restartDeadCodesEvery = try value(.restartDeadCodesEvery, d.restartDeadCodesEvery)
        imageMean = try c.decodeIfPresent([Double].self, forKey: .imageMean)
        imageStd = try c.decodeIfPresent([Double].self, forKey: .imageStd)
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode([Self.architecture], forKey: .architectures)
        try c.encode(Self.modelType, forKey: .modelType)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(numChannels, forKey: .numChannels)
        try c.encode(baseChannels, forKey: .baseChannels)
        try c.encode(hiddenChannels, forKey: .hiddenChannels)
        try c.encode(residualChannels, forKey: .residualChannels)
        try c.encode(numResidualBlocks, forKey: .numResidualBlocks)
        try c.encode(downsampleFactor, forKey: .downsampleFactor)
        try c.encode(codebookSize, forKey: .codebookSize)
        try c.encode(codebookDim, forKey: .codebookDim)
        try c.encode(commitmentCost, forKey: .commitmentCost)
        try c.encode(initCodebookFromData, forKey: .initCodebookFromData)
        try c.encode(restartDeadCodesEvery, forKey: .restartDeadCodesEvery)
        try c.encodeIfPresent(imageMean, forKey: .imageMean)
        try c.encodeIfPresent(imageStd, forKey: .imageStd)
    }

    /// Throws, naming the field, when the model cannot be built.
    public func validate() throws {
        for (key, value) in [("image_size", imageSize), ("num_channels", numChannels), ("base_channels", baseChannels),
                             ("hidden_channels", hiddenChannels), ("residual_channels", residualChannels),
                             ("downsample_factor", downsampleFactor), ("codebook_size", codebookSize),
                             ("codebook_dim", codebookDim)] where value <= 0 {
            throw VQVAEError("\(key) must be positive, not \(value)")
        }
        guard restartDeadCodesEvery >= 0 else {
            throw VQVAEError("restart_dead_codes_every must not be negative (0 turns restarts off), not \(restartDeadCodesEvery)")
        }
        guard numResidualBlocks >= 0 else { throw VQVAEError("num_residual_blocks must not be negative, not \(numResidualBlocks)") }
        guard downsampleFactor.nonzeroBitCount == 1 && downsampleFactor >= 2 else {
            throw VQVAEError("downsample_factor \(downsampleFactor) must be a power of two of at least 2")
        }
        guard imageSize % downsampleFactor == 0 else {
            throw VQVAEError("image_size \(imageSize) is not a multiple of downsample_factor \(downsampleFactor)")
        }
        guard codebookSize <= Int(Int32.max) else { throw VQVAEError("codebook_size \(codebookSize) is too large") }
        guard commitmentCost >= 0 && commitmentCost.isFinite else {
            throw VQVAEError("commitment_cost \(commitmentCost) must be a non-negative number")
        }
        for (key, values) in [("image_mean", imageMean), ("image_std", imageStd)] {
            guard let values else { continue }
            guard values.count == numChannels else {
                throw VQVAEError("\(key) has \(values.count) values for \(numChannels) channels")
            }
            if key == "image_std", values.contains(where: { !($0 > 0) }) { throw VQVAEError("image_std values must be positive") }
        }
    }
}
