import Foundation
import TandemCheckpoint
import XCTest

final class CheckpointTests: XCTestCase {
    private var dir: TestDirectory!
    private var root: String { dir.file("ckpt") }

    override func setUp() { dir = TestDirectory(name) }
    override func tearDown() { dir.remove() }

    /// The files a trainer hands over: the model borrowed from a parameter buffer, the rest in memory.
    private func files(step: Int, parameters: Int = 64) -> [CheckpointFile] {
        let values = (0..<parameters).map { Float($0) + Float(step) / 1000 }
        var model = SafeTensorsWriter()
        model.add("encoder.weight", shape: [parameters], floats: values)
        var optimizer = SafeTensorsWriter()
        optimizer.add("encoder.weight.exp_avg", shape: [parameters], floats: values.map { $0 * 0.1 })
        optimizer.add("step", shape: [], int64s: [Int64(step)])
        return [
            .safetensors("model.safetensors", model),
            .text("config.json", #"{"architectures": ["BertForPreTraining"], "hidden_size": 8, "model_type": "bert"}"#),
            .safetensors("optimizer.safetensors", optimizer),
            .text("trainer_state.json", #"{"step": \#(step), "epoch": 0, "sample_cursor": \#(step * 32)}"#),
        ]
    }

    private func path(_ step: Int, _ file: String = "") -> String {
        root + "/" + CheckpointStore.directoryName(step: step) + (file.isEmpty ? "" : "/" + file)
    }

    private func latest() -> String? { try? String(contentsOfFile: root + "/latest", encoding: .utf8) }

    private func rootEntries() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted() }

    // MARK: - Save and verify

    func testSaveWritesDirectoryManifestAndLatest() throws {
        let result = try CheckpointWriter(root: root).save(step: 1000, files: files(step: 1000))
        XCTAssertEqual(result.directory, path(1000))
        XCTAssertTrue(path(1000).hasSuffix("/step-00001000"))
        XCTAssertEqual(latest(), "step-00001000\n")
        XCTAssertEqual(rootEntries(), ["latest", "step-00001000"], "no temporary left behind")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path(1000)).sorted(),
                       ["MANIFEST.json", "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"])

        let manifest = try CheckpointStore.verify(path(1000))
        XCTAssertEqual(manifest, result.manifest)
        XCTAssertEqual(manifest.step, 1000)
        XCTAssertEqual(manifest.files.map(\.name), ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"])
        for entry in manifest.files {
            let p = path(1000, entry.name)
            XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: p)[.size] as? Int, entry.size)
            XCTAssertEqual(SHA256.hex(try SHA256.hash(file: p)), entry.sha256)
        }
        XCTAssertEqual(try CheckpointManifest.parse(manifest.json, path: "m"), manifest)

        let model = try SafeTensorsFile(path: path(1000, "model.safetensors"))
        XCTAssertEqual(model.metadata, ["format": "pt"])
        XCTAssertEqual(try model.floats("encoder.weight")[3], 4)
        XCTAssertEqual(try SafeTensorsFile(path: path(1000, "optimizer.safetensors")).int64s("step"), [1000])

        let selection = try CheckpointStore.latestValid(root: root)
        XCTAssertEqual(selection.directory, path(1000))
        XCTAssertTrue(selection.skipped.isEmpty)
        XCTAssertEqual(CheckpointStore.latestPointer(root: root), path(1000))
    }

    func testClosureFileWritesLargeBorrowedBufferWithoutCopy() throws {
        let count = 1 << 20
        let arena = AlignedMemory.allocate(Float.self, count: count)
        defer { AlignedMemory.deallocate(arena) }
        for i in 0..<count { arena[i] = Float(i % 1000) }
        var model = SafeTensorsWriter()
        model.add("a", shape: [count / 2], borrowing: UnsafeBufferPointer(start: arena, count: count / 2))
        model.add("b", shape: [count / 2], borrowing: UnsafeBufferPointer(start: arena + count / 2, count: count / 2))
        let raw = CheckpointFile("raw.bin") { sink in
            try sink.write(UnsafeRawBufferPointer(start: arena, count: 16))
            try sink.write("tail")
        }
        try CheckpointWriter(root: root).save(step: 1, files: [.safetensors("model.safetensors", model), raw])
        try CheckpointStore.verify(path(1))
        let f = try SafeTensorsFile(path: path(1, "model.safetensors"))
        var back = [Float](repeating: 0, count: count / 2)
        try back.withUnsafeMutableBufferPointer { try f.copyFloats("b", into: $0) }
        XCTAssertEqual(back[0], Float((count / 2) % 1000))
        XCTAssertEqual(back[back.count - 1], Float((count - 1) % 1000))
        XCTAssertEqual(FileManager.default.contents(atPath: path(1, "raw.bin"))?.count, 20)
    }

    /// The trainer's pattern: copy the arena into a snapshot, save the snapshot on another thread and
    /// keep updating the arena meanwhile; the checkpoint holds the snapshot's values.
    func testSaveOfSnapshotOnBackgroundThread() throws {
        let count = 4096
        let arena = AlignedMemory.allocate(Float.self, count: count)
        let snapshot = AlignedMemory.allocate(Float.self, count: count)
        defer { AlignedMemory.deallocate(arena); AlignedMemory.deallocate(snapshot) }
        for i in 0..<count { arena[i] = Float(i) }
        snapshot.update(from: arena, count: count)
        var model = SafeTensorsWriter()
        model.add("w", shape: [count], borrowing: UnsafeBufferPointer(start: snapshot, count: count))
        let writer = CheckpointWriter(root: root)
        let files = [CheckpointFile.safetensors("model.safetensors", model)]
        /// Hands the result back from the saving thread; the semaphore orders the accesses.
        final class Outcome: @unchecked Sendable { var result: Result<CheckpointSaveResult, Error>? }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Thread {
            outcome.result = Result { try writer.save(step: 7, files: files) }
            done.signal()
        }.start()
        for i in 0..<count { arena[i] = -1 }
        done.wait()
        let result = try XCTUnwrap(outcome.result).get()
        try CheckpointStore.verify(result.directory)
        XCTAssertEqual(try SafeTensorsFile(path: path(7, "model.safetensors")).floats("w"), (0..<count).map(Float.init))
    }

    func testRejectsBadFileNames() {
        let w = CheckpointWriter(root: root)
        assertError(try w.save(step: 1, files: [.text("../escape", "x")]), contains: ["../escape", "not a valid"])
        assertError(try w.save(step: 1, files: [.text("MANIFEST.json", "x")]), contains: ["MANIFEST.json"])
        assertError(try w.save(step: 1, files: [.text("a", "x"), .text("a", "y")]), contains: ["given twice"])
    }

    func testSavingSameStepAgainReplacesIt() throws {
        let w = CheckpointWriter(root: root)
        try w.save(step: 200, files: [.text("trainer_state.json", "first")])
        try w.save(step: 200, files: [.text("trainer_state.json", "second")])
        try CheckpointStore.verify(path(200))
        XCTAssertEqual(try String(contentsOfFile: path(200, "trainer_state.json"), encoding: .utf8), "second")
        XCTAssertEqual(rootEntries(), ["latest", "step-00000200"])
    }

    // MARK: - Corruption and resume selection

    private func saveTwo() throws {
        let w = CheckpointWriter(root: root)
        try w.save(step: 100, files: files(step: 100))
        try w.save(step: 200, files: files(step: 200))
    }

    private func assertFallsBack(because fragments: [String], file: String, line: UInt = #line) throws {
        assertError(try CheckpointStore.verify(path(200)), contains: [path(200, file)] + fragments, line: line)
        let selection = try CheckpointStore.latestValid(root: root)
        XCTAssertEqual(selection.directory, path(100), line: line)
        XCTAssertEqual(selection.manifest?.step, 100, line: line)
        XCTAssertEqual(selection.skipped.count, 1, line: line)
        XCTAssertEqual(selection.skipped.first?.directory, path(200), line: line)
        XCTAssertEqual(selection.skipped.first?.error.path, path(200, file), line: line)
        let report = inspectCheckpoint(path(200))
        XCTAssertFalse(report.isValid, line: line)
        XCTAssertTrue(report.report.contains("ERROR \(file)"), report.report, line: line)
    }

    func testFlippedByteIsDetectedAndResumeFallsBack() throws {
        try saveTwo()
        let p = path(200, "model.safetensors")
        var bytes = [UInt8](FileManager.default.contents(atPath: p)!)
        bytes[bytes.count - 5] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        try assertFallsBack(because: ["SHA-256", "corrupt"], file: "model.safetensors")
    }

    func testTruncatedFileIsDetectedAndResumeFallsBack() throws {
        try saveTwo()
        let p = path(200, "optimizer.safetensors")
        let bytes = FileManager.default.contents(atPath: p)!
        try bytes.prefix(bytes.count - 8).write(to: URL(fileURLWithPath: p))
        try assertFallsBack(because: ["truncated"], file: "optimizer.safetensors")
    }

    func testDeletedFileIsDetectedAndResumeFallsBack() throws {
        try saveTwo()
        try FileManager.default.removeItem(atPath: path(200, "trainer_state.json"))
        try assertFallsBack(because: ["missing"], file: "trainer_state.json")
    }

    func testMissingManifestIsAPartialCheckpoint() throws {
        try saveTwo()
        try FileManager.default.removeItem(atPath: path(200, "MANIFEST.json"))
        try assertFallsBack(because: ["incomplete"], file: "MANIFEST.json")
    }

    func testResolveResume() throws {
        try saveTwo()
        XCTAssertEqual(try CheckpointStore.resolveResume("auto", root: root).directory, path(200))
        XCTAssertEqual(try CheckpointStore.resolveResume(path(100), root: root).manifest?.step, 100)
        try FileManager.default.removeItem(atPath: path(100, "config.json"))
        assertError(try CheckpointStore.resolveResume(path(100), root: root), contains: [path(100, "config.json"), "missing"])
        assertError(try CheckpointStore.resolveResume(path(300), root: root), contains: [path(300), "not a checkpoint directory"])
    }

    func testNoValidCheckpoint() throws {
        XCTAssertNil(try CheckpointStore.latestValid(root: root).directory, "missing root")
        try CheckpointWriter(root: root).save(step: 5, files: files(step: 5))
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: path(5, "MANIFEST.json")))
        let selection = try CheckpointStore.latestValid(root: root)
        XCTAssertNil(selection.directory)
        XCTAssertEqual(selection.skipped.map(\.error.path), [path(5, "MANIFEST.json")])
    }

    func testStaleTemporaryDirectoriesAreIgnoredThenCleaned() throws {
        let w = CheckpointWriter(root: root)
        try w.save(step: 100, files: files(step: 100))
        let stale = root + "/.tmp-step-00000300-99999"
        try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: true)
        try Data("half".utf8).write(to: URL(fileURLWithPath: stale + "/model.safetensors"))
        XCTAssertEqual(try CheckpointStore.latestValid(root: root).directory, path(100))
        XCTAssertTrue(try CheckpointStore.latestValid(root: root).skipped.isEmpty)
        try w.save(step: 200, files: files(step: 200))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertEqual(rootEntries(), ["latest", "step-00000100", "step-00000200"])
    }

    func testFailingWriterLeavesPreviousCheckpointAndLatest() throws {
        struct Interrupted: Error {}
        let w = CheckpointWriter(root: root)
        try w.save(step: 100, files: files(step: 100))
        let failing = CheckpointFile("model.safetensors") { sink in
            try sink.write([UInt8](repeating: 1, count: 3 << 20))
            throw Interrupted()
        }
        XCTAssertThrowsError(try w.save(step: 200, files: [.text("config.json", "{}"), failing])) {
            XCTAssertTrue($0 is Interrupted)
        }
        XCTAssertEqual(latest(), "step-00000100\n")
        XCTAssertEqual(rootEntries(), ["latest", "step-00000100"])
        XCTAssertEqual(try CheckpointStore.latestValid(root: root).directory, path(100))
    }

    /// A save that does not fit on a small tmpfs fails naming the file and ENOSPC, and leaves the
    /// previous checkpoint and `latest` as they were.
    func testFullDiskLeavesPreviousCheckpointAndLatest() throws {
        let mountPoint = dir.file("small")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard getuid() == 0,
              let mounted = try? runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]), mounted.status == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
        }
        defer { _ = try? runProcess("/bin/umount", [mountPoint]) }
        let root = mountPoint + "/ckpt"
        let w = CheckpointWriter(root: root)
        try w.save(step: 100, files: files(step: 100, parameters: 1024))
        XCTAssertThrowsError(try w.save(step: 200, files: files(step: 200, parameters: 200_000))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("No space left on device"), text)
            XCTAssertTrue(text.contains(root + "/.tmp-step-00000200-"), text)
            XCTAssertTrue(text.contains("model.safetensors"), text)
        }
        XCTAssertEqual(try String(contentsOfFile: root + "/latest", encoding: .utf8), "step-00000100\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root).sorted(), ["latest", "step-00000100"])
        let selection = try CheckpointStore.latestValid(root: root)
        XCTAssertEqual(selection.directory, root + "/step-00000100")
        XCTAssertTrue(selection.skipped.isEmpty)
        // The space freed by the failed save's cleanup is enough for another small one.
        try w.save(step: 300, files: files(step: 300, parameters: 1024))
        XCTAssertEqual(try CheckpointStore.latestValid(root: root).directory, root + "/step-00000300")
    }

    func testUnwritableRootFailsNamingThePath() throws {
        let blocker = dir.write("not-a-directory", [1])
        assertError(try CheckpointWriter(root: blocker + "/ckpt").save(step: 1, files: files(step: 1)),
                    contains: [blocker + "/ckpt", "mkdir failed: Not a directory"])
    }

    // MARK: - Retention

    func testRetentionPolicy() {
        let steps = [100, 200, 300, 400, 500, 600]
        XCTAssertEqual(RetentionPolicy().stepsToDelete(steps, current: 600), [], "keep 0 keeps all")
        XCTAssertEqual(RetentionPolicy(keep: 2).stepsToDelete(steps, current: 600), [100, 200, 300, 400])
        XCTAssertEqual(RetentionPolicy(keep: 2, keepEvery: 300).stepsToDelete(steps, current: 600), [100, 200, 400])
        XCTAssertEqual(RetentionPolicy(keep: 1).stepsToDelete(steps, current: 300), [100, 200, 400, 500],
                       "the checkpoint just written is kept")
    }

    func testSaveAppliesRetention() throws {
        let w = CheckpointWriter(root: root, retention: RetentionPolicy(keep: 2, keepEvery: 300))
        var last: CheckpointSaveResult?
        for step in stride(from: 100, through: 600, by: 100) {
            last = try w.save(step: step, files: [.text("trainer_state.json", "{\"step\": \(step)}")])
        }
        XCTAssertEqual(rootEntries(), ["latest", "step-00000300", "step-00000500", "step-00000600"])
        XCTAssertEqual(last?.removed, [path(400)])
        XCTAssertEqual(last?.cleanupErrors.count, 0)
        XCTAssertEqual(latest(), "step-00000600\n")
    }

    // MARK: - Inspect

    func testInspectReport() throws {
        try CheckpointWriter(root: root).save(step: 1000, files: files(step: 1000))
        let inspection = inspectCheckpoint(path(1000))
        XCTAssertTrue(inspection.isValid, inspection.problems.joined(separator: "\n"))
        let report = inspectReport(path(1000))
        for fragment in ["checkpoint \(path(1000))", "trainer state: step 1000, epoch 0, sample_cursor 32000",
                         "model_type: \"bert\"", "hidden_size: 8", "step 1000, 4 files", "ok    model.safetensors ",
                         "encoder.weight  F32 [64]  64", "model.safetensors: 1 tensors, 64 parameters",
                         "step                    I64 []  1", "metadata: format=pt"] {
            XCTAssertTrue(report.contains(fragment), "missing \"\(fragment)\" in\n\(report)")
        }
        let single = inspectCheckpoint(path(1000, "model.safetensors"))
        XCTAssertTrue(single.isValid)
        XCTAssertTrue(single.report.contains("encoder.weight  F32 [64]  64"), single.report)
    }
}
