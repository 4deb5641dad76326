import Foundation
import TandemData

/// `tandem bench images`: the image pipeline's throughput per core. Decoding (PNG / JPEG files given, or
/// found in a folder tree) with the resize `prepare-images` applies, then the training augmentation
/// (random resized crop, flip, normalisation) and the evaluation view, on thread CPU time so that other
/// processes on a shared machine do not count.
public enum ImageBenchmark {
    public static func run(inputs: [String], size: Int, seconds: Double, print: (String) -> Void) throws {
        print("image pipeline, 1 thread, images/s per core (thread CPU time)")
        let files = try imageFiles(inputs)
        if files.isEmpty {
            print("decode: no PNG or JPEG given (--input FILE|DIR); skipped")
        } else {
            var decoded: [(path: String, image: DecodedImage)] = []
            for path in files.prefix(64) { decoded.append((path, try decodeImage(path: path))) }
            let out = UnsafeMutablePointer<UInt8>.allocate(capacity: size * size * 3)
            defer { out.deallocate() }
            let decodeRate = ThreadCPUTime.rate(seconds: seconds) { i in
                let item = decoded[i % decoded.count]
                let image = try! decodeImage(path: item.path)
                PillowResample.resizeShorterSideAndCenterCrop(image.pixels, width: image.width, height: image.height,
                                                              channels: 3, size: size, into: out)
            }
            let mean = decoded.map { Double($0.image.width * $0.image.height) }.reduce(0, +) / Double(decoded.count) / 1e6
            print(String(format: "decode + resize to %d (prepare-images), %d file(s) of %.2f Mpixel on average: %.1f images/s",
                         size, decoded.count, mean, decodeRate))
        }
        print(ImageAugmenter.benchmark(secondsPerCase: seconds))
    }

    static func imageFiles(_ inputs: [String]) throws -> [String] {
        let extensions: Set<String> = ["png", "jpg", "jpeg"]
        var files: [String] = []
        for input in inputs {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
                throw DataError.io(path: input, reason: "no such file or directory")
            }
            if isDirectory.boolValue {
                let all = FileManager.default.enumerator(atPath: input)?.compactMap { $0 as? String } ?? []
                files += all.filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
                    .map { (input as NSString).appendingPathComponent($0) }
            } else {
                files.append(input)
            }
        }
        return files
    }
}
