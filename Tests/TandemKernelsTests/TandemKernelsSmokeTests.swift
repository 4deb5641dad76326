import XCTest
import TandemKernels

final class TandemKernelsSmokeTests: XCTestCase {
    func testModuleLinks() { XCTAssertEqual(Shape(2, 3).count, 6) }
}
