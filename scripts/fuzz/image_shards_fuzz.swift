// libFuzzer target for the image shard reader (TandemData/Images/ImageShards.swift, built from source with
// this file by scripts/fuzz/run). The input is split into manifest.json, images-00000.bin and
// images-00000.labels (the first 8 bytes give the manifest's and the .bin's lengths), written to /dev/shm;
// opening the directory must either succeed, after which every label and pixel can be read, or throw.
// A crash, a trap or a sanitizer report is a bug.
import Foundation

let directory = "/dev/shm/tandem-image-fuzz-\(getpid())"
let created: Bool = { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true); return true }()

/// Checksums are not fuzzed (ShardDataset.swift's hashing is not built into this target).
func sha256(ofFile path: String) throws -> String { "" }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImageShards(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = created
    guard size >= 8 else { return 0 }
    func u32(_ at: Int) -> Int { Int(UInt32(data[at]) | UInt32(data[at + 1]) << 8 | UInt32(data[at + 2]) << 16 | UInt32(data[at + 3]) << 24) }
    let rest = size - 8
    let manifestLength = u32(0) % (rest + 1)
    let binLength = u32(4) % (rest - manifestLength + 1)
    let parts = [(ImageShardManifest.fileName, 8, manifestLength), ("images-00000.bin", 8 + manifestLength, binLength),
                 ("images-00000.labels", 8 + manifestLength + binLength, rest - manifestLength - binLength)]
    for (name, offset, count) in parts {
        _ = FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(bytes: data + offset, count: count))
    }
    guard let dataset = try? ImageDataset(directory: directory) else { return 0 }
    let bytes = dataset.height * dataset.width * dataset.channels
    var sum = 0
    for i in 0..<dataset.count {
        sum &+= Int(dataset.label(i))
        let pixels = dataset.pixels(i)
        for p in 0..<bytes { sum &+= Int(pixels[p]) }
    }
    _ = dataset.mean.count + dataset.std.count + dataset.classNames.count
    return sum == Int.max ? 1 : 0
}
