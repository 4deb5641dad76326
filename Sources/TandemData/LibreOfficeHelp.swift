import Foundation

/// The paragraphs of LibreOffice's offline help (the HTML pages of `libreoffice-help-LANG`, under
/// `/usr/share/libreoffice/help/LANG/text/...`). Every translatable paragraph or heading is an element
/// `<p id="par_id...">` or `<hN id="hd_id...">`; the same id names the same paragraph in every language,
/// so two languages align by (file, id).
public enum LibreOfficeHelp {
    /// The text of each `par_id`/`hd_id` paragraph of an HTML page, by id, in page order: tags removed
    /// (their text kept), entities decoded, whitespace normalised. An id seen twice keeps its first text.
    public static func paragraphs(html: String) -> [(id: String, text: String)] {
        let element = try! NSRegularExpression(pattern: #"<(p|h[1-6])\s+id="((?:par|hd)_id[^"]*)"[^>]*>(.*?)</\1>"#,
                                               options: [.dotMatchesLineSeparators])
        let ns = html as NSString
        var seen = Set<String>()
        var result: [(id: String, text: String)] = []
        for m in element.matches(in: html, range: NSRange(location: 0, length: ns.length)) {
            let id = ns.substring(with: m.range(at: 2))
            guard seen.insert(id).inserted else { continue }
            let text = plainText(fromHTML: ns.substring(with: m.range(at: 3)))
            if !text.isEmpty { result.append((id, text)) }
        }
        return result
    }

    /// Tags removed, `&lt; &gt; &quot; &apos; &nbsp; &amp;` and numeric character references decoded,
    /// whitespace normalised.
    public static func plainText(fromHTML s: String) -> String {
        var out = ""
        var rest = s[...]
        while let open = rest.firstIndex(of: "<") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: ">") else { rest = rest[rest.endIndex...]; break }
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        return normalizeWhitespace(decodeEntities(out))
    }

    static func decodeEntities(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var out = ""
        var rest = s[...]
        let named = ["lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}", "amp": "&"]
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            let after = rest[rest.index(after: amp)...]
            if let semi = after.prefix(10).firstIndex(of: ";") {
                let name = after[..<semi]
                var decoded: String?
                if let n = named[String(name)] { decoded = n } else if name.hasPrefix("#x") || name.hasPrefix("#X"),
                    let v = UInt32(name.dropFirst(2), radix: 16), let u = Unicode.Scalar(v) { decoded = String(u) } else if name.hasPrefix("#"),
                    let v = UInt32(name.dropFirst()), let u = Unicode.Scalar(v) { decoded = String(u) }
                if let decoded {
                    out += decoded
                    rest = after[after.index(after: semi)...]
                    continue
                }
            }
            out += "&"
            rest = after
        }
        return out + rest
    }

    /// The translated paragraphs of one help page: (English, translation) for every id present in both
    /// with a translation that differs from the English (the help ships untranslated paragraphs in English).
    public static func align(english: String, translated: String) -> [SentencePair] {
        var target: [String: String] = [:]
        for p in paragraphs(html: translated) { target[p.id] = p.text }
        return paragraphs(html: english).compactMap { p in
            guard let t = target[p.id], t != p.text else { return nil }
            return SentencePair(source: p.text, target: t)
        }
    }
}
