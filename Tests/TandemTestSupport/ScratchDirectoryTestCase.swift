import Foundation
import XCTest

/// A test case with a fresh temporary directory (`scratch`) for each test, removed after it.
open class ScratchDirectoryTestCase: XCTestCase {
    public private(set) var scratch: URL!

    open override func setUpWithError() throws {
        try super.setUpWithError()
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    open override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
        try super.tearDownWithError()
    }
}
