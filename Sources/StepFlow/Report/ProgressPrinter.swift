import Foundation
import Synchronization

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
