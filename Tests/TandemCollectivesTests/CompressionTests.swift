import CMPI
import XCTest

/// The bf16 conversions of `distributed.compress: bf16` (CMPI's shim): round to nearest even, NaN kept,
/// bf16 -> fp32 exact. The MPI_Op that sums with them is exercised across hosts by launch/multihost-tests.
final class CompressionTests: XCTestCase {
    private func bits(_ f: Float) -> UInt16 { cmpi_bf16_from_f32(f) }

    func testRoundsToNearestEven() {
        XCTAssertEqual(bits(1), 0x3F80)
        XCTAssertEqual(bits(-2), 0xC000)
        // 1 + 2^-8 lies halfway between 1 (even) and 1 + 2^-7: to 1. 1 + 3 x 2^-8: halfway, up to the even.
        XCTAssertEqual(bits(1 + 0x1p-8), 0x3F80)
        XCTAssertEqual(bits(1 + 3 * 0x1p-8), 0x3F82)
        // Just above halfway rounds up.
        XCTAssertEqual(bits(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(bits(.infinity), 0x7F80)
        XCTAssertEqual(bits(Float.greatestFiniteMagnitude), 0x7F80, "rounds past the largest bf16 to infinity")
        XCTAssertTrue(cmpi_f32_from_bf16(bits(.nan)).isNaN)
    }

    func testRoundTripIsExactOnBF16ValuesAndCloseOtherwise() {
        var values = [Float](repeating: 0, count: 1000), packed = [UInt16](repeating: 0, count: 1000)
        var back = [Float](repeating: 0, count: 1000)
        for i in 0..<1000 { values[i] = Float(i - 500) * 0.0137 + sin(Float(i)) }
        cmpi_bf16_encode(values, &packed, 1000)
        cmpi_bf16_decode(packed, &back, 1000)
        for i in 0..<1000 {
            XCTAssertLessThanOrEqual(abs(back[i] - values[i]), abs(values[i]) * 0x1p-8 + 1e-30)
            XCTAssertEqual(cmpi_bf16_from_f32(back[i]), packed[i], "a bf16 value converts back to itself")
        }
    }
}
