import Foundation

/// A 16-bit PCM WAV file written by hand: `frames` x `channels` samples, the header's frame count and
/// sampling rate as given (so that a test can make the header lie).
public func writeWAV(_ path: String, samples: [[Float]], rate: Int, headerFrames: Int? = nil, dataFrames: Int? = nil) throws {
    let channels = samples.count
    let frames = samples[0].count
    let written = dataFrames ?? frames
    var data = Data()
    func put32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    func put16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    let dataBytes = (headerFrames ?? frames) * channels * 2
    data.append(contentsOf: Array("RIFF".utf8)); put32(UInt32(36 + dataBytes)); data.append(contentsOf: Array("WAVE".utf8))
    data.append(contentsOf: Array("fmt ".utf8)); put32(16); put16(1); put16(UInt16(channels))
    put32(UInt32(rate)); put32(UInt32(rate * channels * 2)); put16(UInt16(channels * 2)); put16(16)
    data.append(contentsOf: Array("data".utf8)); put32(UInt32(dataBytes))
    for f in 0..<written {
        for c in 0..<channels {
            put16(UInt16(bitPattern: Int16(max(-32768, min(32767, (samples[c][f] * 32767).rounded())))))
        }
    }
    try data.write(to: URL(fileURLWithPath: path))
}
