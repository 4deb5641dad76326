import XCTest
import TandemData

final class TandemDataSmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertEqual(Shape(2, 3).count, 6) }
}
