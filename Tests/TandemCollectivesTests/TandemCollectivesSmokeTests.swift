import XCTest
import TandemCollectives

final class TandemCollectivesSmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertEqual(Shape(2, 3).count, 6) }
}
