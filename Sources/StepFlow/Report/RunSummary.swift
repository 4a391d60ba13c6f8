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

/// When to print a progress line.
package enum ProgressMode: String, Sendable, CaseIterable {
    case auto, always, never
}

/// Prints progress on standard error: on a terminal one line rewritten in place twice a second; in a
/// log file (a batch job) a plain line every 10 seconds. Each says finished/total, running, failed,
/// steps per second and, once that rate means something, the time left.
package final class ProgressPrinter: Sendable {
    private let enabled: Bool
    private let terminal: Bool
    private let interval: Double
    private let lastPrint = LockedDouble()

    package init(mode: ProgressMode) {
        let tty = isatty(STDERR_FILENO) != 0
        self.terminal = tty
        self.enabled = mode == .always || (mode == .auto && tty)
        self.interval = tty ? 0.5 : 10
    }

    package func update(_ p: ProgressSnapshot) {
        guard enabled else { return }
        let t = Double(p.elapsed.components.seconds) + Double(p.elapsed.components.attoseconds) / 1e18
        if !p.final && !lastPrint.advance(to: t, ifAtLeast: interval) { return }
        let line = Self.line(p, seconds: t)
        if terminal {
            // \u{1B}[K clears what a longer earlier line left on the right.
            FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K" + (p.final ? "\n" : "")).utf8))
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    /// The progress line for a snapshot taken `seconds` after the run started.
    package static func line(_ p: ProgressSnapshot, seconds t: Double) -> String {
        let done = p.finished + p.failed + p.skipped
        let rate = t > 0 ? Double(done) / t : 0
        var line = "[stepflow] \(p.finished)/\(p.total) finished, \(p.running) running, \(p.failed) failed"
        if p.skipped > 0 { line += ", \(p.skipped) skipped" }
        if p.waiting > 0 { line += ", \(p.waiting) waiting" }
        line += String(format: ", %.1f steps/s, %@", rate, clock(t))
        // Steps still to do over the rate so far; the total grows while steps insert steps.
        if !p.final, rate > 0, done > 0, p.total > done {
            line += ", ETA " + clock(Double(p.total - done) / rate)
        }
        return line
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return String(format: "%.1f s", seconds) }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, s % 3600 / 60)
    }
}

import Synchronization

/// A time stamp that moves forward only when enough time has passed.
final class LockedDouble: Sendable {
    private let value = Mutex<Double>(-Double.infinity)
    func advance(to t: Double, ifAtLeast gap: Double) -> Bool {
        value.withLock { last in
            guard t - last >= gap else { return false }
            last = t
            return true
        }
    }
}
