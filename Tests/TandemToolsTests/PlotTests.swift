import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import TandemTools

final class PlotTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "tandem-plot-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// A line as `MetricsWriter.write` formats it; rank 1 is slower so the spread is visible.
    func stepLine(_ step: Int, rank: Int) -> String {
        let loss = 10 * exp(-Double(step) / 30) + 2 + 0.2 * sin(Double(step))
        let t = 0.5 + 0.1 * Double(rank) + (step == 1 ? 2 : 0)
        return String(format: #"{"step":%d,"rank":%d,"time":%.3f,"loss":%.6f,"lr":%.6e,"grad_norm":%.6f,"samples_per_s":%.3f,"tokens_per_s":%.1f,"mfu":%.4f,"t_data":%.6f,"t_forward":%.6f,"t_backward":%.6f,"t_grad_wait":%.6f,"t_optimizer":%.6f,"t_checkpoint":%.6f,"t_step":%.6f}"#,
                      step, rank, 1000 + Double(step), loss, 1e-3 * min(Double(step) / 10, 1), 1.5, 64 / t, 8192 / t,
                      0.3, 0.01, t * 0.3, t * 0.55, 0.05 * Double(1 - rank), 0.03, step % 50 == 0 ? 0.4 : 0.0, t + 0.02)
    }

    func evalLine(_ step: Int, rank: Int) -> String {
        let loss = 6 - Double(step) / 50
        return String(format: #"{"step":%d,"rank":%d,"time":%.3f,"eval_mlm_loss":%.6f,"eval_mlm_accuracy":%.6f,"eval_perplexity":%.6f,"eval_nsp_accuracy":%.6f}"#,
                      step, rank, 1000 + Double(step), loss, 0.05 + Double(step) / 1000, exp(loss), 0.6)
    }

    /// Rank 0's and rank 1's files for 100 steps with an evaluation every 25; returns rank 0's path.
    func writeRun(steps: Int = 100) throws -> String {
        for rank in 0..<2 {
            var lines: [String] = []
            for step in 1...steps {
                lines.append(stepLine(step, rank: rank))
                if step % 25 == 0 { lines.append(evalLine(step, rank: rank)) }
            }
            let name = rank == 0 ? "metrics.jsonl" : "metrics.rank\(rank).jsonl"
            try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        return dir + "/metrics.jsonl"
    }

    func testReadsEveryRankAndLaterRecordsWin() throws {
        let path = try writeRun()
        // A resumed run appends the steps after its checkpoint again: the later loss must win.
        let again = stepLine(100, rank: 0).replacingOccurrences(of: #""loss":"#, with: #""loss":1.5,"old":"#)
        try (try String(contentsOfFile: path, encoding: .utf8) + again + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let run = try MetricsRun(path: path)
        XCTAssertEqual(run.files.count, 2)
        XCTAssertEqual(run.training[0]?.count, 100)
        XCTAssertEqual(run.training[1]?.count, 100)
        XCTAssertEqual(run.training[0]?[100]?["loss"], 1.5)
        XCTAssertEqual(run.evaluation.keys.sorted(), [25, 50, 75, 100])
        XCTAssertEqual(run.evaluation[50]?["eval_mlm_loss"], 5)
    }

    func testRendersWellFormedSVGWithEveryPanel() throws {
        let svg = try MetricsPlot.render(metricsPath: try writeRun())
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))")
        for title in ["Training loss", "Evaluation loss", "Evaluation accuracy", "Throughput", "Step time over 2 ranks",
                      "Step time by phase", "mlm_accuracy", "nsp_accuracy", "perplexity (right)", "samples/s",
                      "MFU % (right)", "gradient wait", "median", "max (slowest rank)", ">step<"] {
            XCTAssertTrue(svg.contains(title), "the SVG lacks \(title)")
        }
        XCTAssertTrue(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"900\""))
        // Self-contained: the namespace is the only address, and nothing is linked or scripted.
        XCTAssertEqual(svg.components(separatedBy: "http").count, 2)
        XCTAssertFalse(svg.contains("href") || svg.contains("<script") || svg.contains("@import"))
        // The first step's 2.5 s would flatten the 0.5 s steps: the axis is cut and says so.
        XCTAssertTrue(svg.contains("step above the axis"))
    }

    func testLongRunsAreThinnedAndWithoutEvaluationSaySo() throws {
        var lines = (1...5000).map { stepLine($0, rank: 0) }
        lines.insert("", at: 10)
        let path = dir + "/long.jsonl"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let svg = try MetricsPlot.render(metricsPath: path)
        XCTAssertTrue(XMLParser(data: Data(svg.utf8)).parse())
        XCTAssertTrue(svg.contains("no evaluation records"))
        XCTAssertTrue(svg.contains("Step time over 1 rank "))
        XCTAssertLessThan(svg.utf8.count, 600_000, "5,000 steps should be drawn with about 1,000 points per curve")
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func testBadLinesNameTheFileAndLine() throws {
        let path = dir + "/metrics.jsonl"
        try [stepLine(1, rank: 0), stepLine(2, rank: 0), #"{"step":3,"rank":0,"loss":"#].joined(separator: "\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(message { _ = try MetricsPlot.render(metricsPath: path) }.hasPrefix("\(path):3: not a JSON object"))

        try [stepLine(1, rank: 0), #"{"rank":0,"loss":2.0}"#].joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(message { _ = try MetricsPlot.render(metricsPath: path) }.hasPrefix("\(path):2: the record has no integer \"step\""))

        try #"{"step":1,"rank":0,"time":3.0}"#.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(message { _ = try MetricsPlot.render(metricsPath: path) }.hasPrefix("\(path):1: neither a training record"))

        // A malformed line in another rank's file is named too.
        try stepLine(1, rank: 0).write(toFile: path, atomically: true, encoding: .utf8)
        try "\n\nnot json\n".write(toFile: dir + "/metrics.rank1.jsonl", atomically: true, encoding: .utf8)
        XCTAssertTrue(message { _ = try MetricsPlot.render(metricsPath: path) }.hasPrefix("\(dir)/metrics.rank1.jsonl:3: not a JSON object"))

        try "".write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: dir + "/metrics.rank1.jsonl")
        XCTAssertTrue(message { _ = try MetricsPlot.render(metricsPath: path) }.contains("no training records"))

        let missing = dir + "/none.jsonl"
        XCTAssertTrue(message { try MetricsPlot.write(metricsPath: missing, out: dir + "/x.svg") }
            .hasPrefix("\(missing): cannot read the metrics file"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.svg"))
    }

    func testComparesRunsOnOneFigure() throws {
        let first = try writeRun()
        // A second run in its own directory: 60 steps, a lower loss and one evaluation metric of its own.
        let other = dir + "/scratch"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        var lines = (1...60).map { stepLine($0, rank: 0).replacingOccurrences(of: #""loss":"#, with: #""loss":0.5,"was":"#) }
        lines.append(#"{"step":60,"rank":0,"time":1.0,"eval_mlm_loss":4.5,"eval_cer":0.25}"#)
        try (lines.joined(separator: "\n") + "\n").write(toFile: other + "/metrics.jsonl", atomically: true, encoding: .utf8)

        let svg = try MetricsPlot.render(metricsPaths: [first, other + "/metrics.jsonl"], labels: ["pre-trained", "scratch"])
        XCTAssertTrue(XMLParser(data: Data(svg.utf8)).parse())
        for title in ["pre-trained vs scratch", "Training loss (rank 0)", "pre-trained (mean of", "scratch (mean of",
                      "Evaluation: mlm_accuracy", "Evaluation: mlm_loss", "Evaluation: cer", "Evaluation: nsp_accuracy"] {
            XCTAssertTrue(svg.contains(title), "the comparison lacks \(title)")
        }
        // Five evaluation panels at most (the first run has four metrics, the second adds cer): six panels in all.
        XCTAssertEqual(svg.components(separatedBy: "Evaluation: ").count - 1, 5)
        XCTAssertTrue(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"900\""))
        // Long file lists wrap under the title, and the figure grows to hold them.
        let many = try MetricsPlot.render(metricsPaths: Array(repeating: first, count: 4) + [other + "/metrics.jsonl"],
                                          labels: ["a run with a long name number one", "two", "three", "four", "five"])
        XCTAssertTrue(XMLParser(data: Data(many.utf8)).parse())
        let subtitles = many.components(separatedBy: "\n").filter { $0.contains("fill=\"#555555\"") && $0.contains("metrics.jsonl") }
        XCTAssertGreaterThan(subtitles.count, 1)
        XCTAssertFalse(many.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"900\""))
        // Without labels, each run is named by its directory.
        let unnamed = try MetricsPlot.render(metricsPaths: [first, other + "/metrics.jsonl"])
        XCTAssertTrue(unnamed.contains("\((dir as NSString).lastPathComponent) vs scratch"))
        XCTAssertTrue(message { _ = try MetricsPlot.render(metricsPaths: [first, first], labels: ["one"]) }
            .contains("1 label(s) for 2 metrics files"))
        // A bad file among several is named as for one.
        XCTAssertTrue(message { _ = try MetricsPlot.render(metricsPaths: [first, dir + "/none.jsonl"]) }
            .hasPrefix("\(dir)/none.jsonl: cannot read the metrics file"))
    }

    func testAxisTicksAreRoundNumbers() {
        let a = Axis(values: [1.3, 9.7], fromZero: false)
        XCTAssertEqual(a.ticks, [0, 2, 4, 6, 8, 10])
        XCTAssertEqual(a.label(4), "4")
        let b = Axis(values: [0, 0.0123], fromZero: true)
        XCTAssertEqual(b.lo, 0)
        XCTAssertEqual(b.label(b.ticks[1]), "0.002")
        let c = Axis(values: [1, 48_000], fromZero: true)
        XCTAssertEqual(c.ticks.map(c.label), ["0", "10k", "20k", "30k", "40k", "50k"])
        let flat = Axis(values: [3, 3], fromZero: false)
        XCTAssertLessThan(flat.lo, 3)
        XCTAssertGreaterThan(flat.hi, 3)
    }
}
