import Foundation
#if canImport(Glibc)
import Glibc
#endif

// TensorBoard event files written without TensorFlow: TFRecord framing around hand-encoded `Event`
// protocol buffers (tensorboard/compat/proto/event.proto and summary.proto), the format TensorFlow's
// `tf.summary` and tensorboardX write, which TensorBoard reads from any file named `*tfevents*`.

// MARK: - TFRecord framing

/// TFRecord framing (tensorflow/core/lib/io/record_writer.cc): a record is its length as a little-endian
/// uint64, the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data (both CRCs
/// little-endian uint32).
public enum TFRecord {
    /// `data` framed as one record.
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = littleEndianBytes(UInt64(data.count))
        out += length
        out += littleEndianBytes(CRC32C.masked(CRC32C.checksum(length)))
        out += data
        out += littleEndianBytes(CRC32C.masked(CRC32C.checksum(data)))
        return out
    }

    static func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}

// MARK: - Event protocol buffers

/// Just enough protocol-buffer encoding for `Event`: varints, fixed 32/64-bit fields and
/// length-delimited fields, appended in field-number order as protoc's serializers write them.
struct ProtobufEncoder {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Field number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
    mutating func key(_ field: Int, wireType: Int) { varint(UInt64(field << 3 | wireType)) }

    mutating func double(_ field: Int, _ v: Double) {
        key(field, wireType: 1)
        bytes += TFRecord.littleEndianBytes(v.bitPattern)
    }

    mutating func float(_ field: Int, _ v: Float) {
        key(field, wireType: 5)
        bytes += TFRecord.littleEndianBytes(v.bitPattern)
    }

    /// An int64 or enum field (two's complement, so a negative value takes 10 bytes as in protoc).
    mutating func int64(_ field: Int, _ v: Int64) {
        key(field, wireType: 0)
        varint(UInt64(bitPattern: v))
    }

    mutating func bytes(_ field: Int, _ b: [UInt8]) {
        key(field, wireType: 2)
        varint(UInt64(b.count))
        bytes += b
    }

    mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }
}

/// Serialized `Event` messages: `wall_time` (1, double), `step` (2, int64) and one of `file_version`
/// (3, string), `summary` (5, a `Summary` of `Value`s: `tag` 1, `simple_value` 2, float) or
/// `session_log` (7, a `SessionLog` whose `status` 1 is START = 1).
public enum TensorBoardEvent {
    /// The first event of every file. Version 2 also tells TensorBoard to honour SessionLog START events.
    public static func fileVersion(wallTime: Double) -> [UInt8] {
        var e = ProtobufEncoder()
        e.double(1, wallTime)
        e.string(3, "brain.Event:2")
        return e.bytes
    }

    /// SessionLog START at `step`: TensorBoard drops the events of earlier files at `step` and after
    /// (tensorboard's EventAccumulator `_CheckForRestartAndMaybePurge`), as after a TensorFlow restart.
    public static func sessionStart(step: Int, wallTime: Double) -> [UInt8] {
        var log = ProtobufEncoder()
        log.int64(1, 1)
        var e = ProtobufEncoder()
        e.double(1, wallTime)
        e.int64(2, Int64(step))
        e.bytes(7, log.bytes)
        return e.bytes
    }

    /// One summary of scalars at `step` (TensorBoard's scalars dashboard, one curve per tag).
    public static func scalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Double) -> [UInt8] {
        var summary = ProtobufEncoder()
        for (tag, value) in values {
            var v = ProtobufEncoder()
            v.string(1, tag)
            v.float(2, Float(value))
            summary.bytes(1, v.bytes)
        }
        var e = ProtobufEncoder()
        e.double(1, wallTime)
        e.int64(2, Int64(step))
        e.bytes(5, summary.bytes)
        return e.bytes
    }
}

// MARK: - The event file

/// Rank 0's TensorBoard event file, `events.out.tfevents.SECONDS.HOSTNAME` in its directory, named as
/// TensorFlow names them. Every run, a resumed one too, starts a new file: its first event is the file
/// version, its second a SessionLog START at the run's first step, so that steps a killed run wrote after
/// its last checkpoint are hidden rather than shown twice. Each write goes to the file at once (one
/// `write(2)`, no buffering), so a killed run keeps every event it wrote.
public final class TensorBoardWriter {
    /// The event file.
    public let path: String
    let handle: FileHandle

    /// Creates a new event file in `directory` (made if missing) for a run whose first step will be
    /// `firstStep` (1 for a fresh run, S + 1 for a run resumed from step S). TensorBoard reads a
    /// directory's files in name order, so the name's seconds are past those of every event file already
    /// there, even when the clock is behind or two runs start within a second.
    public init(directory: String, firstStep: Int, wallTime: Double = wallSeconds()) throws {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw ConfigError("\(directory): cannot create the TensorBoard directory (\(error.localizedDescription))")
        }
        let prefix = "events.out.tfevents."
        let existing = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix(prefix) }
            .compactMap { Int($0.dropFirst(prefix.count).prefix { $0 != "." }) }
        var seconds = max(Int(wallTime), (existing.max() ?? -1) + 1)
        var host = [CChar](repeating: 0, count: 256)
        let hostname = gethostname(&host, host.count - 1) == 0 ? String(cString: host) : "localhost"
        var fd: Int32 = -1
        var path = ""
        while fd < 0 {
            path = directory + "/" + prefix + String(format: "%010d", seconds) + "." + hostname
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if fd < 0 && errno != EEXIST {
                throw ConfigError("\(path): cannot create the TensorBoard event file (\(String(cString: strerror(errno))))")
            }
            seconds += 1
        }
        self.path = path
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        try append([TensorBoardEvent.fileVersion(wallTime: wallTime),
                    TensorBoardEvent.sessionStart(step: firstStep, wallTime: wallTime)])
    }

    /// Writes scalars (tag, value) at `step`; TensorBoard stores them as 32-bit floats.
    public func write(step: Int, wallTime: Double, scalars: [(tag: String, value: Double)]) throws {
        try append([TensorBoardEvent.scalars(scalars, step: step, wallTime: wallTime)])
    }

    private func append(_ events: [[UInt8]]) throws {
        do { try handle.write(contentsOf: Data(events.flatMap(TFRecord.frame))) } catch {
            throw ConfigError("\(path): cannot write the TensorBoard event file (\(error.localizedDescription))")
        }
    }
}
