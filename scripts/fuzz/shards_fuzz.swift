// libFuzzer target for the token shard reader (TandemData/TokenShards.swift, built from source with this
// file by scripts/fuzz/run). The input is split into a .bin and an .idx file (the first 4 bytes give
// the .bin's length) written to /dev/shm; opening must either succeed, after which every sentence and
// document of the shard can be read, or throw. A crash, a trap or a sanitizer report is a bug.
import Foundation

let directory = "/dev/shm/tandem-fuzz-\(getpid())"
let created: Bool = { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true); return true }()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzShards(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = created
    guard size >= 4 else { return 0 }
    let split = min(size - 4, Int(UInt32(data[0]) | UInt32(data[1]) << 8 | UInt32(data[2]) << 16 | UInt32(data[3]) << 24) % (size - 3))
    let bin = Data(bytes: data + 4, count: split), idx = Data(bytes: data + 4 + split, count: size - 4 - split)
    let binPath = directory + "/s.bin", idxPath = directory + "/s.idx"
    _ = FileManager.default.createFile(atPath: binPath, contents: bin)
    _ = FileManager.default.createFile(atPath: idxPath, contents: idx)
    guard let reader = try? TokenShardReader(binPath: binPath, idxPath: idxPath) else { return 0 }
    var sum: Int32 = 0
    for d in 0..<reader.documentCount {
        for s in reader.sentences(ofDocument: d) {
            for token in reader.tokens(ofSentence: s) { sum &+= token }
        }
    }
    return sum == 0x7fff_ffff ? 1 : 0
}
