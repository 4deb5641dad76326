import Foundation

/// A compiled gettext catalogue (`.mo`), read without libintl. The format (GNU gettext manual, "The
/// Format of GNU MO Files"), all integers u32 in the byte order that the magic number reveals:
/// ```
/// offset  field
///      0  magic 0x950412de
///      4  revision (major 0 or 1)
///      8  N, number of strings
///     12  O, offset of the table of original strings: N x (length, offset)
///     16  T, offset of the table of translations: N x (length, offset)
/// ```
/// A string is `length` bytes at `offset` (a NUL follows, not counted). An original is `msgid`, or
/// `msgctxt` + "\u{04}" + `msgid`; a plural entry's original is `msgid` + "\0" + `msgid_plural` and its
/// translation the forms separated by "\0". Entry 0 with an empty msgid is the header. `msgfmt` leaves
/// fuzzy entries out unless told otherwise, so a .mo holds no fuzzy entry to drop.
public struct GettextCatalog {
    /// One entry: the context (nil without one), the msgid, the plural msgid, and the translations
    /// (one, or one per plural form).
    public struct Entry: Equatable {
        public var context: String?
        public var id: String
        public var pluralID: String?
        public var translations: [String]
    }

    public static let magic: UInt32 = 0x9504_12DE

    /// The entries in file order (sorted by original, as msgfmt writes them), the header included.
    public let entries: [Entry]

    /// Reads `path`; a file too short, with another magic number or with a string outside it is an error naming it.
    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.io(path: path, reason: "cannot read") }
        try self.init(bytes: [UInt8](data), path: path)
    }

    /// Parses the bytes of a .mo file (`path` only names it in errors).
    public init(bytes: [UInt8], path: String) throws {
        func bad(_ reason: String) -> DataError { .invalidFormat(path: path, reason: reason) }
        guard bytes.count >= 20 else { throw bad("truncated: \(bytes.count) bytes, shorter than the .mo header") }
        func u32(_ at: Int, bigEndian: Bool) -> UInt32 {
            let v = UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
            return bigEndian ? v.byteSwapped : v
        }
        let bigEndian: Bool
        if u32(0, bigEndian: false) == Self.magic { bigEndian = false } else if u32(0, bigEndian: true) == Self.magic { bigEndian = true } else {
            throw bad("not a gettext .mo file (bad magic)")
        }
        let revision = u32(4, bigEndian: bigEndian)
        guard revision >> 16 <= 1 else { throw bad("unsupported .mo revision \(revision >> 16)") }
        let n = Int(u32(8, bigEndian: bigEndian)), originals = Int(u32(12, bigEndian: bigEndian)), translations = Int(u32(16, bigEndian: bigEndian))
        guard originals + 8 * n <= bytes.count, translations + 8 * n <= bytes.count else { throw bad("string tables of \(n) entries run past the end") }
        func string(table: Int, index i: Int) throws -> [UInt8] {
            let length = Int(u32(table + 8 * i, bigEndian: bigEndian)), offset = Int(u32(table + 8 * i + 4, bigEndian: bigEndian))
            guard offset + length <= bytes.count else { throw bad("string \(i) (\(length) bytes at \(offset)) runs past the end") }
            return Array(bytes[offset..<(offset + length)])
        }
        func text(_ b: ArraySlice<UInt8>) -> String { String(decoding: b, as: UTF8.self) }
        var entries: [Entry] = []
        entries.reserveCapacity(n)
        for i in 0..<n {
            var original = try string(table: originals, index: i)[...]
            var context: String?
            if let separator = original.firstIndex(of: 0x04) {
                context = text(original[..<separator])
                original = original[(separator + 1)...]
            }
            let ids = original.split(separator: 0, omittingEmptySubsequences: false)
            let forms = try string(table: translations, index: i).split(separator: 0, omittingEmptySubsequences: false)
            entries.append(Entry(context: context, id: text(ids[0]), pluralID: ids.count > 1 ? text(ids[1]) : nil, translations: forms.map(text)))
        }
        self.entries = entries
    }
}

// MARK: - Sentence pairs from UI catalogues

/// The (English msgid, translation) pairs of a catalogue worth training on: the header, plural entries,
/// untranslated entries (empty or equal to the msgid) and entries with no letter besides format
/// placeholders (`%1`, `%s`, `$(ARG1)`, `$name$`, `%PRODUCTNAME`, `{0}`) are dropped; accelerator marks are
/// removed from both sides (`UIStrings.stripAccelerators`) and whitespace normalised.
public func translationPairs(of catalog: GettextCatalog) -> [SentencePair] {
    var pairs: [SentencePair] = []
    for entry in catalog.entries where !entry.id.isEmpty && entry.pluralID == nil && entry.translations.count == 1 {
        let gtkMnemonics = entry.context?.contains("|") ?? false   // .ui strings (context "dialog|widget") use "_"
        let source = normalizeWhitespace(UIStrings.stripAccelerators(entry.id, gtkMnemonics: gtkMnemonics))
        let target = normalizeWhitespace(UIStrings.stripAccelerators(entry.translations[0], gtkMnemonics: gtkMnemonics))
        guard !source.isEmpty, !target.isEmpty, source != target, UIStrings.hasWords(source) else { continue }
        pairs.append(SentencePair(source: source, target: target))
    }
    return pairs
}

/// Clean-up of user-interface strings.
public enum UIStrings {
    /// Removes accelerator (mnemonic) marks: a translation's appended "(~N)", "(_N)" or "(&N)" (the
    /// letter of the English mnemonic, which Indic scripts cannot underline), LibreOffice's "~" before the
    /// letter, "&" before a letter or digit (Windows style, "&&" a literal "&"), and with `gtkMnemonics`
    /// GTK's "_" ("__" a literal "_"; one inside a `%NAME` placeholder stays).
    public static func stripAccelerators(_ s: String, gtkMnemonics: Bool) -> String {
        var scalars = Array(s.unicodeScalars)
        // "(~N)" and the space before it.
        var i = 0
        var cleaned: [Unicode.Scalar] = []
        while i < scalars.count {
            if scalars[i] == "(", i + 3 < scalars.count, ["~", "_", "&"].contains(scalars[i + 1]), scalars[i + 3] == ")",
               !BLEU.isPythonWhitespace(scalars[i + 2]) {
                while let last = cleaned.last, last == " " { cleaned.removeLast() }
                i += 4
                continue
            }
            cleaned.append(scalars[i])
            i += 1
        }
        scalars = cleaned
        cleaned = []
        i = 0
        var inPlaceholder = false   // "%EXTENSION_NAME": its "_" is no mnemonic
        while i < scalars.count {
            let c = scalars[i]
            let next = i + 1 < scalars.count ? scalars[i + 1] : nil
            if c == "%" { inPlaceholder = next.map { $0.properties.isAlphabetic } ?? false } else if !(c.properties.isAlphabetic || c == "_" || ("0"..."9").contains(c)) {
                inPlaceholder = false
            }
            if c == "~" { i += 1; continue }
            if c == "&", let next {
                if next == "&" { cleaned.append("&"); i += 2; continue }
                if next.properties.isAlphabetic || ("0"..."9").contains(next) { i += 1; continue }
            }
            if gtkMnemonics && c == "_" && !inPlaceholder {
                if next == "_" { cleaned.append("_"); i += 2; continue }
                i += 1
                continue
            }
            cleaned.append(c)
            i += 1
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: cleaned)
        return String(view)
    }

    /// Whether `s` has a letter outside format placeholders (`%1`, `%s`, `%PRODUCTNAME`, `%name%`,
    /// `$(ARG1)`, `$name$`, `$1`, `{0}`, `<tag>`).
    public static func hasWords(_ s: String) -> Bool {
        let placeholders = try! NSRegularExpression(pattern: #"%[A-Za-z0-9_]+%?|\$\([A-Za-z0-9_]+\)|\$[A-Za-z0-9_]*\$|\$[0-9]+|\{[A-Za-z0-9_]*\}|<[^>]*>"#)
        let stripped = placeholders.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: " ")
        return stripped.unicodeScalars.contains { $0.properties.isAlphabetic }
    }
}
