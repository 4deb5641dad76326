import Foundation

/// Rank 0's progress: one line per log interval, ending in a bar when stdout is a terminal
/// (`isInteractive`).
public final class Progress {
    let total: Int
    let enabled: Bool
    let isTerminal = Progress.isInteractive(STDOUT_FILENO)

    public init(total: Int, enabled: Bool) { self.total = total; self.enabled = enabled }

    /// Whether output to `fd` reaches a terminal someone watches, so that a line may be redrawn in place.
    /// Under mpirun every rank's output is a pseudo-terminal whatever the user's is, so there it takes
    /// `TANDEM_PROGRESS_BAR=1`.
    public static func isInteractive(_ fd: Int32) -> Bool {
        ProcessInfo.processInfo.environment["TANDEM_PROGRESS_BAR"] == "1"
            || (isatty(fd) != 0 && ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] == nil)
    }

    public func report(step: Int, loss: Double, lr: Float, gradNorm: Float, samplesPerSecond: Double,
                       tokensPerSecond: Double, mfu: Double, elapsed: Double, stepsDone: Int) {
        guard enabled else { return }
        let eta = Double(total - step) * elapsed / Double(max(stepsDone, 1))
        let width = String(total).count
        let line = String(format: "step %\(width)d/%d | loss %.4f | lr %.2e | grad %.3f | %.1f samples/s | %@ tok/s | MFU %.2f | ETA %@",
                          step, total, loss, lr, gradNorm, samplesPerSecond, Self.si(tokensPerSecond), mfu,
                          Self.duration(eta))
        if isTerminal {
            let filled = Int(Double(step) / Double(total) * 24)
            print("\r\u{1B}[2K" + line + "  [" + String(repeating: "#", count: filled) + String(repeating: ".", count: 24 - filled) + "]")
        } else {
            print(line)
        }
        fflush(stdout)
    }

    /// One line of evaluation metrics.
    public func reportEval(step: Int, _ results: [(String, Double)]) {
        guard enabled else { return }
        print("eval @ step \(step) | " + results.map { String(format: "%@ %.4f", $0.0, $0.1) }.joined(separator: " | "))
        fflush(stdout)
    }

    public func finish() {
        guard enabled else { return }
        fflush(stdout)
    }

    static func si(_ x: Double) -> String {
        x >= 1e6 ? String(format: "%.2fM", x / 1e6) : x >= 1e3 ? String(format: "%.1fk", x / 1e3) : String(format: "%.0f", x)
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

/// One JSON object per optimizer step, per rank, with the time breakdown (so stragglers show), and on
/// rank 0 the same scalars in a TensorBoard event file.
public final class MetricsWriter {
    let handle: FileHandle
    public let path: String
    /// Gets every value the JSONL file gets, at the same step and wall time.
    let tensorBoard: TensorBoardWriter?

    /// The scalars of a step record after `step`, `rank` and `time`: the JSON key, its number format and
    /// the TensorBoard tag. Throughput is the log window's, repeated on each of its steps.
    static let stepFields: [(key: String, format: String, tag: String)] = [
        ("loss", "%.6f", "train/loss"), ("lr", "%.6e", "train/lr"), ("grad_norm", "%.6f", "train/grad_norm"),
        ("samples_per_s", "%.3f", "throughput/samples_per_s"), ("tokens_per_s", "%.1f", "throughput/tokens_per_s"),
        ("mfu", "%.4f", "throughput/mfu"),
        ("t_data", "%.6f", "step_time/data"), ("t_forward", "%.6f", "step_time/forward"),
        ("t_backward", "%.6f", "step_time/backward"), ("t_grad_wait", "%.6f", "step_time/grad_wait"),
        ("t_optimizer", "%.6f", "step_time/optimizer"), ("t_checkpoint", "%.6f", "step_time/checkpoint"),
        ("t_step", "%.6f", "step_time/total"),
    ]

    /// Creates (or, when `append`, continues) the file.
    public init(path: String, append: Bool = false, tensorBoard: TensorBoardWriter? = nil) throws {
        self.path = path
        self.tensorBoard = tensorBoard
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        if !(append && FileManager.default.fileExists(atPath: path)) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ConfigError("\(path): cannot create the metrics file")
            }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw ConfigError("\(path): cannot open the metrics file") }
        h.seekToEndOfFile()
        handle = h
    }

    deinit { try? handle.close() }

    /// Evaluation metrics (`eval_*`), under TensorBoard tags `eval/*`.
    func writeEval(_ results: [(String, Double)], step: Int, rank: Int) throws {
        let time = wallSeconds()
        let fields = results.map { String(format: "\"%@\":%.6f", $0.0, $0.1) }.joined(separator: ",")
        try handle.write(contentsOf: Data("{\"step\":\(step),\"rank\":\(rank),\"time\":\(String(format: "%.3f", time)),\(fields)}\n".utf8))
        try tensorBoard?.write(step: step, wallTime: time, scalars: results.map { name, value in
            ("eval/" + (name.hasPrefix("eval_") ? String(name.dropFirst("eval_".count)) : name), value)
        })
    }

    func write(_ results: [StepResult], rank: Int, samplesPerSecond: Double, tokensPerSecond: Double, mfu: Double) throws {
        let time = wallSeconds()
        var text = ""
        for r in results {
            let t = r.times
            let values = [r.loss, Double(r.learningRate), Double(r.gradientNorm), samplesPerSecond, tokensPerSecond, mfu,
                          t.data, t.forward, t.backward, t.gradientWait, t.optimizer, t.checkpoint, t.total]
            text += String(format: #"{"step":%d,"rank":%d,"time":%.3f"#, r.step + 1, rank, time)
            for (field, value) in zip(Self.stepFields, values) { text += ",\"" + field.key + "\":" + String(format: field.format, value) }
            text += "}\n"
            try tensorBoard?.write(step: r.step + 1, wallTime: time, scalars: zip(Self.stepFields, values).map { ($0.tag, $1) })
        }
        try handle.write(contentsOf: Data(text.utf8))
    }
}
