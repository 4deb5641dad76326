import XCTest
import TandemCheckpoint

final class TandemCheckpointSmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertEqual(Shape(2, 3).count, 6) }
}
