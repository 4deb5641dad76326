import Foundation

/// A metrics file that cannot be read or holds a malformed record: the message names the file and line.
public struct MetricsPlotError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// `tandem plot`: a run's JSONL metrics (rank 0's file and the `metrics.rankN.jsonl` files beside it, as
/// `MetricsWriter` names them) drawn as one self-contained SVG of 1200 x 900 with six panels: training
/// loss (raw, smoothed, and the learning rate), evaluation losses, evaluation accuracies, throughput
/// (samples/s and MFU), the spread of step time over ranks (min, median, max), and the mean step time
/// split into its phases (data, forward, backward, gradient wait, optimizer, checkpoint).
public enum MetricsPlot {
    /// The SVG document for the metrics file at `metricsPath` (rank 0's) and its sibling rank files.
    public static func render(metricsPath: String) throws -> String {
        let run = try MetricsRun(path: metricsPath)
        return Figure(run: run, title: metricsPath).svg()
    }

    /// Several runs on one figure (`tandem plot A B ... --out`): their smoothed training losses, then one
    /// panel per evaluation metric (at most five, in the order the runs first log them) with a curve per
    /// run. `labels` name the runs (default: each metrics file's directory).
    public static func render(metricsPaths: [String], labels: [String] = []) throws -> String {
        precondition(!metricsPaths.isEmpty, "no metrics files")
        if metricsPaths.count == 1 && labels.isEmpty { return try render(metricsPath: metricsPaths[0]) }
        guard labels.isEmpty || labels.count == metricsPaths.count else {
            throw MetricsPlotError("\(labels.count) label(s) for \(metricsPaths.count) metrics files: give one --label per file, or none")
        }
        let runs = try metricsPaths.map { try MetricsRun(path: $0) }
        let names = labels.isEmpty ? metricsPaths.map(Self.defaultLabel) : labels
        return Comparison(runs: Array(zip(names, runs))).svg()
    }

    /// A run's name from its metrics file: the directory that holds it (`runs/NAME/metrics.jsonl` -> NAME).
    static func defaultLabel(_ path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? path : (dir as NSString).lastPathComponent
    }

    /// Renders `metricsPath` and writes the SVG to `out`.
    public static func write(metricsPath: String, out: String) throws {
        try write(metricsPaths: [metricsPath], out: out)
    }

    /// Renders one run, or several compared, and writes the SVG to `out`.
    public static func write(metricsPaths: [String], labels: [String] = [], out: String) throws {
        let svg = try render(metricsPaths: metricsPaths, labels: labels)
        do { try svg.write(toFile: out, atomically: true, encoding: .utf8) } catch {
            throw MetricsPlotError("\(out): cannot write the plot (\(error.localizedDescription))")
        }
    }
}

// MARK: - Reading

/// Every rank's training records and rank 0's evaluation records. When a step appears twice the later
/// record wins: a resumed run appends the steps after its checkpoint again.
struct MetricsRun {
    /// rank -> step -> the record's numeric fields.
    var training: [Int: [Int: [String: Double]]] = [:]
    /// step -> rank 0's eval_* fields.
    var evaluation: [Int: [String: Double]] = [:]
    var files: [String] = []

    init(path: String) throws {
        for (rank, file) in [(0, path)] + Self.rankFiles(beside: path) {
            try read(file, rank: rank)
            files.append(file)
        }
        guard training[0]?.isEmpty == false else {
            throw MetricsPlotError("\(path): no training records (JSON lines with \"step\" and \"loss\") from rank 0")
        }
    }

    /// `DIR/NAME.rankN.jsonl` for N > 0 beside `DIR/NAME.jsonl`, sorted by rank.
    static func rankFiles(beside path: String) -> [(Int, String)] {
        let dir = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        guard name.hasSuffix(".jsonl") else { return [] }
        let prefix = String(name.dropLast(".jsonl".count)) + ".rank"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.isEmpty ? "." : dir)) ?? []
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix(prefix), n.hasSuffix(".jsonl"),
                  let rank = Int(n.dropFirst(prefix.count).dropLast(".jsonl".count)), rank > 0 else { return nil }
            return (rank, dir.isEmpty ? n : (dir as NSString).appendingPathComponent(n))
        }.sorted { $0.0 < $1.0 }
    }

    private mutating func read(_ path: String, rank fileRank: Int) throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw MetricsPlotError("\(path): cannot read the metrics file (\(error.localizedDescription))")
        }
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let record = line.trimmingCharacters(in: .whitespaces)
            if record.isEmpty { continue }
            let place = "\(path):\(index + 1)"
            let parsed: Any
            do { parsed = try JSONSerialization.jsonObject(with: Data(record.utf8)) } catch {
                throw MetricsPlotError("\(place): not a JSON object: \(record.prefix(80)) (\(error))")
            }
            guard let object = parsed as? [String: Any] else {
                throw MetricsPlotError("\(place): not a JSON object: \(record.prefix(80))")
            }
            var fields: [String: Double] = [:]
            for (key, value) in object {
                if let n = value as? NSNumber { fields[key] = n.doubleValue }
            }
            guard let step = fields["step"], step >= 0, step == step.rounded() else {
                throw MetricsPlotError("\(place): the record has no integer \"step\": \(record.prefix(80))")
            }
            let rank = fields["rank"].map { Int($0) } ?? fileRank
            let evals = fields.filter { $0.key.hasPrefix("eval_") }
            if fields["loss"] != nil {
                training[rank, default: [:]][Int(step)] = fields
            } else if !evals.isEmpty {
                if rank == 0 { evaluation[Int(step)] = evals }
            } else {
                throw MetricsPlotError("\(place): neither a training record (with \"loss\") nor an evaluation record (with eval_* fields)")
            }
        }
    }
}

// MARK: - Panels

/// A line through data points, on the left or the right axis.
struct Curve {
    var name: String
    var color: String
    var points: [(x: Double, y: Double)]
    var width = 1.6
    var dash: String?
    var markers = false
    var right = false
}

/// A filled region between two curves over the same x values (a min-max band or a stacked layer).
struct Band {
    var name: String
    var color: String
    var x: [Double]
    var lower: [Double]
    var upper: [Double]
    var opacity = 0.75
}

/// One labelled chart: its curves and bands share the step axis of the whole figure.
struct Panel {
    var title: String
    var yLabel: String
    var rightLabel: String?
    var curves: [Curve] = []
    var bands: [Band] = []
    /// Start the left axis at 0 (rates, times, accuracies).
    var fromZero = false
    var rightFromZero = false
    /// Top of the left axis when a few outliers (the first step, a checkpoint) would flatten the rest.
    var ceiling: Double?
    var note: String?
    /// Said in place of the chart when there is nothing to draw.
    var empty: String?
}

/// Builds the six panels from a run and lays them out as SVG.
struct Figure {
    let run: MetricsRun
    let title: String
    static let width = 1200.0, height = 900.0, header = 52.0
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    /// Points per curve at most; longer runs are averaged (or min/max-ed) in buckets of consecutive steps.
    static let maxPoints = 1000

    var rank0: [Int: [String: Double]] { run.training[0] ?? [:] }
    var steps: [Int] { rank0.keys.sorted() }

    func svg() -> String {
        let ranks = run.training.keys.count
        let evalSteps = run.evaluation.keys.sorted()
        let first = steps.first ?? 0, last = steps.last ?? 0
        let xAxis = Axis(values: steps.map(Double.init) + evalSteps.map(Double.init), fromZero: false)
        let panels = [lossPanel(), evalLossPanel(), accuracyPanel(), throughputPanel(), spreadPanel(), phasePanel()]

        var s = Self.svgStart(height: Self.height)
        s += text(16, 24, "Tandem metrics: \(title)", size: 17, weight: "bold")
        let evalText = evalSteps.isEmpty ? "no evaluations" : "\(evalSteps.count) evaluation\(evalSteps.count == 1 ? "" : "s")"
        s += text(16, 43, "\(ranks) rank\(ranks == 1 ? "" : "s") · steps \(first)–\(last) · \(evalText) · "
                  + "from \(run.files.map { ($0 as NSString).lastPathComponent }.joined(separator: ", "))",
                  size: 12, fill: "#555555")
        let w = Self.width / 2, h = (Self.height - Self.header) / 3
        for (i, p) in panels.enumerated() {
            s += draw(p, id: i, x: Double(i % 2) * w, y: Self.header + Double(i / 2) * h, w: w, h: h, xAxis: xAxis)
        }
        return s + "</svg>\n"
    }

    /// The opening of a figure's SVG document, `width` wide and `height` high, on a white background.
    static func svgStart(height: Double) -> String {
        """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">

        <rect width="100%" height="100%" fill="#ffffff"/>

        """
    }

    // MARK: Panel contents

    func series(_ key: String, rank: Int = 0, scale: Double = 1) -> [(x: Double, y: Double)] {
        let records = run.training[rank] ?? [:]
        return records.keys.sorted().compactMap { step in records[step]?[key].map { (Double(step), $0 * scale) } }
    }

    func lossPanel() -> Panel {
        var p = Panel(title: "Training loss", yLabel: "loss", rightLabel: "learning rate")
        let loss = series("loss")
        p.curves.append(Curve(name: "loss", color: "#9ecae1", points: thin(loss, Self.mean), width: 1.1))
        // A centred moving average over about 1/20 of the run: unlike an exponential average it does not
        // lag behind a falling loss (a plot is drawn after the fact, so it may look ahead). Near the ends
        // the window narrows symmetrically, so the first steps' steep fall is not pulled down.
        if let (smooth, window) = Self.smoothed(loss) {
            p.curves.append(Curve(name: "smoothed (mean of \(2 * window + 1) steps)", color: "#08519c",
                                  points: thin(smooth, Self.mean), width: 2.4))
        }
        let lr = series("lr")
        if !lr.isEmpty {
            p.curves.append(Curve(name: "learning rate (right)", color: "#888888", points: thin(lr, Self.mean), width: 1.2,
                                  dash: "5,3", right: true))
            p.rightFromZero = true
        }
        return p
    }

    /// A centred moving average over about 1/40 of the points on each side (at most 250), and that half-width;
    /// nil under 20 points.
    static func smoothed(_ points: [(x: Double, y: Double)]) -> ([(x: Double, y: Double)], Int)? {
        guard points.count >= 20 else { return nil }
        let window = min(max(points.count / 40, 1), 250)
        var prefix = [0.0]
        for point in points { prefix.append(prefix.last! + point.y) }
        let smooth = points.indices.map { i -> (x: Double, y: Double) in
            let half = min(window, i, points.count - 1 - i)
            return (points[i].x, (prefix[i + half + 1] - prefix[i - half]) / Double(2 * half + 1))
        }
        return (smooth, window)
    }

    /// Accuracies (0...1, drawn in %) and BLEU (already 0...100) share the scores panel.
    static func isAccuracy(_ name: String) -> Bool {
        name.contains("accuracy") || name.contains("top1") || name.contains("top5") || name.hasSuffix("_acc")
            || name.contains("bleu")
    }

    func evalSeries(_ name: String, scale: Double = 1) -> [(x: Double, y: Double)] {
        run.evaluation.keys.sorted().compactMap { step in run.evaluation[step]?[name].map { (Double(step), $0 * scale) } }
    }

    var evalNames: [String] { Set(run.evaluation.values.flatMap(\.keys)).sorted() }

    func evalLossPanel() -> Panel {
        let names = evalNames.filter { !Self.isAccuracy($0) }
        let perplexity = names.filter { $0.contains("perplexity") }
        let losses = names.filter { !$0.contains("perplexity") }
        // Perplexity is exp(loss): on the loss's axis it would flatten the loss, so it gets the right one.
        let rightSide = !losses.isEmpty && !perplexity.isEmpty
        var p = Panel(title: "Evaluation loss", yLabel: losses.isEmpty ? "perplexity" : "loss",
                      rightLabel: rightSide ? "perplexity" : nil)
        for (i, name) in (losses + perplexity).enumerated() {
            let onRight = rightSide && perplexity.contains(name)
            p.curves.append(Curve(name: String(name.dropFirst("eval_".count)) + (onRight ? " (right)" : ""),
                                  color: Self.palette[(i + 3) % Self.palette.count], points: evalSeries(name),
                                  width: 2, dash: onRight ? "6,3" : nil, markers: true, right: onRight))
        }
        if names.isEmpty { p.empty = "no evaluation records (eval.every is 0 or no step reached it)" }
        return p
    }

    func accuracyPanel() -> Panel {
        let names = evalNames.filter(Self.isAccuracy)
        let bleuOnly = !names.isEmpty && names.allSatisfy { $0.contains("bleu") }
        var p = Panel(title: bleuOnly ? "Evaluation BLEU" : "Evaluation accuracy", yLabel: bleuOnly ? "BLEU" : "accuracy (%)",
                      fromZero: true)
        for (i, name) in names.enumerated() {
            p.curves.append(Curve(name: String(name.dropFirst("eval_".count)), color: Self.palette[i % Self.palette.count],
                                  points: evalSeries(name, scale: name.contains("bleu") ? 1 : 100), width: 2, markers: true))
        }
        if p.curves.isEmpty { p.empty = "no accuracy metrics among the evaluation records" }
        return p
    }

    func throughputPanel() -> Panel {
        var p = Panel(title: "Throughput (rank 0, per log interval)", yLabel: "samples / s", rightLabel: "MFU (%)",
                      fromZero: true, rightFromZero: true)
        p.curves.append(Curve(name: "samples/s", color: "#2ca02c", points: thin(series("samples_per_s"), Self.mean), width: 2))
        let mfu = series("mfu", scale: 100)
        if mfu.isEmpty { p.rightLabel = nil } else {
            p.curves.append(Curve(name: "MFU % (right)", color: "#9467bd", points: thin(mfu, Self.mean), width: 1.6,
                                  dash: "6,3", right: true))
        }
        return p
    }

    /// Per step: t_step of every rank that logged it.
    func stepTimes() -> [(step: Int, times: [Double])] {
        steps.map { step in (step, run.training.values.compactMap { $0[step]?["t_step"] }) }.filter { !$0.times.isEmpty }
    }

    func spreadPanel() -> Panel {
        let ranks = run.training.count
        var p = Panel(title: "Step time over \(ranks) rank\(ranks == 1 ? "" : "s") (min, median, max)",
                      yLabel: "seconds", fromZero: true)
        let rows = stepTimes()
        guard !rows.isEmpty else { p.empty = "no t_step fields in the training records"; return p }
        let xs = rows.map { Double($0.step) }
        let lo = rows.map { $0.times.min()! }, hi = rows.map { $0.times.max()! }
        let median = rows.map { r -> Double in
            let t = r.times.sorted(), n = t.count
            return n % 2 == 1 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2
        }
        let lower = thin(Self.points(xs, lo), { $0.min()! })
        let upper = thin(Self.points(xs, hi), { $0.max()! })
        if ranks > 1 {
            p.bands.append(Band(name: "min–max", color: "#9ecae1", x: lower.map(\.x), lower: lower.map(\.y),
                                upper: upper.map(\.y), opacity: 0.5))
            p.curves.append(Curve(name: "max (slowest rank)", color: "#d62728", points: upper, width: 1.2))
            p.curves.append(Curve(name: "median", color: "#222222", points: thin(Self.points(xs, median), Self.mean), width: 2))
            p.curves.append(Curve(name: "min", color: "#1f77b4", points: lower, width: 1.2))
        } else {
            p.curves.append(Curve(name: "rank 0", color: "#222222", points: upper, width: 1.6))
        }
        (p.ceiling, p.note) = Self.ceiling(hi)
        return p
    }

    func phasePanel() -> Panel {
        let phases = [("t_data", "data"), ("t_forward", "forward"), ("t_backward", "backward"),
                      ("t_grad_wait", "gradient wait"), ("t_optimizer", "optimizer"), ("t_checkpoint", "checkpoint")]
        let colors = ["#8c564b", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#bbbbbb"]
        let ranks = Array(run.training.values)
        var p = Panel(title: "Step time by phase (mean over ranks, stacked)", yLabel: "seconds", fromZero: true)
        let xs = steps.map(Double.init)
        func rankMean(_ key: String, _ step: Int) -> Double {
            let v = ranks.compactMap { $0[step]?[key] }
            return v.isEmpty ? 0 : v.reduce(0, +) / Double(v.count)
        }
        var layers = phases.map { key, name in (name: name, values: steps.map { rankMean(key, $0) }) }
        // Whatever t_step holds beyond the named phases (loss bookkeeping, the replica check, logging).
        let total = steps.map { rankMean("t_step", $0) }
        let named = steps.indices.map { i in layers.reduce(0) { $0 + $1.values[i] } }
        layers.append((name: "other", values: zip(total, named).map { max($0 - $1, 0) }))
        var base = [Double](repeating: 0, count: steps.count)
        for (i, layer) in layers.enumerated() where layer.values.contains(where: { $0 > 0 }) {
            let top = zip(base, layer.values).map(+)
            let lower = thin(Self.points(xs, base), Self.mean)
            let upper = thin(Self.points(xs, top), Self.mean)
            p.bands.append(Band(name: layer.name, color: colors[i], x: lower.map(\.x), lower: lower.map(\.y), upper: upper.map(\.y)))
            base = top
        }
        if p.bands.isEmpty { p.empty = "no t_* time fields in the training records" }
        (p.ceiling, p.note) = Self.ceiling(base)
        return p
    }

    /// A top for a time axis that a few slow steps (the first one, checkpoints) would otherwise set:
    /// 2.5 x the 95th percentile when the maximum is above it, with a note of what is cut off.
    static func ceiling(_ values: [Double]) -> (Double?, String?) {
        guard values.count >= 20 else { return (nil, nil) }
        let sorted = values.sorted()
        let cap = sorted[Int(Double(sorted.count - 1) * 0.95)] * 2.5
        let above = values.filter { $0 > cap }.count
        guard cap > 0, above > 0 else { return (nil, nil) }
        return (cap, "\(above) step\(above == 1 ? "" : "s") above the axis (peak \(String(format: "%.3g", sorted.last!)) s)")
    }

    static let mean: ([Double]) -> Double = { $0.reduce(0, +) / Double($0.count) }

    static func points(_ xs: [Double], _ ys: [Double]) -> [(x: Double, y: Double)] { zip(xs, ys).map { (x: $0, y: $1) } }

    /// At most `maxPoints` points: consecutive points combined in equal buckets (x averaged).
    func thin(_ points: [(x: Double, y: Double)], _ combine: ([Double]) -> Double) -> [(x: Double, y: Double)] {
        guard points.count > Self.maxPoints else { return points }
        let size = (points.count + Self.maxPoints - 1) / Self.maxPoints
        return stride(from: 0, to: points.count, by: size).map { start in
            let bucket = points[start..<min(start + size, points.count)]
            return (Self.mean(bucket.map(\.x)), combine(bucket.map(\.y)))
        }
    }

    // MARK: Drawing

    func draw(_ p: Panel, id: Int, x: Double, y: Double, w: Double, h: Double, xAxis: Axis) -> String {
        var s = "<g>\n"
        s += text(x + 14, y + 20, p.title, size: 15, weight: "bold")
        // Legend entries in rows under the title, so they never cover a curve.
        let entries = p.bands.map { (name: $0.name, color: $0.color, area: true, dash: nil as String?) }
            + p.curves.map { (name: $0.name, color: $0.color, area: false, dash: $0.dash) }
        var lx = x + 14, ly = y + 38
        for e in entries {
            let width = 32 + Double(e.name.count) * 7.0
            if lx + width > x + w - 10 { lx = x + 14; ly += 17 }
            if e.area {
                s += "<rect x=\"\(f(lx))\" y=\"\(f(ly - 9))\" width=\"16\" height=\"10\" fill=\"\(e.color)\"/>\n"
            } else {
                s += "<line x1=\"\(f(lx))\" y1=\"\(f(ly - 4))\" x2=\"\(f(lx + 18))\" y2=\"\(f(ly - 4))\" stroke=\"\(e.color)\" stroke-width=\"2.5\"\(e.dash.map { " stroke-dasharray=\"\($0)\"" } ?? "")/>\n"
            }
            s += text(lx + 22, ly, e.name, size: 12)
            lx += width
        }
        let left = x + 70, right = x + w - (p.rightLabel == nil ? 22 : 84)
        let top = ly + 12, bottom = y + h - 42
        let pw = right - left, ph = bottom - top
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\" fill=\"#fbfbfb\" stroke=\"#999999\"/>\n"
        if let message = p.empty {
            return s + text(left + pw / 2, top + ph / 2, message, size: 13, fill: "#777777", anchor: "middle") + "</g>\n"
        }

        let leftValues = p.curves.filter { !$0.right }.flatMap { $0.points.map(\.y) } + p.bands.flatMap { $0.lower + $0.upper }
        var yAxis = Axis(values: leftValues, fromZero: p.fromZero, ceiling: p.ceiling)
        let rightValues = p.curves.filter(\.right).flatMap { $0.points.map(\.y) }
        let rAxis = rightValues.isEmpty ? nil : Axis(values: rightValues, fromZero: p.rightFromZero)
        if leftValues.isEmpty { yAxis = Axis(values: [0, 1], fromZero: true) }
        let px = { (v: Double) in left + (v - xAxis.lo) / (xAxis.hi - xAxis.lo) * pw }
        let py = { (axis: Axis, v: Double) in bottom - (v - axis.lo) / (axis.hi - axis.lo) * ph }

        for t in yAxis.ticks {
            let ty = py(yAxis, t)
            s += "<line x1=\"\(f(left))\" y1=\"\(f(ty))\" x2=\"\(f(right))\" y2=\"\(f(ty))\" stroke=\"#e3e3e3\"/>\n"
            s += "<line x1=\"\(f(left - 5))\" y1=\"\(f(ty))\" x2=\"\(f(left))\" y2=\"\(f(ty))\" stroke=\"#555555\"/>\n"
            s += text(left - 8, ty + 4, yAxis.label(t), size: 11, anchor: "end")
        }
        for t in xAxis.ticks {
            let tx = px(t)
            s += "<line x1=\"\(f(tx))\" y1=\"\(f(bottom))\" x2=\"\(f(tx))\" y2=\"\(f(bottom + 5))\" stroke=\"#555555\"/>\n"
            s += text(tx, bottom + 18, xAxis.label(t), size: 11, anchor: "middle")
        }
        if let rAxis {
            for t in rAxis.ticks {
                let ty = py(rAxis, t)
                s += "<line x1=\"\(f(right))\" y1=\"\(f(ty))\" x2=\"\(f(right + 5))\" y2=\"\(f(ty))\" stroke=\"#555555\"/>\n"
                s += text(right + 8, ty + 4, rAxis.label(t), size: 11)
            }
        }
        s += text(left + pw / 2, bottom + 34, "step", size: 12, anchor: "middle")
        s += text(x + 16, top + ph / 2, p.yLabel, size: 12, anchor: "middle", rotate: true)
        if let label = p.rightLabel, rAxis != nil {
            s += text(x + w - 12, top + ph / 2, label, size: 12, anchor: "middle", rotate: true)
        }

        // The clip leaves room for the markers of the first and last evaluation, drawn on the frame.
        s += "<clipPath id=\"plot\(id)\"><rect x=\"\(f(left - 5))\" y=\"\(f(top))\" width=\"\(f(pw + 10))\" height=\"\(f(ph))\"/></clipPath>\n"
        s += "<g clip-path=\"url(#plot\(id))\">\n"
        for b in p.bands where !b.x.isEmpty {
            let upper = zip(b.x, b.upper).map { "\(f(px($0))),\(f(py(yAxis, $1)))" }
            let lower = zip(b.x, b.lower).reversed().map { "\(f(px($0))),\(f(py(yAxis, $1)))" }
            s += "<polygon points=\"\((upper + lower).joined(separator: " "))\" fill=\"\(b.color)\" fill-opacity=\"\(b.opacity)\"/>\n"
        }
        for c in p.curves where !c.points.isEmpty {
            let axis = c.right ? rAxis ?? yAxis : yAxis
            let coords = c.points.map { "\(f(px($0.x))),\(f(py(axis, $0.y)))" }
            s += "<polyline points=\"\(coords.joined(separator: " "))\" fill=\"none\" stroke=\"\(c.color)\" stroke-width=\"\(c.width)\" stroke-linejoin=\"round\"\(c.dash.map { " stroke-dasharray=\"\($0)\"" } ?? "")/>\n"
            if c.markers {
                for point in c.points {
                    s += "<circle cx=\"\(f(px(point.x)))\" cy=\"\(f(py(axis, point.y)))\" r=\"3.5\" fill=\"\(c.color)\"/>\n"
                }
            }
        }
        s += "</g>\n"
        if let note = p.note { s += text(right - 6, top + 14, note, size: 11, fill: "#aa3333", anchor: "end") }
        return s + "</g>\n"
    }

    func f(_ v: Double) -> String { String(format: "%.1f", v) }

    func text(_ x: Double, _ y: Double, _ content: String, size: Double, weight: String? = nil, fill: String = "#222222",
              anchor: String = "start", rotate: Bool = false) -> String {
        var attributes = "x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(Int(size))\" fill=\"\(fill)\" text-anchor=\"\(anchor)\""
        if let weight { attributes += " font-weight=\"\(weight)\"" }
        if rotate { attributes += " transform=\"rotate(-90 \(f(x)) \(f(y)))\"" }
        return "<text \(attributes)>\(Self.escape(content))</text>\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// Several runs side by side: the training loss of each (smoothed from 20 logged steps on, raw below that)
/// and each evaluation metric, one curve per run in the run's colour, on a shared step axis.
struct Comparison {
    let runs: [(name: String, run: MetricsRun)]
    static let maxEvalPanels = 5

    func svg() -> String {
        var panels = [lossPanel()]
        // Evaluation metrics in the order the runs name them (sorted within a run), at most five panels.
        var metrics: [String] = []
        for (name, run) in runs {
            for metric in Figure(run: run, title: name).evalNames where !metrics.contains(metric) { metrics.append(metric) }
        }
        for name in metrics.prefix(Self.maxEvalPanels) { panels.append(evalPanel(name)) }
        if metrics.isEmpty {
            var p = Panel(title: "Evaluation", yLabel: "")
            p.empty = "no evaluation records in any run"
            panels.append(p)
        }
        let allSteps = runs.flatMap { $0.run.training[0].map { Array($0.keys) } ?? [] }
            + runs.flatMap { Array($0.run.evaluation.keys) }
        let xAxis = Axis(values: allSteps.map(Double.init), fromZero: false)
        // The single-run figure's drawing, over this figure's panels.
        let figure = Figure(run: runs[0].run, title: "")
        // The runs' files under the title, wrapped at about 170 characters (12 px text on 1200 px).
        var lines: [String] = []
        for entry in runs.map({ "\($0.name): \($0.run.files.first ?? "")" }) {
            if let last = lines.last, last.count + 3 + entry.count <= 170 { lines[lines.count - 1] = last + " · " + entry }
            else { lines.append(entry) }
        }
        let header = Figure.header + Double(max(lines.count - 1, 0)) * 16
        let rows = (panels.count + 1) / 2
        let w = Figure.width / 2, h = (Figure.height - Figure.header) / 3
        let height = header + Double(rows) * h
        var s = Figure.svgStart(height: height)
        s += figure.text(16, 24, "Tandem metrics: " + runs.map(\.name).joined(separator: " vs "), size: 17, weight: "bold")
        for (i, line) in lines.enumerated() {
            s += figure.text(16, 43 + Double(i) * 16, line, size: 12, fill: "#555555")
        }
        for (i, p) in panels.enumerated() {
            s += figure.draw(p, id: i, x: Double(i % 2) * w, y: header + Double(i / 2) * h, w: w, h: h, xAxis: xAxis)
        }
        return s + "</svg>\n"
    }

    func color(_ i: Int) -> String { Figure.palette[i % Figure.palette.count] }

    func lossPanel() -> Panel {
        var p = Panel(title: "Training loss (rank 0)", yLabel: "loss")
        for (i, (name, run)) in runs.enumerated() {
            let figure = Figure(run: run, title: name)
            let loss = figure.series("loss")
            if let (smooth, window) = Figure.smoothed(loss) {
                p.curves.append(Curve(name: "\(name) (mean of \(2 * window + 1) steps)", color: color(i),
                                      points: figure.thin(smooth, Figure.mean), width: 2.2))
            } else {
                p.curves.append(Curve(name: name, color: color(i), points: figure.thin(loss, Figure.mean), width: 1.6))
            }
        }
        return p
    }

    func evalPanel(_ metric: String) -> Panel {
        let short = String(metric.dropFirst("eval_".count))
        let percent = Figure.isAccuracy(metric) && !metric.contains("bleu")
        var p = Panel(title: "Evaluation: \(short)", yLabel: percent ? "\(short) (%)" : short,
                      fromZero: Figure.isAccuracy(metric) || metric.hasSuffix("_cer") || metric.hasSuffix("_wer"))
        for (i, (name, run)) in runs.enumerated() {
            let points = Figure(run: run, title: name).evalSeries(metric, scale: percent ? 100 : 1)
            if points.isEmpty { continue }
            p.curves.append(Curve(name: name, color: color(i), points: points, width: 2, markers: true))
        }
        return p
    }
}

/// A linear axis over round numbers: 1, 2 or 5 times a power of ten between ticks, about five ticks.
struct Axis {
    var lo: Double, hi: Double, step: Double

    init(values: [Double], fromZero: Bool, ceiling: Double? = nil) {
        let finite = values.filter(\.isFinite)
        var a = finite.min() ?? 0, b = finite.max() ?? 1
        if fromZero { a = min(a, 0) }
        if let ceiling, ceiling > a { b = min(b, ceiling) }
        if b - a < 1e-12 * max(abs(a), 1) { a -= max(abs(a) * 0.1, 1e-9); b += max(abs(b) * 0.1, 1e-9) }
        let raw = (b - a) / 5
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let n = raw / magnitude
        step = (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * magnitude
        lo = (a / step).rounded(.down) * step
        hi = (b / step).rounded(.up) * step
        if fromZero && a >= 0 { lo = max(lo, 0) }
    }

    var ticks: [Double] {
        let count = Int(((hi - lo) / step).rounded())
        return (0...count).map { lo + Double($0) * step }
    }

    /// A tick label with as many decimals as the tick spacing needs; thousands as k and millions as M.
    func label(_ v: Double) -> String {
        if abs(v) < step * 1e-6 { return "0" }
        if step >= 1e6 { return trimmed(v / 1e6, step / 1e6) + "M" }
        if step >= 1000 { return trimmed(v / 1000, step / 1000) + "k" }
        if step < 1e-3 {
            // Enough mantissa digits that neighbouring ticks differ (1.6e-03, 1.8e-03, not 2e-03 twice).
            let digits = max(0, Int(log10(abs(v) / step).rounded(.up)))
            return String(format: "%.\(digits)e", v)
        }
        return trimmed(v, step)
    }

    private func trimmed(_ v: Double, _ step: Double) -> String {
        let decimals = max(0, Int((-log10(step)).rounded(.up)))
        return String(format: "%.\(decimals)f", v)
    }
}
