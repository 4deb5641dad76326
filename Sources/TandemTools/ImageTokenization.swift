import Foundation
import TandemAutograd
import TandemCheckpoint
import TandemData
import TandemKernels
import TandemModels
import TandemTraining

/// `tandem tokenize-images`: the visual tokens of every image of a shard directory under a VQ-VAE
/// tokenizer checkpoint (`VQVAEFamily`), written as the file BEiT's masked image modeling reads
/// (`data.visual_tokens`), with the reconstruction's quality, the codebook's use and, on request, a picture
/// of originals above their reconstructions.
public enum ImageTokenization {
    /// A loaded tokenizer.
    public final class Tokenizer {
        public let config: VQVAEConfig
        public let model: VQVAE
        public let arena: ParameterArena
        /// The checkpoint's model.safetensors SHA-256 (hex).
        public let weightsSHA256: String

        /// Loads `directory` through `VQVAEFamily.loadPretrained` (config.json with model_type vqvae, which
        /// must hold the image_mean/image_std the tokenizer was trained with, and model.safetensors); errors
        /// name the file.
        public init(directory: String) throws {
            let weightsPath: String
            (model, arena, weightsPath) = try VQVAEFamily.loadPretrained(directory: directory)
            config = model.config
            guard config.imageMean != nil, config.imageStd != nil else {
                throw ConfigError("\((directory as NSString).appendingPathComponent("config.json")): no image_mean/image_std (the normalisation the tokenizer was trained with)")
            }
            weightsSHA256 = try sha256(ofFile: weightsPath)
        }
    }

    /// What `run` measured.
    public struct Summary {
        public var images = 0
        public var reconstructionMSE = 0.0
        public var psnr = 0.0
        public var perplexity = 0.0
        public var codesUsed = 0
        public var seconds = 0.0
    }

    /// Tokenizes every image of `images` with the tokenizer in `tokenizerDirectory`, writing `output` (a
    /// safetensors file: `visual_tokens` I32 (N, grid²), row-major patch order; metadata format, vocab_size,
    /// grid, images_manifest_sha256, tokenizer, tokenizer_sha256) and, when `picture` is given, a PNG of
    /// `pictureCount` images (the first of each class in turn) above their reconstructions, scaled up
    /// `pictureScale` times. `log` hears the figures.
    @discardableResult
    public static func run(tokenizerDirectory: String, images: String, output: String, picture: String?,
                           pictureCount: Int = 20, pictureScale: Int = 3, batch: Int = 256,
                           log: (String) -> Void) throws -> Summary {
        let tokenizer = try Tokenizer(directory: tokenizerDirectory)
        let config = tokenizer.config
        let data: ImageDataset
        do { data = try ImageDataset(directory: images) } catch { throw ConfigError("--images: \(error)") }
        guard data.channels == config.numChannels else {
            throw ConfigError("--images: \(images) holds \(data.channels)-channel images but the tokenizer reads \(config.numChannels)")
        }
        guard data.count > 0 else { throw ConfigError("--images: \(images) holds no images") }
        let mean = config.imageMean!.map { Float($0) }, std = config.imageStd!.map { Float($0) }
        let S = config.imageSize, C = config.numChannels, n = C * S * S, NT = config.numTokens
        let augmenter = ImageAugmenter(options: AugmentationOptions(outputSize: S, randomResizedCrop: false, horizontalFlip: false,
                                                                    mean: mean, std: std),
                                       inputHeight: data.height, inputWidth: data.width, channels: C, seed: 0)
        let B = max(1, min(batch, data.count))
        let tape = Tape()
        tape.training = false
        tape.recordsGradients = false
        let g = tokenizer.model.record(on: tape, batch: B)
        tape.seal()

        var tokens = [Int32](repeating: 0, count: data.count * NT)
        var histogram = [Double](repeating: 0, count: config.codebookSize)
        var squared = 0.0, squaredPixels = 0.0
        // The picture's images: the first image of each class in turn, then the next of each, ...
        let shown = pictureImages(data, count: picture == nil ? 0 : pictureCount)
        var shownReconstructions: [Int: [Float]] = [:]
        let start = Date()
        var first = 0
        while first < data.count {
            let count = min(B, data.count - first)
            for b in 0..<B { augmenter.eval(data.pixels(first + min(b, count - 1)), into: g.pixelValues.data + b * n) }
            tape.forward()
            for b in 0..<count {
                let x = g.input.data + b * n, y = g.reconstruction.data + b * n
                for j in 0..<n {
                    let d = Double(y[j] - x[j]), s = Double(std[j % C])
                    squared += d * d
                    squaredPixels += d * d * s * s
                }
                for t in 0..<NT {
                    let code = g.codes[b * NT + t]
                    tokens[(first + b) * NT + t] = code
                    histogram[Int(code)] += 1
                }
                if shown.contains(first + b) { shownReconstructions[first + b] = Array(UnsafeBufferPointer(start: y, count: n)) }
            }
            first += count
        }
        var summary = Summary()
        summary.seconds = Date().timeIntervalSince(start)
        summary.images = data.count
        summary.reconstructionMSE = squared / Double(data.count * n)
        summary.psnr = 10 * log10(1 / max(squaredPixels / Double(data.count * n), 1e-12))
        summary.perplexity = codebookPerplexity(counts: histogram)
        summary.codesUsed = histogram.filter { $0 > 0 }.count

        // Written beside the output and renamed over it, so a failure never leaves a partial token file.
        let temporary = output + ".partial"
        do {
            try VisualTokens.write(tokens: tokens, count: data.count, rows: config.gridSize, columns: config.gridSize,
                                   vocabSize: config.codebookSize, imagesDirectory: images,
                                   tokenizer: "\(VQVAEConfig.architecture) \(tokenizerDirectory)",
                                   extraMetadata: ["images": images, "tokenizer_sha256": tokenizer.weightsSHA256], to: temporary)
        } catch { throw ConfigError("--out: \(output): \(error)") }
        guard rename(temporary, output) == 0 else {
            throw ConfigError("--out: cannot rename \(temporary) to \(output): \(String(cString: strerror(errno)))")
        }
        let rate = String(format: "%.0f", Double(data.count) / max(summary.seconds, 1e-9))
        log("tokenize-images: \(data.count) images of \(images) -> \(output): \(config.gridSize)x\(config.gridSize) tokens each, \(rate) images/s")
        log(String(format: "tokenize-images: reconstruction MSE %.4f (normalised), PSNR %.2f dB; codebook perplexity %.1f, %d of %d codes used",
                   summary.reconstructionMSE, summary.psnr, summary.perplexity, summary.codesUsed, config.codebookSize))
        if let picture {
            try writePicture(path: picture, data: data, indices: shown, reconstructions: shownReconstructions, config: config,
                             mean: mean, std: std, augmenter: augmenter, scale: pictureScale)
            log("tokenize-images: \(shown.count) originals (top) and their reconstructions (bottom) in \(picture)")
        }
        return summary
    }

    /// `count` image indices: the first image of each class in turn, then the second of each, and so on.
    static func pictureImages(_ data: ImageDataset, count: Int) -> [Int] {
        guard count > 0 else { return [] }
        var byClass: [Int32: [Int]] = [:]
        for i in 0..<data.count {
            let label = data.label(i)
            if byClass[label, default: []].count < count { byClass[label, default: []].append(i) }
        }
        let classes = byClass.keys.sorted()
        var chosen: [Int] = []
        var round = 0
        while chosen.count < min(count, data.count) {
            for c in classes where round < byClass[c]!.count && chosen.count < count { chosen.append(byClass[c]![round]) }
            round += 1
        }
        return chosen
    }

    /// Originals (the tokenizer's input view, un-normalised) in the top row, reconstructions below, each
    /// image `scale` x `scale` pixels per pixel with a 2-pixel white margin.
    static func writePicture(path: String, data: ImageDataset, indices: [Int], reconstructions: [Int: [Float]], config: VQVAEConfig,
                             mean: [Float], std: [Float], augmenter: ImageAugmenter, scale: Int) throws {
        let S = config.imageSize, C = config.numChannels, n = C * S * S, cell = S * scale, gap = 2
        let outChannels = C == 1 ? 1 : 3
        let width = indices.count * (cell + gap) + gap, height = 2 * (cell + gap) + gap
        var canvas = [UInt8](repeating: 255, count: width * height * outChannels)
        let input = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { input.deallocate() }
        func draw(_ values: [Float], channelsLast: Bool, column: Int, row: Int) {
            for y in 0..<cell {
                for x in 0..<cell {
                    let sy = y / scale, sx = x / scale
                    let offset = ((gap + row * (cell + gap) + y) * width + gap + column * (cell + gap) + x) * outChannels
                    for c in 0..<outChannels {
                        let ch = min(c, C - 1)
                        let v = channelsLast ? values[(sy * S + sx) * C + ch] : values[(ch * S + sy) * S + sx]
                        let pixel = (v * std[ch] + mean[ch]) * 255
                        canvas[offset + c] = UInt8(max(0, min(255, pixel.rounded())))
                    }
                }
            }
        }
        for (column, i) in indices.enumerated() {
            augmenter.eval(data.pixels(i), into: input)
            draw(Array(UnsafeBufferPointer(start: input, count: n)), channelsLast: false, column: column, row: 0)
            if let r = reconstructions[i] { draw(r, channelsLast: true, column: column, row: 1) }
        }
        do { try writePNG(path: path, pixels: canvas, width: width, height: height, channels: outChannels) } catch {
            throw ConfigError("--picture: \(error)")
        }
    }
}
