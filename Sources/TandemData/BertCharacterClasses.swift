/// What HF tokenizers' `BertNormalizer` and `BertPreTokenizer` do with one Unicode scalar, as bit flags.
/// The values are those of `BertUnicodeTables.classRanges`.
struct BertCharFlags: OptionSet {
    let rawValue: UInt8
    /// Removed by clean_text: NUL, U+FFFD and the reference's "other" categories (Cc, Cf, Cn, Co) but \t \n \r.
    static let drop = BertCharFlags(rawValue: 1)
    /// Replaced by a space by clean_text (the reference's whitespace).
    static let space = BertCharFlags(rawValue: 2)
    /// A CJK ideograph, surrounded by spaces by handle_chinese_chars.
    static let cjk = BertCharFlags(rawValue: 4)
    /// Punctuation for the pre-tokenizer (ASCII 33-47, 58-64, 91-96, 123-126 and the reference's P*).
    static let punctuation = BertCharFlags(rawValue: 8)
    /// Whitespace for the pre-tokenizer: splits words and is removed.
    static let splitSpace = BertCharFlags(rawValue: 16)
    /// A nonspacing mark (Mn), removed by strip_accents after NFD.
    static let mark = BertCharFlags(rawValue: 32)
    /// Has an entry in `BertCharacterData.stripAccents` (set for BMP scalars only, so the common case skips the lookup).
    static let decomposes = BertCharFlags(rawValue: 64)
    /// Has an entry in `BertCharacterData.lowercase` (BMP scalars only).
    static let changesCase = BertCharFlags(rawValue: 128)
}

/// The parsed `BertUnicodeTables`: flags for every scalar (a direct table for the BMP, ranges above it),
/// the strip-accents decompositions and the lowercase mappings. Parsed once per process.
final class BertCharacterData: @unchecked Sendable {
    static let shared = BertCharacterData()

    /// Flags of the scalars U+0000...U+FFFF.
    let bmpFlags: [UInt8]
    /// Flag ranges above the BMP, sorted by first scalar.
    let supplementaryRanges: [(first: UInt32, last: UInt32, flags: UInt8)]
    /// NFD minus nonspacing marks, where it differs from the scalar (Hangul syllables excluded).
    let stripAccents: [UInt32: [UInt32]]
    /// The reference's lowercase mapping, where it changes the scalar.
    let lowercase: [UInt32: [UInt32]]

    private init() {
        var bmp = [UInt8](repeating: 0, count: 0x10000)
        var supplementary: [(first: UInt32, last: UInt32, flags: UInt8)] = []
        for item in BertUnicodeTables.classRanges.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let colon = item.firstIndex(of: ":")!
            let bounds = item[..<colon].split(separator: "-")
            let first = UInt32(bounds[0], radix: 16)!, last = UInt32(bounds[1], radix: 16)!
            let flags = UInt8(item[item.index(after: colon)...], radix: 16)!
            if last < 0x10000 {
                for c in first...last { bmp[Int(c)] = flags }
            } else if first >= 0x10000 {
                supplementary.append((first, last, flags))
            } else {
                for c in first..<0x10000 { bmp[Int(c)] = flags }
                supplementary.append((0x10000, last, flags))
            }
        }
        stripAccents = BertCharacterData.parseMap(BertUnicodeTables.stripAccentsMap)
        lowercase = BertCharacterData.parseMap(BertUnicodeTables.lowercaseMap)
        for c in stripAccents.keys where c < 0x10000 { bmp[Int(c)] |= BertCharFlags.decomposes.rawValue }
        for c in lowercase.keys where c < 0x10000 { bmp[Int(c)] |= BertCharFlags.changesCase.rawValue }
        bmpFlags = bmp
        supplementaryRanges = supplementary
    }

    private static func parseMap(_ text: String) -> [UInt32: [UInt32]] {
        var map: [UInt32: [UInt32]] = [:]
        for item in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = item.split(separator: ">")
            map[UInt32(parts[0], radix: 16)!] = parts[1].split(separator: ",").map { UInt32($0, radix: 16)! }
        }
        return map
    }

    /// The flags of scalar `c`.
    @inline(__always) func flags(_ c: UInt32) -> BertCharFlags {
        if c < 0x10000 { return BertCharFlags(rawValue: bmpFlags[Int(c)]) }
        var lo = 0, hi = supplementaryRanges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let r = supplementaryRanges[mid]
            if c < r.first { hi = mid } else if c > r.last { lo = mid + 1 } else { return BertCharFlags(rawValue: r.flags) }
        }
        return []
    }
}

/// Hangul syllables U+AC00...U+D7A3 decompose algorithmically under NFD (Unicode 3.12) into a leading
/// consonant, a vowel and an optional trailing consonant; none of them is a mark, so all survive strip_accents.
@inline(__always) func hangulDecomposition(_ c: UInt32) -> (UInt32, UInt32, UInt32?)? {
    guard c >= 0xAC00 && c <= 0xD7A3 else { return nil }
    let s = c - 0xAC00
    let trailing = s % 28
    return (0x1100 + s / 588, 0x1161 + (s % 588) / 28, trailing == 0 ? nil : 0x11A7 + trailing)
}
