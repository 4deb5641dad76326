import XCTest
import TandemAutograd

final class TandemAutogradSmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertEqual(Shape(2, 3).count, 6) }
}
