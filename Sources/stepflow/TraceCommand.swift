import ArgumentParser
import Foundation
import StepFlow

/// `trace`: a run as a Chrome/Perfetto trace, to look at in https://ui.perfetto.dev (it runs in the
/// browser; the file stays on your machine) or chrome://tracing.
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Write a run as a Chrome/Perfetto trace (JSON): a track per rank and slot, a slice per step.",
        discussion: "Open the file in https://ui.perfetto.dev or chrome://tracing. Failed steps are red and say 'failed'; arrows go from a step to the steps it inserted while it ran. Exit codes: 0 written, 2 no readable run database there, or the output cannot be written.")

    @Argument(help: "The run directory (or use --run-dir).")
    var directory: String?

    @Option(name: .customLong("run-dir"), help: "The run directory (default ./run).")
    var runDir: String?

    @Option(name: [.short, .long], help: "Where to write the trace ('-' for standard output).")
    var output: String = "trace.json"

    func run() throws {
        let stored = try ReportOutput.readRun(URL(fileURLWithPath: directory ?? runDir ?? "./run"))
        let (text, counts) = TraceExport.render(stored, label: StepLabel.of)
        try ReportOutput.write(text, to: output)
        if output != "-" {
            FileHandle.standardError.write(Data("wrote \(output): \(counts.slices) steps on \(counts.lanes) rank/slot tracks, \(counts.flows) insert arrows\n".utf8))
        }
    }
}
