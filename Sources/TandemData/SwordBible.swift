import Foundation

/// Verses of a SWORD Bible module as `diatheke -b MODULE -k "Gen 1:1-Rev 22:21"` prints them in its
/// default (internal, OSIS) format: one verse a line, `Book C:V: text`, the text carrying OSIS markup
/// (`<w savlm="strong:H7225">` Strong's numbers, `<transChange>`, `<divineName>`, `<q>`, milestones such
/// as `<div type="x-p"/>`) and, in the KJV, pilcrows. The module name closes the output in parentheses.
public enum SwordBible {
    /// One verse: book name, chapter, verse and plain text.
    public struct Verse: Equatable, Sendable {
        public var book: String
        public var chapter: Int
        public var verse: Int
        public var text: String
        /// "Book C:V", the key that aligns two translations with the same versification.
        public var reference: String { "\(book) \(chapter):\(verse)" }
    }

    /// Parses diatheke's output (`name` names it in errors). Text before a verse's reference is the
    /// heading material diatheke prints before it (the "preverse" entry). diatheke 1.9 repeats the last
    /// heading before every later verse of a range, so a heading is kept only where it really opens the
    /// verse: a canonical psalm title (`<title canonical="true">`, which the RV1909 prints inside verse 1)
    /// whose `<l sID="X"/>` poetry line closes (`<l eID="X"/>`) in that verse. Other headings are dropped.
    /// Verses whose text is empty once the markup is gone are skipped (the RV1909 merges some into
    /// their neighbours).
    public static func parse(_ output: String, name: String) throws -> [Verse] {
        let reference = try! NSRegularExpression(pattern: #"([1-4A-Z][A-Za-z ]*?) ([0-9]+):([0-9]+): "#)
        let lineStart = try! NSRegularExpression(pattern: #"<l [^>]*sID="([^"]+)"[^>]*/>\s*$"#)
        var verses: [Verse] = []
        for (number, line) in output.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let line = String(line)
            let ns = line as NSString
            if line.hasPrefix("(") && line.hasSuffix(")") { continue }   // "(engKJV2006eb)": the module's name
            guard let m = reference.firstMatch(in: line, range: NSRange(location: 0, length: ns.length)) else {
                throw DataError.invalidFormat(path: "\(name):\(number + 1)", reason: "no verse reference (Book C:V:) in diatheke's output line")
            }
            let prefix = ns.substring(to: m.range.location)
            var body = ns.substring(from: m.range.location + m.range.length)
            if prefix.contains("<title canonical=\"true\""),
               let l = lineStart.firstMatch(in: prefix, range: NSRange(location: 0, length: (prefix as NSString).length)),
               body.contains("eID=\"\((prefix as NSString).substring(with: l.range(at: 1)))\""),
               let titleEnd = prefix.range(of: "</title>") {
                body = String(prefix[..<titleEnd.lowerBound]) + " " + body
            }
            let text = plainText(fromOSIS: body)
            if text.isEmpty { continue }
            verses.append(Verse(book: ns.substring(with: m.range(at: 1)), chapter: Int(ns.substring(with: m.range(at: 2)))!,
                                verse: Int(ns.substring(with: m.range(at: 3)))!, text: text))
        }
        return verses
    }

    /// The words of an OSIS fragment: tags removed (their text kept, Strong's numbers and other
    /// attributes gone), `<note>` contents removed, pilcrows dropped, the five XML entities decoded and
    /// whitespace normalised.
    public static func plainText(fromOSIS s: String) -> String {
        var out = ""
        var rest = s[...]
        var noteDepth = 0
        while let open = rest.firstIndex(of: "<") {
            if noteDepth == 0 { out += rest[..<open] }
            guard let close = rest[open...].firstIndex(of: ">") else { rest = rest[rest.endIndex...]; break }
            let tag = rest[open...close]
            if tag.hasPrefix("<note") && !tag.hasSuffix("/>") { noteDepth += 1 } else if tag.hasPrefix("</note") { noteDepth = max(0, noteDepth - 1) }
            rest = rest[rest.index(after: close)...]
        }
        if noteDepth == 0 { out += rest }
        out = out.replacingOccurrences(of: "¶", with: " ")
        for (entity, character) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&amp;", "&")] {
            out = out.replacingOccurrences(of: entity, with: character)
        }
        return normalizeWhitespace(out)
    }

    /// Pairs the verses of two translations with the same versification by reference, in `source`'s
    /// order, one document per book (named after `source`'s book). Verses missing on either side are
    /// left out.
    public static func align(source: [Verse], target: [Verse]) -> [ParallelDocument] {
        var targetText: [String: String] = [:]
        for v in target { targetText[v.reference] = v.text }
        var documents: [ParallelDocument] = []
        for v in source {
            guard let t = targetText[v.reference] else { continue }
            if documents.last?.name != v.book { documents.append(ParallelDocument(name: v.book, pairs: [])) }
            documents[documents.count - 1].pairs.append(SentencePair(source: v.text, target: t))
        }
        return documents
    }
}
