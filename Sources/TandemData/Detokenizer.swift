/// Rejoins the punctuation a BERT-style pre-tokenizer split off, as Moses' detokenizer does: no space
/// before closing punctuation (. , ; : ! ? ) ] } % » and the Devanagari danda। ॥) and none after opening
/// punctuation (( [ { ¿ ¡ «). Applied to `WordPieceTokenizer.decode`'s output ("¿ Qué dijo ?" -> "¿Qué
/// dijo?"), so that a translation reads as text and sacreBLEU's 13a tokenisation, which splits only ASCII
/// punctuation, sees it as it sees the reference.
public enum Detokenizer {
    static let closing: Set<Character> = [".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "»", "।", "॥"]
    static let opening: Set<Character> = ["(", "[", "{", "¿", "¡", "«"]

    public static func detokenize(_ text: String) -> String {
        var out = ""
        var glueNext = true
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            let closes = word.allSatisfy { closing.contains($0) }
            if !(glueNext || closes) { out += " " }
            out += word
            glueNext = word.count == 1 && opening.contains(word.first!)
        }
        return out
    }
}

extension WordPieceTokenizer {
    /// `ids` as a translation reads: decoded (special tokens dropped, pieces joined) and detokenised.
    public func detokenizedText(_ ids: [Int32]) -> String { Detokenizer.detokenize(decode(ids)) }
}
