import ArgumentParser
import Foundation
import StepFlow

/// `report`: a run as one self-contained HTML page, to open in any browser, offline.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a run as one self-contained HTML page: summary, timeline, critical path, failed steps with their logs.",
        discussion: "The page needs no network. Past --aggregate-above started steps the timeline is drawn per time bin. Exit codes: 0 written, 2 no readable run database there, or the output cannot be written.")

    @Argument(help: "The run directory (or use --run-dir).")
    var directory: String?

    @Option(name: .customLong("run-dir"), help: "The run directory (default ./run).")
    var runDir: String?

    @Option(name: [.short, .long], help: "Where to write the page ('-' for standard output).")
    var output: String = "report.html"

    @Option(name: .customLong("aggregate-above"), help: "Draw the timeline per time bin when more steps than this started.")
    var aggregateAbove: Int = 2000

    @Option(name: .customLong("log-lines"), help: "Lines of each failed step's log to show.")
    var logLines: Int = 30

    func validate() throws {
        guard aggregateAbove >= 0 else { throw ValidationError("--aggregate-above must be 0 or more (got \(aggregateAbove)).") }
        guard (0...10_000).contains(logLines) else { throw ValidationError("--log-lines must be between 0 and 10000 (got \(logLines)).") }
    }

    func run() throws {
        let dir = URL(fileURLWithPath: directory ?? runDir ?? "./run")
        let stored = try ReportOutput.readRun(dir)
        let logs = LogTail.failedSteps(of: stored, runDirectory: dir, lines: logLines)
        let options = HTMLReport.Options(subtitle: dir.standardizedFileURL.path, aggregateAbove: aggregateAbove)
        let page = HTMLReport.html(stored, label: StepLabel.of, logs: logs, options: options)
        try ReportOutput.write(page, to: output)
        if output != "-" {
            let started = stored.steps.lazy.filter { $0.start != nil }.count
            FileHandle.standardError.write(Data("wrote \(output) (\(page.utf8.count / 1024) KiB): \(stored.steps.count) steps, \(started) started, \(stored.count(.failed)) failed\n".utf8))
        }
    }
}
