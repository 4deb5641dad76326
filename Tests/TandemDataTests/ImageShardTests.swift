import Foundation
import XCTest
@testable import TandemData

/// Image shards: format round trip, reader validation, the IDX, CIFAR and folder sources, statistics and
/// rank-count independence.
final class ImageShardTests: XCTestCase {
    // MARK: - Helpers

    /// A manifest-complete directory of `counts.count` shards of h x w x c images with labels `i % classes`.
    func writeDataset(_ dir: String, counts: [Int], h: Int = 3, w: Int = 2, c: Int = 3, classes: Int = 4) throws -> ImageShardManifest {
        let source = MemorySource(count: counts.reduce(0, +), h: h, w: w, c: c, classes: classes)
        var reports: [ImageShardReport] = []
        var start = 0
        for (k, n) in counts.enumerated() {
            let name = ImageShardFormat.shardName(k)
            let writer = try ImageShardWriter(directory: dir, name: name, height: h, width: w, channels: c)
            var report = ImageShardReport(shard: k, name: name, count: 0, class_counts: [Int](repeating: 0, count: classes),
                                          sum: [UInt64](repeating: 0, count: c), sum_squares: [UInt64](repeating: 0, count: c), skipped: [])
            var pixels = [UInt8](repeating: 0, count: h * w * c)
            for i in start..<(start + n) {
                try source.read(i, into: &pixels)
                try writer.append(pixels: pixels, label: source.label(i))
                report.count += 1
                report.class_counts[Int(source.label(i))] += 1
                accumulatePixelSums(pixels, count: h * w, channels: c, sum: &report.sum, sumSquares: &report.sum_squares)
            }
            try writer.finish()
            reports.append(report)
            start += n
        }
        let manifest = try ImageShardManifest.build(directory: dir, source: source, reports: reports)
        try manifest.write(directory: dir)
        return manifest
    }

    func assertThrows(_ expression: @autoclosure () throws -> Any, mentions words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            let text = "\(error)"
            for word in words { XCTAssertTrue(text.contains(word), "\"\(text)\" does not mention \"\(word)\"", file: file, line: line) }
        }
    }

    func path(_ dir: String, _ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    func write(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    // MARK: - Format and reader

    func testRoundTripAcrossShards() throws {
        let dir = try Fixtures.temporaryDirectory()
        let manifest = try writeDataset(dir, counts: [5, 5, 3])
        let data = try ImageDataset(directory: dir, verifyChecksums: true)
        XCTAssertEqual(data.count, 13)
        XCTAssertEqual([data.height, data.width, data.channels], [3, 2, 3])
        XCTAssertEqual(data.classNames, ["c0", "c1", "c2", "c3"])
        XCTAssertEqual(data.manifest, manifest)
        let source = MemorySource(count: 13, h: 3, w: 2, c: 3, classes: 4)
        var want = [UInt8](repeating: 0, count: 18)
        for i in 0..<13 {
            XCTAssertEqual(data.label(i), source.label(i))
            try source.read(i, into: &want)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: data.pixels(i), count: 18)), want, "image \(i)")
        }
        XCTAssertEqual(manifest.class_counts, [4, 3, 3, 3])
        // Uneven shards (as skipped images leave them) are located by search.
        let uneven = try Fixtures.temporaryDirectory()
        _ = try writeDataset(uneven, counts: [2, 0, 6, 1])
        let u = try ImageDataset(directory: uneven)
        for i in 0..<9 { XCTAssertEqual(u.label(i), Int32(i % 4)) }
    }

    /// Mean and std per channel in pixel/255 units, population std, from the exact sums.
    func testMeanAndStd() throws {
        let dir = try Fixtures.temporaryDirectory()
        let manifest = try writeDataset(dir, counts: [7, 4])
        let data = try ImageDataset(directory: dir)
        for ch in 0..<3 {
            var values: [Double] = []
            for i in 0..<data.count { for p in 0..<6 { values.append(Double(data.pixels(i)[p * 3 + ch]) / 255) } }
            let mean = values.reduce(0, +) / Double(values.count)
            let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
            XCTAssertEqual(manifest.mean[ch], mean, accuracy: 1e-12)
            XCTAssertEqual(manifest.std[ch], std, accuracy: 1e-12)
            XCTAssertEqual(data.mean[ch], Float(mean), accuracy: 1e-6)
        }
    }

    func testReaderErrorsNameTheFile() throws {
        let dir = try Fixtures.temporaryDirectory()
        _ = try writeDataset(dir, counts: [4, 4])
        let bin = path(dir, "images-00001.bin"), labels = path(dir, "images-00001.labels"), manifestPath = path(dir, "manifest.json")
        let good = (bin: try bytes(bin), labels: try bytes(labels), manifest: try bytes(manifestPath))
        func restore() throws { try write(good.bin, bin); try write(good.labels, labels); try write(good.manifest, manifestPath) }

        try write(Array(good.bin.dropLast(5)), bin)
        assertThrows(try ImageDataset(directory: dir), mentions: [bin, "truncated"])
        try write(Array(good.bin.prefix(20)), bin)
        assertThrows(try ImageDataset(directory: dir), mentions: [bin, "truncated"])
        try write(good.bin + [0], bin)
        assertThrows(try ImageDataset(directory: dir), mentions: [bin, "bytes"])
        var magic = good.bin
        magic[0] = UInt8(ascii: "X")
        try write(magic, bin)
        assertThrows(try ImageDataset(directory: dir), mentions: [bin, "bad magic"])
        var huge = good.bin
        for k in 24..<32 { huge[k] = 0xFF }
        try write(huge, bin)
        assertThrows(try ImageDataset(directory: dir), mentions: [bin, "truncated"])
        try restore()

        var label = good.labels
        label[ImageShardFormat.labelsHeaderSize] = 9
        try write(label, labels)
        assertThrows(try ImageDataset(directory: dir), mentions: [labels, "label 9", "out of range"])
        try write(Array(good.labels.dropLast(4)), labels)
        assertThrows(try ImageDataset(directory: dir), mentions: [labels, "truncated"])
        try restore()

        var flipped = good.bin
        flipped[ImageShardFormat.binHeaderSize] ^= 1
        try write(flipped, bin)
        XCTAssertNoThrow(try ImageDataset(directory: dir))
        assertThrows(try ImageDataset(directory: dir, verifyChecksums: true), mentions: [bin, "SHA-256"])
        try restore()

        try write(Array("{not json".utf8), manifestPath)
        assertThrows(try ImageDataset(directory: dir), mentions: [manifestPath, "not an image shard manifest"])
        let text = String(decoding: good.manifest, as: UTF8.self)
        try write(Array(text.replacingOccurrences(of: "tandem-image-shards", with: "tandem-token-shards").utf8), manifestPath)
        assertThrows(try ImageDataset(directory: dir), mentions: [manifestPath, "expected tandem-image-shards"])
        try write(Array(text.replacingOccurrences(of: "\"count\" : 8", with: "\"count\" : 9").utf8), manifestPath)
        assertThrows(try ImageDataset(directory: dir), mentions: [manifestPath, "count"])
        try write(Array(text.replacingOccurrences(of: "\"height\" : 3", with: "\"height\" : 4").utf8), manifestPath)
        assertThrows(try ImageDataset(directory: dir), mentions: [bin.replacingOccurrences(of: "00001", with: "00000"), "3x2x3"])
        try FileManager.default.removeItem(atPath: manifestPath)
        assertThrows(try ImageDataset(directory: dir), mentions: [manifestPath, "no image shard manifest"])
        try write(good.manifest, manifestPath)
        try FileManager.default.removeItem(atPath: labels)
        assertThrows(try ImageDataset(directory: dir), mentions: [labels, "cannot open"])
    }

    // MARK: - IDX

    /// IDX files as MNIST ships them, plain and gzipped, with the labels found beside the images.
    func testIDXPlainAndGzipped() throws {
        let dir = try Fixtures.temporaryDirectory()
        let n = 5, h = 4, w = 3
        var images: [UInt8] = [0, 0, 8, 3]
        for v in [n, h, w] { images += withUnsafeBytes(of: UInt32(v).bigEndian, Array.init) }
        images += (0..<(n * h * w)).map { UInt8($0 % 251) }
        var labels: [UInt8] = [0, 0, 8, 1] + withUnsafeBytes(of: UInt32(n).bigEndian, Array.init)
        labels += [3, 1, 4, 1, 5]
        let plain = path(dir, "plain"), gz = path(dir, "gz")
        for d in [plain, gz] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        try write(images, path(plain, "train-images-idx3-ubyte"))
        try write(labels, path(plain, "train-labels-idx1-ubyte"))
        try write(images, path(gz, "train-images-idx3-ubyte"))
        try write(labels, path(gz, "train-labels-idx1-ubyte"))
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", path(gz, "train-images-idx3-ubyte"), path(gz, "train-labels-idx1-ubyte")]
        try gzip.run()
        gzip.waitUntilExit()
        XCTAssertEqual(gzip.terminationStatus, 0)

        var outputs: [[UInt8]] = []
        for input in [path(plain, "train-images-idx3-ubyte"), path(gz, "train-images-idx3-ubyte.gz")] {
            let out = path(dir, "out-" + (input.hasSuffix(".gz") ? "gz" : "plain"))
            let manifest = try prepareImages(input: input, out: out, options: PrepareImagesOptions(shardSize: 2))
            XCTAssertEqual(manifest.source, "idx")
            XCTAssertEqual(manifest.count, 5)
            XCTAssertEqual(manifest.shards.map(\.count), [2, 2, 1])
            XCTAssertEqual(manifest.classes, (0..<10).map(String.init))
            XCTAssertEqual(manifest.class_counts, [0, 2, 0, 1, 1, 1, 0, 0, 0, 0])
            let data = try ImageDataset(directory: out, verifyChecksums: true)
            XCTAssertEqual([data.height, data.width, data.channels], [4, 3, 1])
            XCTAssertEqual((0..<5).map { data.label($0) }, [3, 1, 4, 1, 5])
            XCTAssertEqual(Array(UnsafeBufferPointer(start: data.pixels(3), count: 12)), Array(images[(16 + 36)..<(16 + 48)]))
            outputs.append(try bytes(path(out, "images-00001.bin")))
        }
        XCTAssertEqual(outputs[0], outputs[1])

        let named = try IDXSource(images: path(plain, "train-images-idx3-ubyte"), classes: ["a", "b", "c", "d", "e", "f"])
        XCTAssertEqual(named.classes.count, 6)
        assertThrows(try IDXSource(images: path(plain, "train-images-idx3-ubyte"), classes: ["a", "b"]), mentions: ["label 5", "out of range"])
        try write(Array(images.dropLast(1)), path(plain, "short-images-idx3-ubyte"))
        try write(labels, path(plain, "short-labels-idx1-ubyte"))
        assertThrows(try IDXSource(images: path(plain, "short-images-idx3-ubyte")), mentions: ["short-images-idx3-ubyte", "bytes"])
        assertThrows(try IDXSource(images: path(plain, "train-labels-idx1-ubyte"), labels: path(plain, "train-labels-idx1-ubyte")),
                     mentions: ["not an IDX images file"])
        assertThrows(try IDXSource(images: path(plain, "other")), mentions: ["--labels"])
    }

    func testFashionMNISTIfInstalled() throws {
        let images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
        guard FileManager.default.fileExists(atPath: images) else { throw XCTSkip("dataset-fashion-mnist is not installed") }
        let source = try IDXSource(images: images)
        XCTAssertEqual(source.count, 10_000)
        XCTAssertEqual([source.height, source.width], [28, 28])
        XCTAssertEqual(source.classes, IDXSource.fashionMNISTClasses)
    }

    // MARK: - CIFAR

    /// A CIFAR-10 directory of small batch files: planes become HWC, the split picks the files, names come from
    /// batches.meta.txt. A CIFAR-100 train.bin uses the fine label.
    func testCIFARLayouts() throws {
        let dir = try Fixtures.temporaryDirectory()
        func record(label: [UInt8], seed: Int) -> [UInt8] { label + (0..<3072).map { UInt8(($0 * 7 + seed * 13) % 256) } }
        for b in 1...5 { try write((0..<3).flatMap { record(label: [UInt8((b + $0) % 10)], seed: b * 10 + $0) }, path(dir, "data_batch_\(b).bin")) }
        try write((0..<2).flatMap { record(label: [UInt8($0)], seed: 100 + $0) }, path(dir, "test_batch.bin"))
        let names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        try write(Array((names.joined(separator: "\n") + "\n\n").utf8), path(dir, "batches.meta.txt"))

        let train = try prepareImages(input: dir, out: path(dir, "train"), options: PrepareImagesOptions(shardSize: 4))
        XCTAssertEqual(train.source, "cifar-10")
        XCTAssertEqual(train.count, 15)
        XCTAssertEqual(train.classes, names)
        let data = try ImageDataset(directory: path(dir, "train"))
        XCTAssertEqual([data.height, data.width, data.channels], [32, 32, 3])
        XCTAssertEqual(data.label(4), 3)   // batch 2, record 1: (2 + 1) % 10
        let raw = record(label: [0], seed: 21)
        let pixels = data.pixels(4)
        for p in [0, 1, 500, 1023] { XCTAssertEqual([pixels[3 * p], pixels[3 * p + 1], pixels[3 * p + 2]], [raw[1 + p], raw[1 + 1024 + p], raw[1 + 2048 + p]]) }

        let test = try prepareImages(input: dir, out: path(dir, "test"), options: PrepareImagesOptions(split: "test"))
        XCTAssertEqual(test.count, 2)
        XCTAssertEqual(try prepareImages(input: path(dir, "test_batch.bin"), out: path(dir, "one")).count, 2)
        assertThrows(try prepareImages(input: dir, out: path(dir, "x"), options: PrepareImagesOptions(split: "valid")), mentions: ["--split valid"])

        let c100 = path(dir, "cifar-100-binary")
        try FileManager.default.createDirectory(atPath: c100, withIntermediateDirectories: true)
        try write(record(label: [1, 57], seed: 1) + record(label: [2, 99], seed: 2), path(c100, "train.bin"))
        try write(Array((0..<100).map { "fine\($0)" }.joined(separator: "\n").utf8), path(c100, "fine_label_names.txt"))
        let hundred = try prepareImages(input: c100, out: path(dir, "c100"))
        XCTAssertEqual(hundred.source, "cifar-100")
        XCTAssertEqual(hundred.classes.count, 100)
        XCTAssertEqual(try ImageDataset(directory: path(dir, "c100")).label(1), 99)

        try write(Array(record(label: [1], seed: 0).dropLast()), path(dir, "bad.bin"))
        assertThrows(try prepareImages(input: path(dir, "bad.bin"), out: path(dir, "bad")), mentions: ["bad.bin", "records"])
    }

    // MARK: - Folder tree

    /// A folder tree with PNGs, JPEGs and a corrupt file: the corrupt one is listed as skipped, the rest resized
    /// and cropped exactly as Pillow + torchvision do.
    func testFolderTreeSkipsCorruptFiles() throws {
        let dir = try Fixtures.temporaryDirectory()
        let root = path(dir, "tree")
        let layout = [("cat", ["rgb-13x7.png", "rgba-13x7.png", "truncated.jpg"]), ("dog", ["ycc420-45x37.jpg", "grey-13x7.png", "garbage.png"]),
                      ("emu", ["interlaced-17x9.png"])]
        for (cls, files) in layout {
            try FileManager.default.createDirectory(atPath: path(root, cls), withIntermediateDirectories: true)
            for f in files { try FileManager.default.copyItem(atPath: ImageDecodingTests.image(f), toPath: path(path(root, cls), f)) }
        }
        try write(Array("not an image".utf8), path(path(root, "cat"), "notes.txt"))
        var lines: [String] = []
        let manifest = try prepareImages(input: root, out: path(dir, "out"), options: PrepareImagesOptions(size: 6, shardSize: 2, threads: 3),
                                         skipped: { lines.append($0) })
        XCTAssertEqual(manifest.source, "folder")
        XCTAssertEqual(manifest.classes, ["cat", "dog", "emu"])
        XCTAssertEqual(manifest.count, 5)
        XCTAssertEqual(manifest.class_counts, [2, 2, 1])
        XCTAssertEqual(manifest.skipped, 2)
        XCTAssertEqual(manifest.skipped_files.map { ($0.path as NSString).lastPathComponent }, ["truncated.jpg", "garbage.png"])
        XCTAssertTrue(manifest.skipped_files[0].error.contains("libjpeg"), manifest.skipped_files[0].error)
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[1].contains("garbage.png"))
        let data = try ImageDataset(directory: path(dir, "out"), verifyChecksums: true)
        XCTAssertEqual([data.height, data.width, data.channels], [6, 6, 3])
        // Sorted by path within a class: rgb-13x7.png, rgba-13x7.png; then dog's grey-13x7.png, ycc420-45x37.jpg.
        let order = ["rgb-13x7.png", "rgba-13x7.png", "grey-13x7.png", "ycc420-45x37.jpg", "interlaced-17x9.png"]
        for (i, name) in order.enumerated() {
            let image = try decodeImage(path: ImageDecodingTests.image(name))
            var want = [UInt8](repeating: 0, count: 6 * 6 * 3)
            PillowResample.resizeShorterSideAndCenterCrop(image.pixels, width: image.width, height: image.height, channels: 3, size: 6, into: &want)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: data.pixels(i), count: want.count)), want, name)
        }
        assertThrows(try prepareImages(input: root, out: path(dir, "nosize")), mentions: ["--size"])
    }

    // MARK: - Ranks

    /// Shards written by two ranks of 3 threads are byte-identical to those of one rank of one thread, and so is the manifest.
    func testOutputIndependentOfRankCount() throws {
        let dir = try Fixtures.temporaryDirectory()
        let source = MemorySource(count: 23, h: 5, w: 4, c: 1, classes: 3)
        let one = path(dir, "one"), two = path(dir, "two")
        let reports = try writeImageShards(source: source, out: one, shardSize: 5)
        try ImageShardManifest.build(directory: one, source: source, reports: reports).write(directory: one)
        var gathered: [ImageShardReport] = []
        for rank in [1, 0] { gathered += try writeImageShards(source: source, out: two, shardSize: 5, rank: rank, ranks: 2, threads: 3) }
        XCTAssertEqual(gathered.map(\.shard), [1, 3, 0, 2, 4])
        let decoded = try ImageShardReport.decode(try ImageShardReport.encode(gathered))
        XCTAssertEqual(decoded, gathered)
        try ImageShardManifest.build(directory: two, source: source, reports: decoded).write(directory: two)
        for name in try FileManager.default.contentsOfDirectory(atPath: one) {
            XCTAssertEqual(try bytes(path(one, name)), try bytes(path(two, name)), name)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: two).count, 11)
    }
}

/// Deterministic in-memory images: pixel p of image i is (i * 31 + p * 7) % 256, label i % classes.
final class MemorySource: ImageSource {
    let kind = "memory"
    let count: Int, height: Int, width: Int, channels: Int
    let classes: [String]
    let resize = "none"
    init(count: Int, h: Int, w: Int, c: Int, classes: Int) {
        self.count = count
        height = h
        width = w
        channels = c
        self.classes = (0..<classes).map { "c\($0)" }
    }
    func label(_ i: Int) -> Int32 { Int32(i % classes.count) }
    func read(_ i: Int, into pixels: UnsafeMutablePointer<UInt8>) throws {
        for p in 0..<(height * width * channels) { pixels[p] = UInt8((i * 31 + p * 7) % 256) }
    }
}
