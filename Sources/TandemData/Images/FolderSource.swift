import Foundation

/// An ImageNet-style folder tree, as torchvision's `ImageFolder` reads it: `ROOT/<class>/.../<image>`, the
/// classes being the sorted sub-folder names and the images every `.png`, `.jpg` or `.jpeg` file (any case)
/// under each, sorted by path (byte order). Each image is decoded to RGB (`decodeImage`) and brought to
/// size x size by `PillowResample.resizeShorterSideAndCenterCrop` (torchvision's `Resize(size)` +
/// `CenterCrop(size)`, Pillow BILINEAR with antialiasing). Other files are ignored.
public final class FolderSource: ImageSource {
    public let kind = "folder"
    public var count: Int { files.count }
    public let height: Int
    public let width: Int
    public let channels = 3
    public let classes: [String]
    public var resize: String { "shorter side to \(height) (Pillow BILINEAR, antialiased), centre crop \(height)x\(width)" }
    /// The root and every image file with its label, in order.
    public let root: String
    public let files: [(path: String, label: Int32)]

    /// The file name extensions read, lowercased.
    public static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Lists the tree under `root`; images will be `size` x `size`.
    public init(root: String, size: Int) throws {
        guard size > 0 && size <= ImageShardFormat.maxSide else { throw DataError.invalidArgument("--size \(size) is out of range") }
        self.root = root
        height = size
        width = size
        let fm = FileManager.default
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: root) } catch {
            throw DataError.io(path: root, reason: "cannot list the directory: \(error.localizedDescription)")
        }
        func isDirectory(_ path: String) -> Bool {
            var d: ObjCBool = false
            return fm.fileExists(atPath: path, isDirectory: &d) && d.boolValue
        }
        let byteOrder: (String, String) -> Bool = { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        classes = entries.filter { !$0.hasPrefix(".") && isDirectory((root as NSString).appendingPathComponent($0)) }.sorted(by: byteOrder)
        guard !classes.isEmpty else { throw DataError.invalidFormat(path: root, reason: "no class folders (expected ROOT/<class>/<image>)") }
        var files: [(String, Int32)] = []
        for (label, name) in classes.enumerated() {
            let folder = (root as NSString).appendingPathComponent(name)
            guard let walker = fm.enumerator(atPath: folder) else { throw DataError.io(path: folder, reason: "cannot list the directory") }
            var images: [String] = []
            while let relative = walker.nextObject() as? String {
                let last = (relative as NSString).lastPathComponent
                guard !last.hasPrefix("."), FolderSource.extensions.contains((last as NSString).pathExtension.lowercased()) else { continue }
                let path = (folder as NSString).appendingPathComponent(relative)
                if !isDirectory(path) { images.append(path) }
            }
            files += images.sorted(by: byteOrder).map { ($0, Int32(label)) }
        }
        self.files = files
    }

    public func label(_ i: Int) -> Int32 { files[i].label }
    public func read(_ i: Int, into pixels: UnsafeMutablePointer<UInt8>) throws {
        let image = try decodeImage(path: files[i].path)
        PillowResample.resizeShorterSideAndCenterCrop(image.pixels, width: image.width, height: image.height, channels: 3,
                                                      size: height, into: pixels)
    }
}
