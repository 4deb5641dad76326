import Foundation

/// CIFAR-10 / CIFAR-100 in their binary version (https://www.cs.toronto.edu/~kriz/cifar.html): records of
/// a label byte (CIFAR-100: coarse then fine label bytes; the fine label is used) and 3072 pixel bytes,
/// the 32x32 red plane, then green, then blue (CHW), which become HWC RGB images in the shards.
public final class CIFARSource: ImageSource {
    public let kind: String
    public let count: Int
    public let height = 32
    public let width = 32
    public let channels = 3
    public let classes: [String]
    public let resize = "none"
    /// The batch files read, in order.
    public let files: [String]
    private let maps: [MappedFile]
    /// `starts[f]` is the index of file f's first record; the last entry is the total.
    private let starts: [Int]
    private let labelBytes: Int
    private var recordSize: Int { labelBytes + 3072 }

    /// The batch files of the two layouts, per split.
    static let cifar10Files = ["train": (1...5).map { "data_batch_\($0).bin" }, "test": ["test_batch.bin"]]
    static let cifar100Files = ["train": ["train.bin"], "test": ["test.bin"]]

    /// True for an extracted `cifar-10-batches-bin` or `cifar-100-binary` directory.
    static func isCIFARDirectory(_ directory: String) -> Bool {
        ["data_batch_1.bin", "test_batch.bin", "train.bin", "test.bin"].contains {
            FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent($0))
        }
    }

    /// The batch files of `split` ("train" or "test") in an extracted CIFAR directory.
    public convenience init(directory: String, split: String) throws {
        let isCIFAR100 = FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("train.bin"))
            || FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("test.bin"))
        guard let names = (isCIFAR100 ? CIFARSource.cifar100Files : CIFARSource.cifar10Files)[split] else {
            throw DataError.invalidArgument("--split \(split): expected train or test")
        }
        try self.init(files: names.map { (directory as NSString).appendingPathComponent($0) }, cifar100: isCIFAR100)
    }

    /// Batch files, all of one layout: CIFAR-100 when `cifar100` says so, else guessed from the names
    /// (`train.bin` / `test.bin` are CIFAR-100's) and the sizes.
    public init(files: [String], cifar100: Bool? = nil) throws {
        guard let first = files.first else { throw DataError.invalidArgument("no CIFAR batch files") }
        self.files = files
        maps = try files.map { try MappedFile(path: $0) }
        let named100 = ["train.bin", "test.bin"].contains((first as NSString).lastPathComponent)
        let is100 = cifar100 ?? (named100 || (maps[0].size % 3073 != 0 && maps[0].size % 3074 == 0))
        kind = is100 ? "cifar-100" : "cifar-10"
        labelBytes = is100 ? 2 : 1
        var starts = [0]
        for map in maps {
            guard map.size > 0, map.size % (labelBytes + 3072) == 0 else {
                throw DataError.invalidFormat(path: map.path, reason: "\(map.size) bytes is not a whole number of \(kind) records of \(labelBytes + 3072) bytes")
            }
            starts.append(starts.last! + map.size / (labelBytes + 3072))
        }
        self.starts = starts
        count = starts.last!
        let directory = (first as NSString).deletingLastPathComponent
        let namesFile = (directory as NSString).appendingPathComponent(is100 ? "fine_label_names.txt" : "batches.meta.txt")
        if let text = try? String(contentsOfFile: namesFile, encoding: .utf8) {
            classes = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        } else {
            classes = (0..<(is100 ? 100 : 10)).map(String.init)
        }
        for f in maps.indices {
            for r in 0..<(starts[f + 1] - starts[f]) {
                let label = Int(maps[f].base.load(fromByteOffset: r * (labelBytes + 3072) + labelBytes - 1, as: UInt8.self))
                guard label < classes.count else {
                    throw DataError.invalidFormat(path: maps[f].path, reason: "record \(r) has label \(label), out of range of the \(classes.count) classes")
                }
            }
        }
    }

    private func record(_ i: Int) -> (file: MappedFile, offset: Int) {
        var f = 0
        while starts[f + 1] <= i { f += 1 }
        return (maps[f], (i - starts[f]) * recordSize)
    }

    public func label(_ i: Int) -> Int32 {
        let (file, offset) = record(i)
        return Int32(file.base.load(fromByteOffset: offset + labelBytes - 1, as: UInt8.self))
    }

    public func read(_ i: Int, into pixels: UnsafeMutablePointer<UInt8>) throws {
        let (file, offset) = record(i)
        let planes = (file.base + offset + labelBytes).assumingMemoryBound(to: UInt8.self)
        for p in 0..<1024 {
            pixels[3 * p] = planes[p]
            pixels[3 * p + 1] = planes[1024 + p]
            pixels[3 * p + 2] = planes[2048 + p]
        }
    }
}
