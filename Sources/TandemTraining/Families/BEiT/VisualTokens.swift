import Foundation
import TandemCheckpoint
import TandemData
import TandemTensor

/// The visual tokens of an image-shard directory, BEiT's masked image modeling targets: the file a
/// tokenizer (`tandem tokenize-images`) writes and `VisionTask` reads (config keys `data.visual_tokens`,
/// `data.eval_visual_tokens`). The contract:
///
/// - a safetensors file with one tensor, `visual_tokens`, dtype I32, shape (N, NP): row i holds the NP
///   tokens of image i of the shard directory (`ImageDataset` index i), in row-major patch order (grid
///   rows top to bottom, each left to right: BEiT's patch order);
/// - `__metadata__` with at least `format` = `tandem-visual-tokens`, `vocab_size` = K (decimal), `grid` =
///   `<rows>x<cols>`, `images_manifest_sha256` = the lower-case SHA-256 hex of the image directory's
///   `manifest.json` bytes, and `tokenizer`, free text describing what made the tokens.
///
/// Every token lies in 0..<K. The tokens stay in the file's memory map.
public final class VisualTokens {
    public static let format = "tandem-visual-tokens"
    public static let tensorName = "visual_tokens"

    /// The file and the config key that named it (errors name both).
    public let path: String
    public let key: String
    /// Images, N.
    public let count: Int
    /// The patch grid, rows x columns; NP = rows x columns tokens per image.
    public let rows: Int, columns: Int
    public let vocabSize: Int
    public let manifestSHA256: String
    public let tokenizer: String
    private let file: SafeTensorsFile
    private let bytes: UnsafeRawBufferPointer

    /// Tokens per image, NP.
    public var tokensPerImage: Int { rows * columns }

    /// Opens `path` (named by config key `key`) and checks the format, the tensor and every token;
    /// errors are `ConfigError`s naming the key and the file.
    public init(path: String, key: String) throws {
        self.path = path
        self.key = key
        func fail(_ message: String) -> ConfigError { ConfigError("\(key): \(path): \(message)") }
        guard FileManager.default.fileExists(atPath: path) else {
            throw fail("no such file (the visual tokens of the images, as `tandem tokenize-images` writes them)")
        }
        do { file = try SafeTensorsFile(path: path) } catch { throw ConfigError("\(key): \(error)") }
        let meta = file.metadata
        guard meta["format"] == Self.format else {
            throw fail("not a visual tokens file: __metadata__ format is \(meta["format"].map { "\"\($0)\"" } ?? "missing"), not \"\(Self.format)\"")
        }
        guard let v = meta["vocab_size"], let vocab = Int(v), vocab >= 1 else {
            throw fail("__metadata__ vocab_size is \(meta["vocab_size"].map { "\"\($0)\"" } ?? "missing"), not a positive integer")
        }
        let gridParts = (meta["grid"] ?? "").split(separator: "x", omittingEmptySubsequences: false)
        guard gridParts.count == 2, let r = Int(gridParts[0]), let c = Int(gridParts[1]), r >= 1, c >= 1 else {
            throw fail("__metadata__ grid is \(meta["grid"].map { "\"\($0)\"" } ?? "missing"), not <rows>x<cols> such as 7x7")
        }
        guard let hash = meta["images_manifest_sha256"], hash.count == 64, hash.allSatisfy(\.isHexDigit) else {
            throw fail("__metadata__ images_manifest_sha256 is \(meta["images_manifest_sha256"].map { "\"\($0)\"" } ?? "missing"), not the 64-digit SHA-256 of the image directory's manifest.json")
        }
        guard let tokenizer = meta["tokenizer"] else { throw fail("__metadata__ has no tokenizer (a description of what made the tokens)") }
        guard let t = file.tensors[Self.tensorName] else {
            throw fail("no tensor \(Self.tensorName) (tensors: \(file.names.joined(separator: ", ")))")
        }
        guard file.names == [Self.tensorName] else {
            throw fail("holds tensors besides \(Self.tensorName): \(file.names.filter { $0 != Self.tensorName }.joined(separator: ", "))")
        }
        guard t.dtype == .i32 else { throw fail("\(Self.tensorName) has dtype \(t.dtype.rawValue), not I32") }
        guard t.shape.count == 2, t.shape[1] == r * c else {
            throw fail("\(Self.tensorName) has shape \(t.shape), not (images, \(r * c)) for the \(r)x\(c) grid of its metadata")
        }
        count = t.shape[0]
        rows = r; columns = c; vocabSize = vocab
        manifestSHA256 = hash.lowercased()
        self.tokenizer = tokenizer
        bytes = try file.rawBytes(Self.tensorName)
        let np = r * c
        for i in 0..<count * np {
            let token = bytes.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)
            guard token >= 0, Int(token) < vocab else {
                throw fail("token \(token) of image \(i / np), patch \(i % np) is outside 0..<\(vocab), the vocab_size of its metadata")
            }
        }
    }

    /// Checks that the tokens are those of `images` (the directory of config key `imagesKey`) for a model
    /// with a `grid` x `grid` patch grid: one row per image, the same grid, and the SHA-256 of the
    /// directory's manifest.json.
    public func check(images: ImageDataset, imagesKey: String, grid: Int) throws {
        func fail(_ message: String) -> ConfigError { ConfigError("\(key): \(path): \(message)") }
        guard count == images.count else {
            throw fail("holds the tokens of \(count) images, but \(imagesKey) (\(images.directory)) has \(images.count)")
        }
        guard rows == grid, columns == grid else {
            throw fail("tokens on a \(rows)x\(columns) grid, but the model's patch grid (image_size / patch_size) is \(grid)x\(grid)")
        }
        let manifest = (images.directory as NSString).appendingPathComponent(ImageShardManifest.fileName)
        let actual: String
        do { actual = SHA256.hex(try SHA256.hash(file: manifest)) } catch { throw ConfigError("\(imagesKey): \(manifest): \(error)") }
        guard actual == manifestSHA256 else {
            throw fail("visual tokens were computed for another image set: images_manifest_sha256 is \(manifestSHA256), but \(manifest) (\(imagesKey)) hashes to \(actual)")
        }
    }

    /// Writes image `index`'s NP tokens to `out`.
    public func copyRow(_ index: Int, into out: UnsafeMutablePointer<Int32>) {
        precondition(index >= 0 && index < count, "image \(index) out of range")
        let np = tokensPerImage
        for j in 0..<np { out[j] = bytes.loadUnaligned(fromByteOffset: 4 * (index * np + j), as: Int32.self) }
    }

    /// Image `index`'s NP tokens.
    public func row(_ index: Int) -> [Int32] {
        [Int32](unsafeUninitializedCapacity: tokensPerImage) { buffer, n in
            copyRow(index, into: buffer.baseAddress!)
            n = tokensPerImage
        }
    }

    /// A visual tokens file for `images` (tests, `tandem tokenize-images`): `tokens` row-major (N, rows x
    /// columns); `extraMetadata` adds entries to `__metadata__`.
    public static func write(tokens: [Int32], count: Int, rows: Int, columns: Int, vocabSize: Int, imagesDirectory: String,
                             tokenizer: String, extraMetadata: [String: String] = [:], to path: String) throws {
        precondition(tokens.count == count * rows * columns, "tokens must be (N, rows x columns)")
        let manifest = (imagesDirectory as NSString).appendingPathComponent(ImageShardManifest.fileName)
        var metadata = extraMetadata
        metadata.merge(["format": format, "vocab_size": String(vocabSize), "grid": "\(rows)x\(columns)",
                        "images_manifest_sha256": SHA256.hex(try SHA256.hash(file: manifest)), "tokenizer": tokenizer]) { $1 }
        var w = SafeTensorsWriter(metadata: metadata)
        w.add(tensorName, shape: [count, rows * columns], int32s: tokens)
        try w.write(toPath: path)
    }
}
