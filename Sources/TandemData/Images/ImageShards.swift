import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The binary layout of an image shard, a pair of files `NAME.bin` and `NAME.labels`. All integers are
/// little-endian; every image of a directory has the same H x W x C.
///
/// `NAME.bin`, the pixels of N images:
/// ```
/// offset   size      field
///      0      8      magic "TDIMGBIN"
///      8      4      version (u32) = 1
///     12      4      H, height (u32)
///     16      4      W, width (u32)
///     20      4      C, channels (u32): 1 (grey) or 3 (RGB)
///     24      8      N, number of images (u64)
///     32  N*H*W*C    pixels (u8), image after image, each row-major HWC (channels interleaved)
/// ```
/// `NAME.labels`, their classes:
/// ```
/// offset  size  field
///      0     8  magic "TDIMGLBL"
///      8     4  version (u32) = 1
///     12     4  reserved (u32) = 0
///     16     8  N (u64), equal to the .bin's
///     24   4*N  labels (i32): index into the manifest's `classes`
/// ```
public enum ImageShardFormat {
    /// The first 8 bytes of each file, the version after them, and the header sizes.
    public static let binMagic = Array("TDIMGBIN".utf8)
    public static let labelsMagic = Array("TDIMGLBL".utf8)
    public static let version: UInt32 = 1
    public static let binHeaderSize = 32
    public static let labelsHeaderSize = 24
    /// Largest accepted side and channel count: guards the size arithmetic against corrupt headers.
    public static let maxSide = 1 << 16
    public static let maxChannels = 4

    /// The shard name of shard number `k`: `images-00000`, `images-00001`, ...
    public static func shardName(_ k: Int) -> String {
        let digits = String(k)
        return "images-" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }
}

// MARK: - Manifest

/// `manifest.json` of an image shard directory:
/// ```json
/// {"format": "tandem-image-shards", "version": 1, "source": "idx",
///  "height": 28, "width": 28, "channels": 1, "resize": "none",
///  "classes": ["T-shirt/top", ...], "mean": [0.286], "std": [0.353],
///  "count": 60000, "class_counts": [6000, ...],
///  "skipped": 0, "skipped_files": [{"path": "...", "error": "..."}],
///  "shards": [{"name": "images-00000", "count": 10000, "bin_sha256": "<hex>", "labels_sha256": "<hex>"}]}
/// ```
/// `mean` and `std` are per channel over every pixel of the written images, in units of pixel/255 (what
/// torchvision's `Normalize` takes); `std` is the population standard deviation. Labels index `classes`.
public struct ImageShardManifest: Codable, Equatable, Sendable {
    /// One shard's entry: its name, image count and the SHA-256 of its two files.
    public struct Shard: Codable, Equatable, Sendable {
        public var name: String
        public var count: Int
        public var bin_sha256: String
        public var labels_sha256: String

        public init(name: String, count: Int, bin_sha256: String, labels_sha256: String) {
            self.name = name
            self.count = count
            self.bin_sha256 = bin_sha256
            self.labels_sha256 = labels_sha256
        }
    }

    /// An input image that could not be decoded, and why.
    public struct Skipped: Codable, Equatable, Sendable {
        public var path: String
        public var error: String

        public init(path: String, error: String) {
            self.path = path
            self.error = error
        }
    }

    /// The file name in a shard directory and the value of its "format" key.
    public static let fileName = "manifest.json"
    public static let formatName = "tandem-image-shards"

    /// The keys of the layout above.
    public var format: String = ImageShardManifest.formatName
    public var version: Int = 1
    /// What the images came from: "idx", "cifar-10", "cifar-100" or "folder".
    public var source: String
    public var height: Int
    public var width: Int
    public var channels: Int
    /// How the images were brought to height x width ("none" when they already were).
    public var resize: String
    public var classes: [String]
    public var mean: [Double]
    public var std: [Double]
    public var count: Int
    public var class_counts: [Int]
    public var skipped: Int
    public var skipped_files: [Skipped]
    public var shards: [Shard]

    public init(source: String, height: Int, width: Int, channels: Int, resize: String, classes: [String],
                mean: [Double], std: [Double], count: Int, class_counts: [Int], skipped_files: [Skipped], shards: [Shard]) {
        self.source = source
        self.height = height
        self.width = width
        self.channels = channels
        self.resize = resize
        self.classes = classes
        self.mean = mean
        self.std = std
        self.count = count
        self.class_counts = class_counts
        self.skipped = skipped_files.count
        self.skipped_files = skipped_files
        self.shards = shards
    }

    /// Writes `directory/manifest.json` atomically.
    public func write(directory: String) throws { try ManifestFile.write(self, directory: directory) }

    /// Reads `directory/manifest.json` and checks that its keys agree with each other.
    public static func read(directory: String) throws -> ImageShardManifest {
        let (data, path) = try ManifestFile.contents(directory: directory,
                                                     missing: "no image shard manifest (run tandem prepare-images)")
        return try decode(data, path: path)
    }

    /// Parses and validates manifest bytes; `path` names them in errors.
    public static func decode(_ data: Data, path: String) throws -> ImageShardManifest {
        let m: ImageShardManifest
        do { m = try JSONDecoder().decode(ImageShardManifest.self, from: data) } catch {
            throw DataError.invalidFormat(path: path, reason: "not an image shard manifest: \(error)")
        }
        func bad(_ reason: String) -> DataError { .invalidFormat(path: path, reason: reason) }
        guard m.format == formatName, m.version == 1 else {
            throw bad("format \(m.format) version \(m.version), expected \(formatName) version 1")
        }
        guard (1...ImageShardFormat.maxSide).contains(m.height), (1...ImageShardFormat.maxSide).contains(m.width),
              (1...ImageShardFormat.maxChannels).contains(m.channels) else {
            throw bad("image size \(m.height)x\(m.width)x\(m.channels) is out of range")
        }
        guard !m.classes.isEmpty, m.classes.count <= Int(Int32.max) else { throw bad("no classes") }
        guard m.mean.count == m.channels, m.std.count == m.channels else {
            throw bad("mean and std need \(m.channels) values each, found \(m.mean.count) and \(m.std.count)")
        }
        guard m.class_counts.count == m.classes.count else {
            throw bad("class_counts has \(m.class_counts.count) entries for \(m.classes.count) classes")
        }
        guard m.shards.allSatisfy({ $0.count >= 0 }), m.class_counts.allSatisfy({ $0 >= 0 }),
              m.count == m.shards.reduce(0, { $0 &+ $1.count }), m.count == m.class_counts.reduce(0, { $0 &+ $1 }) else {
            throw bad("count \(m.count) differs from the sum of the shard counts or of the class counts")
        }
        guard m.skipped == m.skipped_files.count else {
            throw bad("skipped is \(m.skipped) but \(m.skipped_files.count) files are listed")
        }
        guard Set(m.shards.map(\.name)).count == m.shards.count,
              m.shards.allSatisfy({ !$0.name.isEmpty && !$0.name.contains("/") }) else {
            throw bad("shard names must be distinct file names")
        }
        return m
    }
}

// MARK: - Writer

/// Appends images and their labels to `NAME.bin` + `NAME.labels` (see `ImageShardFormat`), streaming.
public final class ImageShardWriter {
    /// The files being written.
    public let binPath: String
    public let labelsPath: String
    /// The size of every image.
    public let height: Int, width: Int, channels: Int
    /// Images written so far.
    public private(set) var count = 0

    private var bin: UnsafeMutablePointer<FILE>?
    private var labels: UnsafeMutablePointer<FILE>?

    /// Creates (truncates) `directory/name.bin` and `directory/name.labels` for images of height x width x channels.
    public init(directory: String, name: String, height: Int, width: Int, channels: Int) throws {
        binPath = (directory as NSString).appendingPathComponent(name + ".bin")
        labelsPath = (directory as NSString).appendingPathComponent(name + ".labels")
        self.height = height
        self.width = width
        self.channels = channels
        guard let b = fopen(binPath, "wb") else { throw DataError.io(path: binPath, reason: "cannot create: \(String(cString: strerror(errno)))") }
        guard let l = fopen(labelsPath, "wb") else { fclose(b); throw DataError.io(path: labelsPath, reason: "cannot create: \(String(cString: strerror(errno)))") }
        bin = b
        labels = l
        try writeHeaders()
    }

    deinit {
        if let bin { fclose(bin) }
        if let labels { fclose(labels) }
    }

    /// Appends one image: `pixels` holds height x width x channels bytes, HWC.
    public func append(pixels: UnsafePointer<UInt8>, label: Int32) throws {
        guard let bin, let labels else { return }
        let n = height * width * channels
        if fwrite(pixels, 1, n, bin) != n { throw DataError.io(path: binPath, reason: "cannot write: \(String(cString: strerror(errno)))") }
        var le = label.littleEndian
        if fwrite(&le, 4, 1, labels) != 1 { throw DataError.io(path: labelsPath, reason: "cannot write: \(String(cString: strerror(errno)))") }
        count += 1
    }

    /// Writes the final counts into both headers, then syncs and closes the files.
    public func finish() throws {
        guard let bin, let labels else { return }
        defer { self.bin = nil; self.labels = nil }
        guard fseek(bin, 0, SEEK_SET) == 0, fseek(labels, 0, SEEK_SET) == 0 else {
            fclose(bin)
            fclose(labels)
            throw DataError.io(path: binPath, reason: "cannot seek")
        }
        try writeHeaders()
        let binFailed = fflush(bin) != 0 || fsync(fileno(bin)) != 0
        let labelsFailed = fflush(labels) != 0 || fsync(fileno(labels)) != 0
        fclose(bin)
        fclose(labels)
        if binFailed { throw DataError.io(path: binPath, reason: "cannot write: \(String(cString: strerror(errno)))") }
        if labelsFailed { throw DataError.io(path: labelsPath, reason: "cannot write: \(String(cString: strerror(errno)))") }
    }

    private func writeHeaders() throws {
        guard let bin, let labels else { return }
        var header = ImageShardFormat.binMagic
        appendLE(&header, ImageShardFormat.version)
        appendLE(&header, UInt32(height))
        appendLE(&header, UInt32(width))
        appendLE(&header, UInt32(channels))
        appendLE(&header, UInt64(count))
        var labelsHeader = ImageShardFormat.labelsMagic
        appendLE(&labelsHeader, ImageShardFormat.version)
        appendLE(&labelsHeader, UInt32(0))
        appendLE(&labelsHeader, UInt64(count))
        for (bytes, file, path) in [(header, bin, binPath), (labelsHeader, labels, labelsPath)] {
            let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            if written != bytes.count { throw DataError.io(path: path, reason: "cannot write: \(String(cString: strerror(errno)))") }
        }
    }
}

// MARK: - Reader

/// One shard written by `ImageShardWriter`, memory-mapped: both headers and sizes validated (a truncated or
/// foreign file is an error naming it), pixels served in place.
public final class ImageShardReader {
    /// The mapped files.
    public let binPath: String
    public let labelsPath: String
    /// The header's image size and count, checked against the file sizes.
    public let height: Int, width: Int, channels: Int
    public let count: Int

    private let bin: MappedFile
    private let labels: MappedFile
    private let imageBytes: Int

    /// Opens `directory/name.bin` and `directory/name.labels`.
    public init(directory: String, name: String) throws {
        binPath = (directory as NSString).appendingPathComponent(name + ".bin")
        labelsPath = (directory as NSString).appendingPathComponent(name + ".labels")
        bin = try MappedFile(path: binPath)
        labels = try MappedFile(path: labelsPath)
        func bad(_ path: String, _ reason: String) -> DataError { .invalidFormat(path: path, reason: reason) }
        guard bin.size >= ImageShardFormat.binHeaderSize else { throw bad(binPath, "truncated: \(bin.size) bytes, shorter than the header") }
        guard Array(UnsafeRawBufferPointer(start: bin.base, count: 8)) == ImageShardFormat.binMagic else { throw bad(binPath, "not an image shard (bad magic)") }
        guard bin.u32(at: 8) == ImageShardFormat.version else { throw bad(binPath, "unsupported version \(bin.u32(at: 8))") }
        let h = Int(bin.u32(at: 12)), w = Int(bin.u32(at: 16)), c = Int(bin.u32(at: 20))
        guard (1...ImageShardFormat.maxSide).contains(h), (1...ImageShardFormat.maxSide).contains(w),
              (1...ImageShardFormat.maxChannels).contains(c) else { throw bad(binPath, "image size \(h)x\(w)x\(c) is out of range") }
        let n = bin.u64(at: 24)
        imageBytes = h * w * c
        // Sizes from the header only count if the file really has them (the product cannot overflow: n is capped first).
        guard n <= UInt64(bin.size / imageBytes) else {
            throw bad(binPath, "truncated: \(bin.size) bytes, the header's \(n) images of \(h)x\(w)x\(c) need more")
        }
        guard labels.size >= ImageShardFormat.labelsHeaderSize else { throw bad(labelsPath, "truncated: \(labels.size) bytes, shorter than the header") }
        guard Array(UnsafeRawBufferPointer(start: labels.base, count: 8)) == ImageShardFormat.labelsMagic else { throw bad(labelsPath, "not an image label file (bad magic)") }
        guard labels.u32(at: 8) == ImageShardFormat.version else { throw bad(labelsPath, "unsupported version \(labels.u32(at: 8))") }
        guard labels.u64(at: 16) == n else { throw bad(labelsPath, "\(labels.u64(at: 16)) labels, \(binPath) holds \(n) images") }
        count = Int(n)
        let expectedBin = ImageShardFormat.binHeaderSize + count * imageBytes
        guard bin.size == expectedBin else {
            throw bad(binPath, bin.size < expectedBin ? "truncated: \(bin.size) bytes, the header needs \(expectedBin)" : "\(bin.size) bytes, the header needs \(expectedBin)")
        }
        let expectedLabels = ImageShardFormat.labelsHeaderSize + 4 * count
        guard labels.size == expectedLabels else {
            throw bad(labelsPath, labels.size < expectedLabels ? "truncated: \(labels.size) bytes, the header needs \(expectedLabels)" : "\(labels.size) bytes, the header needs \(expectedLabels)")
        }
        height = h
        width = w
        channels = c
    }

    /// The label of image `i` of this shard.
    @inline(__always) public func label(_ i: Int) -> Int32 {
        precondition(i >= 0 && i < count, "image \(i) out of 0..<\(count) in \(labelsPath)")
        return Int32(bitPattern: labels.u32(at: ImageShardFormat.labelsHeaderSize + 4 * i))
    }

    /// The H x W x C pixels of image `i` of this shard, in the memory map.
    @inline(__always) public func pixels(_ i: Int) -> UnsafePointer<UInt8> {
        precondition(i >= 0 && i < count, "image \(i) out of 0..<\(count) in \(binPath)")
        return (bin.base + ImageShardFormat.binHeaderSize + i * imageBytes).assumingMemoryBound(to: UInt8.self)
    }
}

/// The shards of a directory written by `tandem prepare-images`, checked against its manifest, with images
/// numbered globally across shards (in manifest order). Pixels stay in the memory maps.
public final class ImageDataset {
    /// The directory, its manifest and one reader per manifest shard, in manifest order.
    public let directory: String
    public let manifest: ImageShardManifest
    public let shards: [ImageShardReader]
    /// `offsets[i]` is the global index of shard `i`'s first image; the last entry is the total.
    private let offsets: [Int]
    /// Images per shard when every shard but the last has the same count (the writer's layout), else 0.
    private let uniformShardSize: Int

    /// Opens every shard of the manifest in `directory`, checking sizes, counts and that every label names a
    /// class; with `verifyChecksums`, also hashes every shard file and compares with the manifest.
    public init(directory: String, verifyChecksums: Bool = false) throws {
        self.directory = directory
        let manifest = try ImageShardManifest.read(directory: directory)
        let manifestPath = (directory as NSString).appendingPathComponent(ImageShardManifest.fileName)
        var readers: [ImageShardReader] = []
        var offsets = [0]
        var classCounts = [Int](repeating: 0, count: manifest.classes.count)
        for shard in manifest.shards {
            let reader = try ImageShardReader(directory: directory, name: shard.name)
            guard reader.height == manifest.height, reader.width == manifest.width, reader.channels == manifest.channels else {
                throw DataError.invalidFormat(path: reader.binPath, reason: "images of \(reader.height)x\(reader.width)x\(reader.channels), \(manifestPath) says \(manifest.height)x\(manifest.width)x\(manifest.channels)")
            }
            guard reader.count == shard.count else {
                throw DataError.invalidFormat(path: reader.binPath, reason: "\(reader.count) images, \(manifestPath) says \(shard.count)")
            }
            for i in 0..<reader.count {
                let label = reader.label(i)
                guard label >= 0 && Int(label) < classCounts.count else {
                    throw DataError.invalidFormat(path: reader.labelsPath, reason: "label \(label) of image \(i) is out of range of the \(classCounts.count) classes of \(manifestPath)")
                }
                classCounts[Int(label)] += 1
            }
            if verifyChecksums {
                for (path, expected) in [(reader.binPath, shard.bin_sha256), (reader.labelsPath, shard.labels_sha256)] where try sha256(ofFile: path) != expected {
                    throw DataError.invalidFormat(path: path, reason: "SHA-256 differs from \(manifestPath)")
                }
            }
            readers.append(reader)
            offsets.append(offsets.last! + reader.count)
        }
        guard classCounts == manifest.class_counts else {
            throw DataError.invalidFormat(path: manifestPath, reason: "class_counts \(manifest.class_counts) differ from the labels in the shards \(classCounts)")
        }
        self.manifest = manifest
        shards = readers
        self.offsets = offsets
        let first = readers.first?.count ?? 0
        uniformShardSize = first > 0 && readers.dropLast().allSatisfy({ $0.count == first }) ? first : 0
    }

    /// Number of images over all shards.
    public var count: Int { offsets.last! }
    /// The size of every image.
    public var height: Int { manifest.height }
    public var width: Int { manifest.width }
    public var channels: Int { manifest.channels }
    /// Class names; a label is an index into them.
    public var classNames: [String] { manifest.classes }
    /// Per channel, in units of pixel/255.
    public var mean: [Float] { manifest.mean.map { Float($0) } }
    public var std: [Float] { manifest.std.map { Float($0) } }

    /// The label of global image `index`, in `0..<count`.
    public func label(_ index: Int) -> Int32 {
        let (s, i) = locate(index)
        return shards[s].label(i)
    }

    /// The H x W x C pixels (u8, HWC) of global image `index`, in the memory map of its shard.
    public func pixels(_ index: Int) -> UnsafePointer<UInt8> {
        let (s, i) = locate(index)
        return shards[s].pixels(i)
    }

    /// The shard and local index of global image `index`.
    @inline(__always) func locate(_ index: Int) -> (shard: Int, index: Int) {
        precondition(index >= 0 && index < count, "image \(index) out of 0..<\(count) in \(directory)")
        if uniformShardSize > 0 {
            let s = min(index / uniformShardSize, shards.count - 1)
            return (s, index - offsets[s])
        }
        var lo = 0, hi = shards.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= index { lo = mid } else { hi = mid - 1 }
        }
        return (lo, index - offsets[lo])
    }
}
