import Foundation

/// Progress of a long data preparation (`prepare-text`, `prepare-images`) on stderr: items done, megabytes,
/// the percentage and ETA when the total is known, and the rates. On a terminal one line is redrawn in
/// place (`\r`) at most every `terminalInterval` seconds; otherwise, for logs, a plain line every
/// `plainInterval` seconds. `finish` prints the final figures. The caller may report as often as it likes:
/// between prints an update costs a clock read.
public final class PreparationProgress {
    /// The line's prefix, such as "prepare-text".
    public let label: String
    /// What the items are, such as "documents".
    public let unit: String
    let interactive: Bool
    let interval: Double
    let clock: () -> Double
    let emit: (String) -> Void
    let start: Double
    var lastPrint: Double
    var drawn = false

    /// `interactive`: redraw one line (default: stderr is a terminal the user watches, as for training's
    /// progress bar); `clock` gives seconds and `emit` takes the text (tests inject both).
    public init(label: String, unit: String, interactive: Bool = Progress.isInteractive(STDERR_FILENO),
                terminalInterval: Double = 0.25, plainInterval: Double = 10,
                clock: @escaping () -> Double = monotonicSeconds,
                emit: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.label = label
        self.unit = unit
        self.interactive = interactive
        interval = interactive ? terminalInterval : plainInterval
        self.clock = clock
        self.emit = emit
        start = clock()
        lastPrint = start
    }

    /// The position: `items` and `bytes` done, out of the totals when known (the ETA follows the bytes
    /// when their total is known, else the items). Prints when the interval since the last print is over.
    public func update(items: Int, bytes: Int, totalItems: Int? = nil, totalBytes: Int? = nil) {
        let now = clock()
        guard now - lastPrint >= interval else { return }
        lastPrint = now
        show(line(items: items, bytes: bytes, totalItems: totalItems, totalBytes: totalBytes, seconds: now - start, final: false))
    }

    /// Prints the final position with the time taken (on a terminal over the live line), ending the line.
    public func finish(items: Int, bytes: Int, totalItems: Int? = nil, totalBytes: Int? = nil) {
        show(line(items: items, bytes: bytes, totalItems: totalItems, totalBytes: totalBytes, seconds: clock() - start, final: true))
        if interactive { emit("\n") }
        drawn = false
    }

    /// Ends a live line without a final one (before an error message).
    public func abandon() {
        if drawn { emit("\n") }
        drawn = false
    }

    private func show(_ line: String) {
        if interactive {
            emit("\r\u{1B}[2K" + line)
            drawn = true
        } else {
            emit(line + "\n")
        }
    }

    /// `prepare-text: 1200 documents | 41.9/120.4 MB | 34.8% | 10.5 MB/s, 300 documents/s | ETA 7s`; the
    /// final line ends in the time taken instead (`in 12.0 s`).
    func line(items: Int, bytes: Int, totalItems: Int?, totalBytes: Int?, seconds: Double, final: Bool) -> String {
        var parts = [totalItems.map { "\(items)/\($0) \(unit)" } ?? "\(items) \(unit)",
                     totalBytes.map { String(format: "%.1f/%.1f MB", Double(bytes) / 1e6, Double($0) / 1e6) }
                         ?? String(format: "%.1f MB", Double(bytes) / 1e6)]
        // At most 1: a file that grows while it is read must not give 120% and a negative ETA.
        let fraction: Double? = (totalBytes.map { $0 > 0 ? Double(bytes) / Double($0) : 1 }
            ?? totalItems.map { $0 > 0 ? Double(items) / Double($0) : 1 }).map { min($0, 1) }
        if let fraction { parts.append(String(format: "%.1f%%", 100 * fraction)) }
        let s = max(seconds, 1e-9)
        parts.append(String(format: "%.1f MB/s, %@ %@/s", Double(bytes) / 1e6 / s, Progress.si(Double(items) / s), unit))
        if final {
            parts.append(String(format: "in %.1f s", seconds))
        } else if let fraction {
            parts.append(fraction > 0 ? "ETA " + Progress.duration(seconds * (1 - fraction) / fraction) : "ETA ?")
        }
        return label + ": " + parts.joined(separator: " | ")
    }
}
