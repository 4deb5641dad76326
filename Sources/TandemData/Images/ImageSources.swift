import CImageCodecs
import Foundation

/// A per-image failure that `prepare-images` reports and skips (a corrupt or unreadable image file);
/// any other error ends the run.
public struct ImageDecodingError: Error, CustomStringConvertible, Equatable {
    /// The file concerned and what is wrong with it.
    public let path: String
    public let reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}

/// The input of `tandem prepare-images`: a fixed, ordered list of labelled images of one size.
public protocol ImageSource: AnyObject {
    /// "idx", "cifar-10", "cifar-100" or "folder".
    var kind: String { get }
    /// Number of images, their size (after any resize) and the class names (label = index).
    var count: Int { get }
    var height: Int { get }
    var width: Int { get }
    var channels: Int { get }
    var classes: [String] { get }
    /// How images are brought to height x width ("none" when they are that size already).
    var resize: String { get }
    /// The label of image `i`.
    func label(_ i: Int) -> Int32
    /// Writes image `i` (height x width x channels bytes, HWC) into `pixels`. Throws `ImageDecodingError`
    /// for an image that must be skipped, other errors for a failed run. Called from several threads at once.
    func read(_ i: Int, into pixels: UnsafeMutablePointer<UInt8>) throws
}

/// Options of `tandem prepare-images` beyond the input and output.
public struct PrepareImagesOptions: Sendable {
    /// Side of the square images a folder tree is resized and cropped to (required for folder trees; IDX and
    /// CIFAR images keep their size).
    public var size: Int?
    /// Images per shard.
    public var shardSize: Int = 10_000
    /// "train" or "test": which CIFAR batch files a CIFAR directory contributes.
    public var split: String = "train"
    /// The IDX labels file when it is not beside the images under the standard name.
    public var labels: String?
    /// Class names overriding the defaults of IDX inputs.
    public var classes: [String]?
    /// Threads decoding images at once (per rank).
    public var threads: Int = 1

    public init(size: Int? = nil, shardSize: Int = 10_000, split: String = "train", labels: String? = nil, classes: [String]? = nil,
                threads: Int = 1) {
        self.size = size
        self.shardSize = shardSize
        self.split = split
        self.labels = labels
        self.classes = classes
        self.threads = threads
    }
}

/// Opens `input` as a folder tree, a CIFAR binary directory or batch file, or an MNIST-style IDX images file.
public func openImageSource(_ input: String, options: PrepareImagesOptions) throws -> any ImageSource {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else { throw DataError.io(path: input, reason: "no such file or directory") }
    if isDirectory.boolValue {
        if CIFARSource.isCIFARDirectory(input) { return try CIFARSource(directory: input, split: options.split) }
        guard let size = options.size else { throw DataError.invalidArgument("\(input): a folder tree needs --size (the side of the square images)") }
        return try FolderSource(root: input, size: size)
    }
    if input.hasSuffix(".bin") { return try CIFARSource(files: [input]) }
    return try IDXSource(images: input, labels: options.labels, classes: options.classes)
}

// MARK: - Whole-file reading

/// The bytes of a file, gunzipped when it is gzip-compressed (zlib's gz* functions read plain files as is).
func readMaybeGzipped(_ path: String) throws -> [UInt8] {
    guard let gz = gzopen(path, "rb") else { throw DataError.io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
    defer { gzclose(gz) }
    gzbuffer(gz, 1 << 18)
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { gzread(gz, $0.baseAddress, UInt32($0.count)) }
        if n < 0 {
            var code: Int32 = 0
            let message = gzerror(gz, &code).map { String(cString: $0) } ?? "read error"
            throw DataError.invalidFormat(path: path, reason: "cannot decompress: \(message)")
        }
        if n == 0 { break }
        out.append(contentsOf: chunk[0..<Int(n)])
    }
    return out
}

@inline(__always) func bigEndianU32(_ bytes: [UInt8], _ offset: Int) -> Int {
    Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
}

// MARK: - IDX (MNIST, Fashion-MNIST)

/// MNIST-style IDX files (http://yann.lecun.com/exdb/mnist/): an images file of magic 0x00000803
/// (u8, dims N x H x W, big-endian) and a labels file of magic 0x00000801 (u8, N), gzipped or not.
/// Images are grey (1 channel) and kept at their size.
public final class IDXSource: ImageSource {
    public let kind = "idx"
    public let count: Int
    public let height: Int
    public let width: Int
    public let channels = 1
    public let classes: [String]
    public let resize = "none"
    public let imagesPath: String
    public let labelsPath: String
    private let images: [UInt8]
    private let labels: [UInt8]

    /// The ten Fashion-MNIST classes (Xiao et al. 2017), in label order.
    public static let fashionMNISTClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                             "Sneaker", "Bag", "Ankle boot"]

    /// The labels file beside `images` by the standard naming: `...-images-idx3-ubyte[.gz]` ->
    /// `...-labels-idx1-ubyte[.gz]`.
    public static func labelsPath(besideImages images: String) -> String? {
        let directory = (images as NSString).deletingLastPathComponent
        let name = (images as NSString).lastPathComponent
        guard name.contains("images-idx3") else { return nil }
        let labels = name.replacingOccurrences(of: "images-idx3", with: "labels-idx1")
        return directory.isEmpty ? labels : (directory as NSString).appendingPathComponent(labels)
    }

    /// Reads both files; `classes` defaults to the Fashion-MNIST names for a path under a fashion-mnist
    /// folder, else "0" ... "9" (as many as the largest label needs).
    public init(images: String, labels: String? = nil, classes: [String]? = nil) throws {
        guard let labelsFile = labels ?? IDXSource.labelsPath(besideImages: images) else {
            throw DataError.invalidArgument("\(images): cannot guess the IDX labels file (name it with --labels)")
        }
        imagesPath = images
        labelsPath = labelsFile
        self.images = try readMaybeGzipped(images)
        self.labels = try readMaybeGzipped(labelsFile)
        func bad(_ path: String, _ reason: String) -> DataError { .invalidFormat(path: path, reason: reason) }
        guard self.images.count >= 16, bigEndianU32(self.images, 0) == 0x0000_0803 else {
            throw bad(images, "not an IDX images file (expected magic 0x00000803: unsigned bytes, 3 dimensions)")
        }
        guard self.labels.count >= 8, bigEndianU32(self.labels, 0) == 0x0000_0801 else {
            throw bad(labelsFile, "not an IDX labels file (expected magic 0x00000801: unsigned bytes, 1 dimension)")
        }
        let n = bigEndianU32(self.images, 4), h = bigEndianU32(self.images, 8), w = bigEndianU32(self.images, 12)
        guard (1...ImageShardFormat.maxSide).contains(h), (1...ImageShardFormat.maxSide).contains(w) else { throw bad(images, "image size \(h)x\(w) is out of range") }
        guard self.images.count == 16 + n * h * w else {
            throw bad(images, "\(self.images.count) bytes (decompressed), the header's \(n) images of \(h)x\(w) need \(16 + n * h * w)")
        }
        guard bigEndianU32(self.labels, 4) == n, self.labels.count == 8 + n else {
            throw bad(labelsFile, "\(bigEndianU32(self.labels, 4)) labels in \(self.labels.count) bytes, \(images) has \(n) images")
        }
        let largest = Int(self.labels[8...].max() ?? 0)
        if let classes {
            self.classes = classes
        } else if images.lowercased().contains("fashion") && largest < 10 {
            self.classes = IDXSource.fashionMNISTClasses
        } else {
            self.classes = (0...max(9, largest)).map(String.init)
        }
        guard largest < self.classes.count else { throw bad(labelsFile, "label \(largest) is out of range of the \(self.classes.count) classes") }
        count = n
        height = h
        width = w
    }

    public func label(_ i: Int) -> Int32 { Int32(labels[8 + i]) }
    public func read(_ i: Int, into pixels: UnsafeMutablePointer<UInt8>) throws {
        let n = height * width
        images.withUnsafeBufferPointer { pixels.update(from: $0.baseAddress! + 16 + i * n, count: n) }
    }
}
