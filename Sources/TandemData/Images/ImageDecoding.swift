import CImageCodecs
import Foundation

/// A decoded image: height x width x 3 bytes, RGB, HWC.
public struct DecodedImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]
}

/// The image file formats `decodeImage` reads, told apart by their first bytes.
public enum ImageFileFormat: String, Sendable {
    case png, jpeg

    /// The format whose signature `bytes` starts with, if any.
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> ImageFileFormat? {
        if bytes.count >= 8 && Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
        return nil
    }
}

/// Decodes a PNG or JPEG file to 8-bit RGB, as Pillow's `Image.open(path).convert("RGB")` does: alpha is
/// dropped, grey replicated, palettes expanded, 16-bit samples keep their high byte (Pillow itself clips
/// 16-bit grey to 255 instead), JPEGs decoded by libjpeg-turbo with its defaults (islow DCT, fancy
/// upsampling), CMYK JPEGs converted with Pillow's formula. Throws `ImageDecodingError` naming the path and
/// libpng's or libjpeg's message for an unreadable, truncated or corrupt file.
public func decodeImage(path: String) throws -> DecodedImage {
    let file: MappedFile
    do { file = try MappedFile(path: path) } catch let error as DataError {
        if case let .io(_, reason) = error { throw ImageDecodingError(path: path, reason: reason) }
        throw error
    }
    return try decodeImage(UnsafeRawBufferPointer(start: file.base, count: file.size), path: path)
}

/// Decodes the bytes of a PNG or JPEG file; `path` names it in errors.
public func decodeImage(_ bytes: UnsafeRawBufferPointer, path: String) throws -> DecodedImage {
    guard let format = ImageFileFormat.sniff(bytes) else {
        throw ImageDecodingError(path: path, reason: bytes.isEmpty ? "empty file" : "not a PNG or JPEG file (unknown signature)")
    }
    var image = tdimg_image()
    let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
    let status = format == .png ? tdimg_decode_png(base, bytes.count, &image) : tdimg_decode_jpeg(base, bytes.count, &image)
    defer { tdimg_free(&image) }
    guard status == 0, let pixels = image.pixels else {
        let message = withUnsafeBytes(of: image.error) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        throw ImageDecodingError(path: path, reason: message.isEmpty ? "cannot decode the \(format.rawValue) file" : message)
    }
    let width = Int(image.width), height = Int(image.height)
    return DecodedImage(width: width, height: height, pixels: Array(UnsafeBufferPointer(start: pixels, count: width * height * 3)))
}

/// Writes `pixels`, height x width x `channels` bytes (1: grey, 3: RGB; HWC, rows top to bottom), as a PNG
/// file at `path` through libpng; a failure names the file.
public func writePNG(path: String, pixels: [UInt8], width: Int, height: Int, channels: Int) throws {
    precondition(pixels.count == width * height * channels, "writePNG: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
    var message = [CChar](repeating: 0, count: 256)
    let status = pixels.withUnsafeBufferPointer { p in
        tdimg_write_png(path, p.baseAddress, Int32(width), Int32(height), Int32(channels), &message, message.count)
    }
    if status != 0 { throw DataError.io(path: path, reason: String(cString: message)) }
}
