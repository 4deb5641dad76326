import Foundation

/// Corpus-level BLEU exactly as sacreBLEU 2.x computes it by default (`sacrebleu.corpus_bleu(hyps, [refs])`:
/// one reference per segment, 13a tokenisation, mixed case, 4-grams, `exp` smoothing, no effective order).
///
/// Papineni et al. 2002: BLEU = BP x exp(sum_n log p_n / 4), p_n the clipped n-gram precision over the
/// corpus and BP = exp(1 - r/c) when the hypotheses (c tokens) are shorter than the references (r), else 1.
/// The `exp` smoothing (Chen & Cherry 2014, method 3, NIST's mteval-v13a) replaces the k-th zero precision
/// by 100 / (2^k x total n-grams); orders with no hypothesis n-gram at all stop the loop with precision 0,
/// whose log sacreBLEU floors at -9999999999 (so the score is 0). No match at all gives 0 directly.
public struct BLEUScore: Equatable, Sendable {
    /// The score in [0, 100].
    public var score: Double
    /// Clipped matching n-grams and hypothesis n-grams of order 1...4, summed over the corpus.
    public var counts: [Int]
    public var totals: [Int]
    /// Percent precisions of order 1...4 (smoothed as above).
    public var precisions: [Double]
    /// The brevity penalty, hypothesis over reference length, and the two token counts.
    public var brevityPenalty: Double
    public var ratio: Double
    public var hypothesisLength: Int
    public var referenceLength: Int

    /// sacreBLEU's verbose line: `BLEU = 12.34 45.6/20.1/9.8/4.4 (BP = 0.950 ratio = 0.951 hyp_len = 9 ref_len = 10)`.
    public var formatted: String {
        String(format: "BLEU = %.2f ", score) + precisions.map { String(format: "%.1f", $0) }.joined(separator: "/")
            + String(format: " (BP = %.3f ratio = %.3f hyp_len = %d ref_len = %d)", brevityPenalty, ratio, hypothesisLength, referenceLength)
    }
}

/// sacreBLEU's `corpus_bleu` defaults: see `BLEUScore`.
public enum BLEU {
    /// N-gram orders.
    public static let maxOrder = 4

    /// Corpus BLEU of `hypotheses` against one reference each (same count, same order).
    public static func corpusScore(hypotheses: [String], references: [String]) throws -> BLEUScore {
        guard hypotheses.count == references.count else {
            throw DataError.invalidArgument("BLEU: \(hypotheses.count) hypotheses but \(references.count) references")
        }
        var total = Statistics()
        for (hypothesis, reference) in zip(hypotheses, references) {
            total.add(statistics(hypothesis: hypothesis, reference: reference))
        }
        return total.score
    }

    /// What corpus BLEU sums over segments: clipped matching and hypothesis n-grams of order 1...4 and
    /// the two token counts. Sums of them (over the held-out set's shares on every rank, or over one
    /// length bucket) give the corpus score of their segments.
    public struct Statistics: Equatable, Sendable {
        public var counts = [Int](repeating: 0, count: BLEU.maxOrder)
        public var totals = [Int](repeating: 0, count: BLEU.maxOrder)
        public var hypothesisLength = 0
        public var referenceLength = 0
        public init() {}

        /// The statistics as 2 x maxOrder + 2 numbers (counts, totals, lengths), for a reduction.
        public var values: [Double] { (counts + totals + [hypothesisLength, referenceLength]).map(Double.init) }
        public init(values v: some Collection<Double>) {
            let a = v.map { Int($0.rounded()) }
            precondition(a.count == 2 * BLEU.maxOrder + 2, "BLEU.Statistics: \(a.count) values")
            counts = Array(a[0..<BLEU.maxOrder])
            totals = Array(a[BLEU.maxOrder..<2 * BLEU.maxOrder])
            hypothesisLength = a[2 * BLEU.maxOrder]
            referenceLength = a[2 * BLEU.maxOrder + 1]
        }

        public mutating func add(_ o: Statistics) {
            for n in 0..<BLEU.maxOrder { counts[n] += o.counts[n]; totals[n] += o.totals[n] }
            hypothesisLength += o.hypothesisLength
            referenceLength += o.referenceLength
        }

        public var score: BLEUScore {
            BLEU.score(counts: counts, totals: totals, hypothesisLength: hypothesisLength, referenceLength: referenceLength)
        }
    }

    /// One segment's statistics (13a tokenisation of both sides).
    public static func statistics(hypothesis: String, reference: String) -> Statistics {
        let h = tokenize13a(rstripPython(hypothesis)), r = tokenize13a(rstripPython(reference))
        var s = Statistics()
        s.hypothesisLength = h.count
        s.referenceLength = r.count
        let referenceNgrams = ngramCounts(r)
        for (ngram, count) in ngramCounts(h) {
            s.totals[ngram.count - 1] += count
            if let available = referenceNgrams[ngram] { s.counts[ngram.count - 1] += min(count, available) }
        }
        return s
    }

    /// The score from corpus statistics (sacreBLEU's `BLEU.compute_bleu` with `smooth_method="exp"`).
    public static func score(counts: [Int], totals: [Int], hypothesisLength c: Int, referenceLength r: Int) -> BLEUScore {
        var bp = 1.0
        if c < r { bp = c > 0 ? exp(1 - Double(r) / Double(c)) : 0 }
        var precisions = [Double](repeating: 0, count: maxOrder)
        var result = BLEUScore(score: 0, counts: counts, totals: totals, precisions: precisions, brevityPenalty: bp,
                               ratio: r > 0 ? Double(c) / Double(r) : 0, hypothesisLength: c, referenceLength: r)
        guard counts.contains(where: { $0 != 0 }) else { return result }
        var smooth = 1.0
        for n in 0..<maxOrder {
            if totals[n] == 0 { break }
            if counts[n] == 0 {
                smooth *= 2
                precisions[n] = 100 / (smooth * Double(totals[n]))
            } else {
                precisions[n] = 100 * Double(counts[n]) / Double(totals[n])
            }
        }
        // Python's sum() adds left to right: keep that order so the last bits agree.
        var logSum = 0.0
        for p in precisions { logSum += p == 0 ? -9_999_999_999 : log(p) }
        result.precisions = precisions
        result.score = bp * exp(logSum / Double(maxOrder))
        return result
    }

    // MARK: - 13a tokenisation

    /// sacreBLEU's `Tokenizer13a` (mteval-v13a's tokenisation): drop `<skipped>`, join `-\n`, unescape
    /// `&quot; &amp; &lt; &gt;`, then `TokenizerRegexp`'s four substitutions in order and a split on
    /// (Unicode) whitespace. Works on Unicode scalars, as Python's `re` works on code points.
    public static func tokenize13a(_ line: String) -> [String] {
        var text = line.replacingOccurrences(of: "<skipped>", with: "")
            .replacingOccurrences(of: "-\n", with: "").replacingOccurrences(of: "\n", with: " ")
        if text.contains("&") {
            text = text.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
                .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
        }
        let space: Unicode.Scalar = " "
        var s: [Unicode.Scalar] = [space] + Array(text.unicodeScalars) + [space]
        // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count * 2)
        for c in s {
            if isSymbol13a(c) { out.append(space); out.append(c); out.append(space) } else { out.append(c) }
        }
        s = out
        // ([^0-9])([\.,]) -> "\1 \2 ", scanning left to right without overlap as re.sub does.
        s = substitutePairs(s, first: { !isDigit($0) }, second: isPeriodOrComma) { [$0, space, $1, space] }
        // ([\.,])([^0-9]) -> " \1 \2"
        s = substitutePairs(s, first: isPeriodOrComma, second: { !isDigit($0) }) { [space, $0, space, $1] }
        // ([0-9])(-) -> "\1 \2 "
        s = substitutePairs(s, first: isDigit, second: { $0 == "-" }) { [$0, space, $1, space] }
        var tokens: [String] = []
        var current = String.UnicodeScalarView()
        for c in s {
            if isPythonWhitespace(c) {
                if !current.isEmpty { tokens.append(String(current)); current = String.UnicodeScalarView() }
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { tokens.append(String(current)) }
        return tokens
    }

    /// `re.sub("(A)(B)", template, s)`: the leftmost match, then the search resumes after it.
    private static func substitutePairs(_ s: [Unicode.Scalar], first: (Unicode.Scalar) -> Bool, second: (Unicode.Scalar) -> Bool,
                                        replacement: (Unicode.Scalar, Unicode.Scalar) -> [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count + s.count / 2)
        var i = 0
        while i < s.count {
            if i + 1 < s.count && first(s[i]) && second(s[i + 1]) {
                out.append(contentsOf: replacement(s[i], s[i + 1]))
                i += 2
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    /// The class `[\{-\~\[-\` -\&\(-\+\:-\@\/]`: ASCII punctuation and space except `'`, `-`, `.`, `,`.
    private static func isSymbol13a(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x7B...0x7E, 0x5B...0x60, 0x20...0x26, 0x28...0x2B, 0x3A...0x40, 0x2F: return true
        default: return false
        }
    }

    private static func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 0x30 && c.value <= 0x39 }
    private static func isPeriodOrComma(_ c: Unicode.Scalar) -> Bool { c == "." || c == "," }

    /// Python's `str.isspace()`, which `str.split()` and `str.rstrip()` use: Unicode White_Space plus
    /// the separators U+001C-U+001F.
    static func isPythonWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// Python's `str.rstrip()`.
    static func rstripPython(_ s: String) -> String {
        var scalars = s.unicodeScalars[...]
        while let last = scalars.last, isPythonWhitespace(last) { scalars = scalars.dropLast() }
        return String(String.UnicodeScalarView(scalars))
    }

    /// Counts of all n-grams of order 1...4 (`extract_all_word_ngrams`).
    private static func ngramCounts(_ tokens: [String]) -> [[String]: Int] {
        var counts: [[String]: Int] = [:]
        for n in 1...maxOrder where tokens.count >= n {
            for i in 0...(tokens.count - n) { counts[Array(tokens[i..<(i + n)]), default: 0] += 1 }
        }
        return counts
    }
}
