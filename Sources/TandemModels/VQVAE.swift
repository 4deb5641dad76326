import TandemAutograd
import TandemKernels
import TandemNN

/// A 2-D convolution's weight (COut, CIn, KH, KW) and bias (COut) with PyTorch's default init
/// (U(±1/√fan_in) for both), on channels-last activations.
public final class Conv2d {
    public let weight: Parameter
    public let bias: Parameter
    public let stride: Int
    public let padding: Int

    /// `zeroBias`: the bias starts at zero instead.
    public init(_ scope: ParameterScope, inputs: Int, outputs: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                zeroBias: Bool = false) {
        let bound = ParameterInit.uniform(bound: 1 / Float(inputs * kernel * kernel).squareRoot())
        weight = scope.parameter("weight", Shape(outputs, inputs, kernel, kernel), bound)
        bias = scope.parameter("bias", Shape(outputs), zeroBias ? .zeros : bound, decays: false)
        self.stride = stride
        self.padding = padding
    }

    public func callAsFunction(_ x: Tensor, on tape: Tape) -> Tensor {
        tape.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}

/// VQ-VAE's residual block (van den Oord et al. 2017): x + conv1x1(relu(conv3x3(relu(x)))).
public final class VQVAEResidualBlock {
    public let conv1: Conv2d
    public let conv2: Conv2d

    init(_ scope: ParameterScope, channels: Int, inner: Int) {
        conv1 = Conv2d(scope("conv1"), inputs: channels, outputs: inner, kernel: 3, padding: 1)
        conv2 = Conv2d(scope("conv2"), inputs: inner, outputs: channels, kernel: 1)
    }

    func callAsFunction(_ x: Tensor, on tape: Tape) -> Tensor {
        let h = conv1(tape.activation(x, .relu), on: tape)
        return tape.add(x, conv2(tape.activation(h, .relu), on: tape))
    }
}

/// Tandem's visual tokenizer for BEiT: a VQ-VAE (van den Oord et al., "Neural Discrete Representation
/// Learning", 2017) whose bottleneck is a cosine codebook (`Tape.vectorQuantize`). BEiT itself used
/// DALL-E's discrete VAE, trained with the Gumbel-softmax relaxation and a KL term; the VQ-VAE is chosen
/// here because its codes are a deterministic nearest-code lookup (the same image always gets the same
/// tokens, with no temperature schedule to tune) and because later BEiTs (BEiT v2's VQ-KD, PeCo's
/// VQ-GAN) moved to vector-quantised tokenizers for the same reason.
///
/// Layout, on channels-last activations (B, H, W, C):
/// - encoder: `conv_in` 3x3 to base_channels, then log2(downsample_factor) `down.i` 4x4 stride-2
///   convolutions (the first to hidden_channels), num_residual_blocks `res.j`, ReLU, `proj` 1x1 to
///   codebook_dim; every convolution but the last two followed by ReLU;
/// - `quantizer.codebook` (codebook_size, codebook_dim);
/// - decoder: `proj` 1x1 to hidden_channels, `res.j`, ReLU, then `up.i` (2x nearest upsampling and a 3x3
///   convolution, the last to base_channels) with ReLU, and `conv_out` 3x3 back to num_channels.
/// The loss is the mean squared error of the reconstruction against the (normalised) input plus the
/// quantiser's codebook and commitment terms.
public final class VQVAE {
    public let config: VQVAEConfig
    public let convIn: Conv2d
    public let down: [Conv2d]
    public let encoderBlocks: [VQVAEResidualBlock]
    public let encoderProjection: Conv2d
    public let codebook: Parameter
    public let decoderProjection: Conv2d
    public let decoderBlocks: [VQVAEResidualBlock]
    public let up: [Conv2d]
    public let convOut: Conv2d
    public let parameters: [Parameter]

    /// Registers every parameter in `arena` with PyTorch's default init (the codebook N(0, 1): only its
    /// directions matter). Throws when the config is invalid.
    public init(_ config: VQVAEConfig, arena: ParameterArena, rng: Philox) throws {
        try config.validate()
        self.config = config
        let root = ParameterScope(arena: arena, rng: rng)
        let first = arena.parameters.count
        let C = config.numChannels, base = config.baseChannels, hidden = config.hiddenChannels
        let n = config.downsamplings, encoder = root("encoder"), decoder = root("decoder")
        convIn = Conv2d(encoder("conv_in"), inputs: C, outputs: base, kernel: 3, padding: 1)
        down = (0..<n).map { Conv2d(encoder("down.\($0)"), inputs: $0 == 0 ? base : hidden, outputs: hidden, kernel: 4, stride: 2, padding: 1) }
        encoderBlocks = (0..<config.numResidualBlocks).map {
            VQVAEResidualBlock(encoder("res.\($0)"), channels: hidden, inner: config.residualChannels)
        }
        // A zero bias: PyTorch's default one would point every row the same way at init (the ReLU'd
        // features it adds to are small), so that every row would pick the same code.
        encoderProjection = Conv2d(encoder("proj"), inputs: hidden, outputs: config.codebookDim, kernel: 1, zeroBias: true)
        codebook = root("quantizer").parameter("codebook", Shape(config.codebookSize, config.codebookDim), .normal(std: 1), decays: false)
        decoderProjection = Conv2d(decoder("proj"), inputs: config.codebookDim, outputs: hidden, kernel: 1)
        decoderBlocks = (0..<config.numResidualBlocks).map {
            VQVAEResidualBlock(decoder("res.\($0)"), channels: hidden, inner: config.residualChannels)
        }
        up = (0..<n).map { Conv2d(decoder("up.\($0)"), inputs: hidden, outputs: $0 == n - 1 ? base : hidden, kernel: 3, padding: 1) }
        convOut = Conv2d(decoder("conv_out"), inputs: base, outputs: C, kernel: 3, padding: 1)
        parameters = Array(arena.parameters[first...])
    }

    /// The tensors of one recorded graph for B images; the caller fills `pixelValues`.
    public struct Graph {
        public let batch: Int
        /// (B, channels, H, W) normalised input pixels, as `pixel_values`.
        public let pixelValues: Tensor
        /// (B, H, W, channels) the same pixels channels-last: the reconstruction's target.
        public let input: Tensor
        /// (B, H, W, channels) the reconstruction, channels-last.
        public let reconstruction: Tensor
        /// (B, grid, grid) every image's visual tokens in row-major order, after `forward()`.
        public let codes: UnsafeMutablePointer<Int32>
        /// The reconstruction's mean squared error (1).
        public let reconstructionLoss: Tensor
        /// The quantiser's codebook + commitment loss (1).
        public let quantizationLoss: Tensor
        /// Their sum, the training loss (1).
        public let loss: Tensor
    }

    /// Records the encoder alone for B images: `pixels` (B, channels, H, W) to be filled, `input` the same
    /// channels-last, and `z` (B, grid, grid, codebook_dim), the rows the quantiser reads.
    public func recordEncoder(on tape: Tape, batch B: Int) -> (pixels: Tensor, input: Tensor, z: Tensor) {
        let S = config.imageSize
        let pixels = tape.input(Shape(B, config.numChannels, S, S))
        let x = tape.channelsLast(pixels)
        var h = tape.activation(convIn(x, on: tape), .relu)
        for (i, conv) in down.enumerated() {
            h = conv(h, on: tape)
            if i < down.count - 1 { h = tape.activation(h, .relu) }
        }
        for block in encoderBlocks { h = block(h, on: tape) }
        return (pixels, x, encoderProjection(tape.activation(h, .relu), on: tape))
    }

    /// Records encoder, quantiser, decoder and loss for B images.
    public func record(on tape: Tape, batch B: Int) -> Graph {
        let (pixels, x, z) = recordEncoder(on: tape, batch: B)
        let (q, vqLoss, codes) = tape.vectorQuantize(z, codebook: codebook, beta: config.commitmentCost)
        var h = decoderProjection(q, on: tape)
        for block in decoderBlocks { h = block(h, on: tape) }
        h = tape.activation(h, .relu)
        for conv in up { h = tape.activation(conv(tape.upsampleNearest2x(h), on: tape), .relu) }
        let reconstruction = convOut(h, on: tape)
        let mse = tape.meanSquaredError(reconstruction, target: x)
        let loss = tape.weightedSum([(mse, 1), (vqLoss, 1)])
        return Graph(batch: B, pixelValues: pixels, input: x, reconstruction: reconstruction, codes: codes, reconstructionLoss: mse,
                     quantizationLoss: vqLoss, loss: loss)
    }

    /// Training FLOPs per image: 6 per weight per output position of each convolution (2 forward, 4
    /// backward), as DESIGN.md counts a Linear per row; the codebook search counts 6 K D per token. Biases,
    /// activations, upsampling and the losses count nothing.
    public var trainingFLOPsPerImage: Double {
        let S = config.imageSize, g = config.gridSize
        func conv(_ c: Conv2d, positions: Int) -> Double { 6 * Double(c.weight.count) * Double(positions) }
        var flops = conv(convIn, positions: S * S)
        var side = S
        for c in down { side /= 2; flops += conv(c, positions: side * side) }
        for b in encoderBlocks + decoderBlocks { flops += conv(b.conv1, positions: g * g) + conv(b.conv2, positions: g * g) }
        flops += conv(encoderProjection, positions: g * g) + conv(decoderProjection, positions: g * g)
        flops += 6 * Double(codebook.count) * Double(g * g)
        for c in up { side *= 2; flops += conv(c, positions: side * side) }
        return flops + conv(convOut, positions: S * S)
    }

    /// Fills every parameter from a checkpoint's tensors (all are required), given their shapes and a way
    /// to copy one as Float32; a missing tensor or a shape that differs is an error naming it and `origin`.
    public func load(shapes: [String: [Int]], origin: String,
                     copy: (_ name: String, _ into: UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> CheckpointLoadReport {
        try loadCheckpointTensors(parameters, prefix: "", isOptional: { _ in false }, shapes: shapes, origin: origin,
                                  error: { VQVAEError($0) }, copy: copy)
    }
}
