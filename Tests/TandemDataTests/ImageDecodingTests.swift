import Foundation
import XCTest
@testable import TandemData

/// Decoding and resizing against Pillow (fixtures by scripts/fixtures/make_image_fixtures.py).
final class ImageDecodingTests: XCTestCase {
    static func image(_ name: String) -> String { Fixtures.path("images/" + name) }

    func expected(_ stem: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.image(stem + ".rgb"))))
    }

    func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
        zip(a, b).reduce(0) { max($0, abs(Int($1.0) - Int($1.1))) }
    }

    /// Every PNG colour type and depth, interlaced too: pixel for pixel what Pillow's convert("RGB") gives
    /// (16-bit grey: the high byte).
    func testPNGMatchesPillow() throws {
        for name in ["rgb-13x7", "grey-13x7", "grey1-9x5", "grey2-11x6", "greyalpha-13x7", "rgba-13x7", "palette-13x7",
                     "palette-trns-13x7", "grey-trns-13x7", "rgb-trns-13x7", "grey16-5x3", "rgb16-6x4", "interlaced-17x9"] {
            let image = try decodeImage(path: Self.image(name + ".png"))
            let size = name.split(separator: "-").last!.split(separator: "x").map { Int($0)! }
            XCTAssertEqual([image.width, image.height], size, name)
            XCTAssertEqual(image.pixels, try expected(name), name)
        }
    }

    /// JPEGs: 4:2:0, 4:2:2, 4:4:4, grey, progressive and CMYK, exactly as Pillow decodes them (both libjpeg-turbo,
    /// islow DCT and fancy upsampling).
    func testJPEGMatchesPillow() throws {
        for name in ["ycc420-45x37", "ycc422-45x37", "ycc444-45x37", "grey-45x37", "progressive-45x37", "cmyk-21x13"] {
            let image = try decodeImage(path: Self.image(name + ".jpg"))
            let want = try expected(name)
            XCTAssertEqual(image.pixels.count, want.count, name)
            XCTAssertEqual(maxDifference(image.pixels, want), 0, name)
        }
    }

    /// Truncated and garbage files are per-file errors naming the path and the library's reason.
    func testCorruptFilesThrowNamingThePath() throws {
        for (name, words) in [("truncated.png", "libpng"), ("truncated.jpg", "libjpeg"), ("garbage.png", "not a PNG or JPEG")] {
            let path = Self.image(name)
            XCTAssertThrowsError(try decodeImage(path: path), name) { error in
                guard let error = error as? ImageDecodingError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(error.path, path)
                XCTAssertTrue(error.reason.contains(words), "\(name): \(error.reason)")
            }
        }
        XCTAssertThrowsError(try decodeImage(path: Self.image("no-such-file.png"))) { XCTAssertTrue($0 is ImageDecodingError) }
        XCTAssertThrowsError(try decodeImage(UnsafeRawBufferPointer(start: nil, count: 0), path: "empty.png"))
        // Every prefix of a valid PNG and JPEG fails cleanly (no crash, no partial image).
        for name in ["interlaced-17x9.png", "ycc420-45x37.jpg"] {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.image(name))))
            for n in stride(from: 0, to: bytes.count - 1, by: 7) {
                XCTAssertThrowsError(try bytes[0..<n].withUnsafeBytes { try decodeImage($0, path: name) }, "\(name) cut at \(n)")
            }
        }
    }

    /// Pillow's BILINEAR resize, down and up, and torchvision's Resize + CenterCrop: measured max abs difference 0.
    func testResizeMatchesPillow() throws {
        let spec = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.image("resize.json")))) as? [String: Any])
        let source = try decodeImage(path: Self.image(try XCTUnwrap(spec["source"] as? String)))
        for case let item as [String: Any] in try XCTUnwrap(spec["resize"] as? [Any]) {
            let (w, h, file) = (item["width"] as! Int, item["height"] as! Int, item["file"] as! String)
            let out = PillowResample.resizeBilinear(source.pixels, width: source.width, height: source.height, channels: 3, outWidth: w, outHeight: h)
            let want = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.image(file))))
            XCTAssertEqual(out.count, want.count, file)
            XCTAssertEqual(maxDifference(out, want), 0, file)
        }
        for case let item as [String: Any] in try XCTUnwrap(spec["crop"] as? [Any]) {
            let (s, file) = (item["size"] as! Int, item["file"] as! String)
            var out = [UInt8](repeating: 0, count: s * s * 3)
            PillowResample.resizeShorterSideAndCenterCrop(source.pixels, width: source.width, height: source.height, channels: 3, size: s, into: &out)
            XCTAssertEqual(maxDifference(out, try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.image(file))))), 0, file)
        }
    }

    /// scikit-learn's two real photos (found in the installed scikit-learn: TANDEM_SKLEARN_IMAGES or
    /// /opt/tandem-ref): decoded and resized exactly as Pillow does.
    func testScikitLearnPhotosMatchPillow() throws {
        guard let folder = Self.sklearnImages() else {
            throw XCTSkip("scikit-learn's china.jpg/flower.jpg not found (set TANDEM_SKLEARN_IMAGES to sklearn/datasets/images)")
        }
        let spec = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.image("sklearn.json")))) as? [String: [String: Any]])
        for (name, want) in spec {
            let image = try decodeImage(path: (folder as NSString).appendingPathComponent(name))
            XCTAssertEqual(image.width, want["width"] as? Int, name)
            XCTAssertEqual(image.height, want["height"] as? Int, name)
            for case let sample as [String: Any] in want["samples"] as! [Any] {
                let (y, x) = (sample["y"] as! Int, sample["x"] as! Int)
                XCTAssertEqual(Array(image.pixels[(y * image.width + x) * 3..<(y * image.width + x) * 3 + 3]), (sample["rgb"] as! [Int]).map { UInt8($0) }, "\(name) at \(y),\(x)")
            }
            XCTAssertEqual(sha256Hex(image.pixels), want["sha256"] as? String, name)
            var crop = [UInt8](repeating: 0, count: 64 * 64 * 3)
            PillowResample.resizeShorterSideAndCenterCrop(image.pixels, width: image.width, height: image.height, channels: 3, size: 64, into: &crop)
            XCTAssertEqual(sha256Hex(crop), want["crop64_sha256"] as? String, name)
        }
    }

    static func sklearnImages() -> String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["TANDEM_SKLEARN_IMAGES"] { candidates.append(env) }
        if let lib = try? FileManager.default.contentsOfDirectory(atPath: "/opt/tandem-ref/lib") {
            candidates += lib.filter { $0.hasPrefix("python") }.map { "/opt/tandem-ref/lib/\($0)/site-packages/sklearn/datasets/images" }
        }
        return candidates.first { FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent("china.jpg")) }
    }

    func sha256Hex(_ bytes: [UInt8]) -> String {
        var hasher = SHA256()
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.finalizeHex()
    }
}
