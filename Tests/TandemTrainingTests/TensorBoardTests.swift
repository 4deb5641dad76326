import Foundation
import TandemTestSupport
import XCTest
@testable import TandemTraining

/// The event files' bytes against CRC-32C's published vectors and against what tensorboard's own Python
/// code writes (the hex strings come from tensorboard 2.21's event_pb2 `SerializeToString` and
/// `RecordWriter`); launch/e2e-tests reads whole runs back with its EventAccumulator.
final class TensorBoardTests: ScratchDirectoryTestCase {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// RFC 3720 appendix B.4 and the usual check value.
    func testCRC32CKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        // tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c(b"123456789")
        XCTAssertEqual(CRC32C.masked(CRC32C.checksum(Array("123456789".utf8))), 0xC78A_B0E5)
    }

    func testRecordFramingMatchesTensorBoard() {
        XCTAssertEqual(hex(TFRecord.frame(Array("hello".utf8)) + TFRecord.frame([])),
                       "0500000000000000eab2043e68656c6c6fbb1f1c19" + "000000000000000029039807d8ea82a2")
    }

    func testEventsMatchProtobufSerialization() {
        let t = 1_733_450_000.25
        XCTAssertEqual(hex(TensorBoardEvent.fileVersion(wallTime: t)), "090000104496d4d9411a0d627261696e2e4576656e743a32")
        XCTAssertEqual(hex(TensorBoardEvent.sessionStart(step: 11, wallTime: t)), "090000104496d4d941100b3a020801")
        XCTAssertEqual(hex(TensorBoardEvent.scalars([("train/loss", 2.25), ("train/lr", 1e-3)], step: 7, wallTime: t)),
                       "090000104496d4d94110072a240a110a0a747261696e2f6c6f737315000010400a0f0a08747261696e2f6c72156f12833a")
    }

    /// Each writer starts a new file whose name sorts after the others' (same second: the next one), holding
    /// the version, a SessionLog START at its first step and then the scalars, written at once.
    func testWriterStartsANewFileInNameOrder() throws {
        let dir = scratch.path + "/tb"
        let t = 1_733_450_000.25
        let first = try TensorBoardWriter(directory: dir, firstStep: 1, wallTime: t)
        try first.write(step: 1, wallTime: t, scalars: [("train/loss", 2.25)])
        let resumed = try TensorBoardWriter(directory: dir, firstStep: 11, wallTime: t)
        try resumed.write(step: 11, wallTime: t + 1, scalars: [("train/loss", 1.5)])
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertEqual(names.count, 2)
        XCTAssertEqual([first.path, resumed.path].map { ($0 as NSString).lastPathComponent }, names)
        XCTAssertTrue(names[0].hasPrefix("events.out.tfevents.1733450000."), names[0])
        XCTAssertTrue(names[1].hasPrefix("events.out.tfevents.1733450001."), names[1])
        let version = TFRecord.frame(TensorBoardEvent.fileVersion(wallTime: t))
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: first.path))),
                       version + TFRecord.frame(TensorBoardEvent.sessionStart(step: 1, wallTime: t))
                       + TFRecord.frame(TensorBoardEvent.scalars([("train/loss", 2.25)], step: 1, wallTime: t)))
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: resumed.path))),
                       version + TFRecord.frame(TensorBoardEvent.sessionStart(step: 11, wallTime: t))
                       + TFRecord.frame(TensorBoardEvent.scalars([("train/loss", 1.5)], step: 11, wallTime: t + 1)))
    }

    func testConfigKey() throws {
        let yaml = "train: {steps: 1}\ncheckpoint: {dir: /tmp/run}\n"
        func directory(_ overrides: [String]) throws -> String? {
            try TrainingRun.tensorBoardDirectory(TrainingConfig(yaml: yaml, file: "t.yaml", overrides: overrides))
        }
        XCTAssertEqual(try directory([]), "/tmp/run/tensorboard")
        XCTAssertEqual(try directory(["train.tensorboard=true"]), "/tmp/run/tensorboard")
        XCTAssertNil(try directory(["train.tensorboard=false"]))
        XCTAssertEqual(try directory(["train.tensorboard=/tmp/tb"]), "/tmp/tb")
        XCTAssertThrowsError(try directory(["train.tensorboard="])) { XCTAssertTrue("\($0)".contains("train.tensorboard is empty"), "\($0)") }
    }
}
