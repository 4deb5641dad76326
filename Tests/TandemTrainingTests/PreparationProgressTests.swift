import XCTest
@testable import TandemTraining

/// The data-preparation progress line on an injected clock: what it says, and how rarely it prints.
final class PreparationProgressTests: XCTestCase {
    var now = 100.0
    var out: [String] = []

    func reporter(interactive: Bool, unit: String = "documents") -> PreparationProgress {
        PreparationProgress(label: "prepare-text", unit: unit, interactive: interactive,
                            clock: { [unowned self] in now }, emit: { [unowned self] in out.append($0) })
    }

    func testTerminalLineIsRedrawnInPlaceAtMostFourTimesASecond() {
        let p = reporter(interactive: true)
        now += 0.125
        p.update(items: 10, bytes: 1_000_000, totalBytes: 100_000_000)
        XCTAssertEqual(out, [], "nothing before a quarter of a second")
        now += 0.125
        p.update(items: 100, bytes: 2_500_000, totalBytes: 100_000_000)
        XCTAssertEqual(out, ["\r\u{1B}[2Kprepare-text: 100 documents | 2.5/100.0 MB | 2.5% | 10.0 MB/s, 400 documents/s | ETA 10s"])
        for _ in 0..<16 {  // 16 updates over half a second: two more lines
            now += 0.03125
            p.update(items: 200, bytes: 50_000_000, totalBytes: 100_000_000)
        }
        XCTAssertEqual(out.count, 3)
        XCTAssertEqual(out.last, "\r\u{1B}[2Kprepare-text: 200 documents | 50.0/100.0 MB | 50.0% | 66.7 MB/s, 267 documents/s | ETA 1s")
        now += 0.0625
        p.finish(items: 300, bytes: 100_000_000, totalBytes: 100_000_000)
        XCTAssertEqual(Array(out.suffix(2)),
                       ["\r\u{1B}[2Kprepare-text: 300 documents | 100.0/100.0 MB | 100.0% | 123.1 MB/s, 369 documents/s | in 0.8 s", "\n"])
    }

    func testPlainLinesEveryTenSecondsWithItemTotals() {
        let p = reporter(interactive: false, unit: "images")
        for _ in 0..<94 {  // 94 updates over 23.5 s: lines at 10 s and 20 s
            now += 0.25
            p.update(items: 1500, bytes: 1_176_000, totalItems: 6000)
        }
        XCTAssertEqual(out, ["prepare-text: 1500/6000 images | 1.2 MB | 25.0% | 0.1 MB/s, 150 images/s | ETA 30s\n",
                             "prepare-text: 1500/6000 images | 1.2 MB | 25.0% | 0.1 MB/s, 75 images/s | ETA 1m00s\n"])
        p.finish(items: 6000, bytes: 4_704_000, totalItems: 6000)
        XCTAssertEqual(out.last, "prepare-text: 6000/6000 images | 4.7 MB | 100.0% | 0.2 MB/s, 255 images/s | in 23.5 s\n")
        XCTAssertEqual(out.count, 3)
    }

    func testUnknownTotalsHaveNoPercentageOrETA() {
        let p = reporter(interactive: true)
        now += 2
        p.update(items: 2600, bytes: 3_000_000)
        XCTAssertEqual(out, ["\r\u{1B}[2Kprepare-text: 2600 documents | 3.0 MB | 1.5 MB/s, 1.3k documents/s"])
        p.abandon()
        XCTAssertEqual(out.last, "\n", "a drawn line is ended before an error message")
    }
}
