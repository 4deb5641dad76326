import XCTest
import TandemTraining

final class TandemTrainingSmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertEqual(Shape(2, 3).count, 6) }
}
