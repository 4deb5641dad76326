import Foundation

/// What one shard of `writeImageShards` holds: counts, exact pixel sums for the mean and std, and the
/// images skipped. Ranks exchange these (as JSON) so that rank 0 can write the manifest.
public struct ImageShardReport: Codable, Equatable, Sendable {
    /// Shard number (its images are source images `k * shardSize ..< (k + 1) * shardSize`) and name.
    public var shard: Int
    public var name: String
    /// Images written, per class.
    public var count: Int
    public var class_counts: [Int]
    /// Per channel: sum of the pixel values and of their squares, exact.
    public var sum: [UInt64]
    public var sum_squares: [UInt64]
    /// Source images that could not be decoded, in source order.
    public var skipped: [ImageShardManifest.Skipped]

    /// Reports of several ranks as one JSON string, and back.
    public static func encode(_ reports: [ImageShardReport]) throws -> String {
        String(decoding: try JSONEncoder().encode(reports), as: UTF8.self)
    }
    public static func decode(_ json: String) throws -> [ImageShardReport] {
        try JSONDecoder().decode([ImageShardReport].self, from: Data(json.utf8))
    }
}

/// Where `writeImageShards` is: images done out of this rank's share, the pixel bytes written for them,
/// and the time since the start.
public struct PrepareImagesProgress: Sendable {
    public var done: Int
    public var total: Int
    public var bytes: Int
    public var seconds: Double
    public var imagesPerSecond: Double { seconds > 0 ? Double(done) / seconds : 0 }
}

/// The shards of a source: shard k holds source images `k * shardSize ..< min((k + 1) * shardSize, count)`
/// minus any skipped, in source order, so the shard files do not depend on how many ranks wrote them.
public func imageShardCount(images: Int, shardSize: Int) -> Int { (images + shardSize - 1) / shardSize }

/// Writes the shards `k` of `source` with `k % ranks == rank` into `out` and returns their reports.
/// Undecodable images are skipped: `skipped` gets one line each (path and reason) as it happens.
/// `progress` is called after every batch of images and at the end (the caller decides how often to print).
/// `threads` threads decode batches of images at once; the files do not depend on it.
public func writeImageShards(source: any ImageSource, out: String, shardSize: Int, rank: Int = 0, ranks: Int = 1, threads: Int = 1,
                             progress: ((PrepareImagesProgress) -> Void)? = nil,
                             skipped: (String) -> Void = { _ in }) throws -> [ImageShardReport] {
    guard shardSize > 0 else { throw DataError.invalidArgument("--shard-size \(shardSize) must be positive") }
    do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
        throw DataError.io(path: out, reason: "cannot create the directory: \(error.localizedDescription)")
    }
    let shards = Array(stride(from: rank, to: imageShardCount(images: source.count, shardSize: shardSize), by: ranks))
    let total = shards.reduce(0) { $0 + min(shardSize, source.count - $1 * shardSize) }
    let (h, w, c) = (source.height, source.width, source.channels)
    let imageBytes = h * w * c
    // A batch is decoded in parallel into `pixels`, then written in order.
    let threads = max(1, threads)
    let batch = threads == 1 ? 1 : 16 * threads
    let pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: batch * imageBytes)
    defer { pixels.deallocate() }
    var failures = [ImageDecodingError?](repeating: nil, count: batch)
    var fatal: Error?
    let lock = NSLock()
    let start = Date()
    var done = 0
    var reports: [ImageShardReport] = []
    for k in shards {
        let name = ImageShardFormat.shardName(k)
        let writer = try ImageShardWriter(directory: out, name: name, height: h, width: w, channels: c)
        var report = ImageShardReport(shard: k, name: name, count: 0, class_counts: [Int](repeating: 0, count: source.classes.count),
                                      sum: [UInt64](repeating: 0, count: c), sum_squares: [UInt64](repeating: 0, count: c), skipped: [])
        let end = min((k + 1) * shardSize, source.count)
        for first in stride(from: k * shardSize, to: end, by: batch) {
            let n = min(batch, end - first)
            failures.withUnsafeMutableBufferPointer { failed in
                func decode(_ j: Int) {
                    do {
                        try source.read(first + j, into: pixels + j * imageBytes)
                        failed[j] = nil
                    } catch let error as ImageDecodingError {
                        failed[j] = error
                    } catch {
                        lock.lock()
                        fatal = fatal ?? error
                        lock.unlock()
                    }
                }
                if n == 1 { decode(0) } else { DispatchQueue.concurrentPerform(iterations: n, execute: decode) }
            }
            if let fatal { throw fatal }
            for j in 0..<n {
                if let error = failures[j] {
                    report.skipped.append(.init(path: error.path, error: error.reason))
                    skipped("\(error.path): \(error.reason)")
                    continue
                }
                let label = source.label(first + j)
                try writer.append(pixels: pixels + j * imageBytes, label: label)
                report.count += 1
                report.class_counts[Int(label)] += 1
                accumulatePixelSums(pixels + j * imageBytes, count: h * w, channels: c, sum: &report.sum, sumSquares: &report.sum_squares)
                done += 1
            }
            progress?(PrepareImagesProgress(done: done, total: total, bytes: done * imageBytes, seconds: Date().timeIntervalSince(start)))
        }
        try writer.finish()
        reports.append(report)
    }
    progress?(PrepareImagesProgress(done: done, total: total, bytes: done * imageBytes, seconds: Date().timeIntervalSince(start)))
    return reports
}

/// Adds the values and squares of `count` HWC pixels of `channels` channels to the per-channel sums.
func accumulatePixelSums(_ pixels: UnsafePointer<UInt8>, count: Int, channels: Int, sum: inout [UInt64], sumSquares: inout [UInt64]) {
    for ch in 0..<channels {
        // One image's sums fit in 32 bits for sides up to 2^11 per channel; 64 bits for any size here.
        var s: UInt64 = 0, q: UInt64 = 0
        var p = ch
        for _ in 0..<count {
            let v = UInt64(pixels[p])
            s &+= v
            q &+= v * v
            p += channels
        }
        sum[ch] &+= s
        sumSquares[ch] &+= q
    }
}

extension ImageShardManifest {
    /// The manifest of the shards in `reports` (from every rank), checked against the shard files in
    /// `directory` and with their SHA-256. Mean and std come from exact integer sums, so they do not depend
    /// on the number of ranks either.
    public static func build(directory: String, source: any ImageSource, reports: [ImageShardReport]) throws -> ImageShardManifest {
        let reports = reports.sorted { $0.shard < $1.shard }
        let c = source.channels
        var sum = [UInt64](repeating: 0, count: c), squares = [UInt64](repeating: 0, count: c)
        var classCounts = [Int](repeating: 0, count: source.classes.count)
        var shards: [Shard] = []
        for report in reports {
            let reader = try ImageShardReader(directory: directory, name: report.name)
            guard reader.count == report.count, reader.height == source.height, reader.width == source.width, reader.channels == c else {
                throw DataError.invalidFormat(path: reader.binPath, reason: "holds \(reader.count) images of \(reader.height)x\(reader.width)x\(reader.channels), its writer reported \(report.count)")
            }
            shards.append(Shard(name: report.name, count: report.count, bin_sha256: try sha256(ofFile: reader.binPath),
                                labels_sha256: try sha256(ofFile: reader.labelsPath)))
            for ch in 0..<c {
                sum[ch] &+= report.sum[ch]
                squares[ch] &+= report.sum_squares[ch]
            }
            for (k, n) in report.class_counts.enumerated() { classCounts[k] += n }
        }
        let count = shards.reduce(0) { $0 + $1.count }
        let pixels = Double(count * source.height * source.width)
        var mean = [Double](repeating: 0, count: c), std = [Double](repeating: 0, count: c)
        if pixels > 0 {
            for ch in 0..<c {
                let m = Double(sum[ch]) / pixels
                mean[ch] = m / 255
                std[ch] = (max(0, Double(squares[ch]) / pixels - m * m)).squareRoot() / 255
            }
        }
        return ImageShardManifest(source: source.kind, height: source.height, width: source.width, channels: c, resize: source.resize,
                                  classes: source.classes, mean: mean, std: std, count: count, class_counts: classCounts,
                                  skipped_files: reports.flatMap(\.skipped), shards: shards)
    }
}

/// `tandem prepare-images` in one process: opens `input`, writes every shard into `out` and the manifest.
@discardableResult
public func prepareImages(input: String, out: String, options: PrepareImagesOptions = PrepareImagesOptions(),
                          progress: ((PrepareImagesProgress) -> Void)? = nil,
                          skipped: (String) -> Void = { _ in }) throws -> ImageShardManifest {
    let source = try openImageSource(input, options: options)
    let reports = try writeImageShards(source: source, out: out, shardSize: options.shardSize, threads: options.threads,
                                       progress: progress, skipped: skipped)
    let manifest = try ImageShardManifest.build(directory: out, source: source, reports: reports)
    guard manifest.count > 0 else { throw DataError.invalidFormat(path: input, reason: "no image could be read") }
    try manifest.write(directory: out)
    return manifest
}
