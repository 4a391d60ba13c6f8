import Foundation

/// The text printed at the end of a run: counts, wall time, and every failed step with its error and log.
package enum RunSummary {
    package static func text(_ report: RunReport, protocolName: String, runDirectory: URL) -> String {
        var lines: [String] = []
        let c = { (s: StepStatus) in report.count(s) }
        let headline: String
        switch report.outcome {
        case .finished: headline = "finished"
        case .failed: headline = "FAILED"
        case .stalled: headline = "STALLED"
        case .aborted(let signal): headline = "ABORTED (signal \(signal))"
        case .stoppedForTimeLimit: headline = "STOPPED before the allocation's end"
        }
        lines.append("\(protocolName) \(headline) in \(String(format: "%.3f", report.wallSeconds)) s "
                     + "(mpi=\(report.config.ranks), threads=\(report.config.threadsPerRank), run dir \(runDirectory.path))")
        var counts = "steps: \(report.records.count) total, \(c(.finished)) finished, \(c(.failed)) failed, \(c(.skipped)) skipped"
        for s in [StepStatus.aborted, .running, .waiting, .new] where c(s) > 0 {
            counts += ", \(c(s)) " + (s == .new ? "not run" : s == .running ? "running on a rank that died" : s.rawValue)
        }
        lines.append(counts)
        for r in report.records where r.status == .failed {
            let log = r.logPath ?? StepLogFile.path(runDirectory: runDirectory, step: r.id)
            let place = r.rank.map { " on rank \($0)" + (r.slot.map { " slot \($0)" } ?? "") } ?? ""
            lines.append("  failed step \(r.id) '\(r.displayName)'\(place) after \(r.attempts) attempt(s): \(r.error ?? "no error text")")
            lines.append("    log: \(log)")
        }
        if case .stalled(let waiting, let blocked) = report.outcome {
            lines.append("  the run stalled: nothing runs and nothing can become ready.")
            if !waiting.isEmpty {
                lines.append("  waiting steps never released: \(list(waiting, report)). Release them from a step (release(id)) or from stepsCheck.")
            }
            if !blocked.isEmpty {
                lines.append("  steps blocked behind them: \(list(blocked, report))")
            }
        }
        if let hookError = report.hookError { lines.append("  \(hookError)") }
        if let databaseError = report.databaseError { lines.append("  \(databaseError)") }
        return lines.joined(separator: "\n")
    }

    private static func list(_ ids: [StepID], _ report: RunReport) -> String {
        let shown = ids.prefix(20).map { "\($0) '\(report.record($0)?.displayName ?? "?")'" }.joined(separator: ", ")
        return ids.count > 20 ? shown + " and \(ids.count - 20) more" : shown
    }
}
