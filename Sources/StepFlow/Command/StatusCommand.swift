import ArgumentParser
import Foundation

/// `status`: what a run's database says, as a table or as JSON; works while the run is live (it only
/// reads, and a reader never blocks the run's writer in WAL mode) and after it ended. A run the
/// database calls `running` is checked against the run directory's lock: held, the owner is shown;
/// free, the run is shown `interrupted` (its launch died without recording how it ended).
package struct StatusCommand: ParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a run's steps: status, rank/slot, duration, error.",
        discussion: "A run recorded as running shows the launch that owns it (from <run-dir>/run.lock), or 'interrupted' when no launch holds that lock any more. Exit codes: 0 shown, 2 no readable run database there.")

    @Argument(help: "The run directory (or use --run-dir).")
    package var directory: String?

    @Option(name: .customLong("run-dir"), help: "The run directory (default ./run).")
    package var runDir: String?

    @Flag(help: "Print the run as one JSON document.")
    package var json = false

    @Flag(help: "Print how the last launch ended, as key=value lines for scripts (run_mpi.sh --relaunch reads them).")
    package var ending = false

    @Flag(help: "Under each step that declared files, list them as it saw them: inputs when it started, outputs when it ended.")
    package var files = false

    package init() {}

    package func run() throws {
        let dir = URL(fileURLWithPath: directory ?? runDir ?? "./run")
        let view: RunView
        do {
            view = try RunWatcher(runDirectory: dir).refresh()
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if ending {
            print(TerminalText.visible(Self.endingLines(view)))
        } else if json {
            print(RunDocument.text(view))
        } else {
            print(TerminalText.visible(Self.table(view, files: files)))
        }
    }

    static func table(_ view: RunView, files: Bool = false) -> String {
        let run = view.header
        var counts = StepStatus.allCases.compactMap { s -> String? in
            let n = view.count(s)
            return n > 0 ? "\(n) \(s.rawValue)" : nil
        }
        if counts.isEmpty { counts = ["no steps"] }
        let owner = view.liveness.owner.map { " (\($0))" } ?? ""
        var lines = ["\(run.protocolName): \(view.status)\(owner), mpi=\(run.mpi) threads=\(run.threads), \(view.total) steps: \(counts.joined(separator: ", "))"]
        if view.liveness == .interrupted {
            lines.append("note: the database says running, but no launch holds \(RunDirectoryLock.path(in: view.runDirectory)): the run ended without recording how (killed, or its node was lost). Finish it with --continue.")
        }
        lines += launchLines(run)
        lines.append(pad("ID", 7) + pad("FUNCTION", 24) + pad("STATUS", 10) + pad("RANK/SLOT", 11) + pad("SECONDS", 10) + "ERROR")
        for case let r? in view.records {
            let place = r.rank.map { "\($0)/\(r.slot.map(String.init) ?? "-")" } ?? "-"
            let seconds = r.start.flatMap { s in r.end.map { String(format: "%.3f", $0 - s) } } ?? "-"
            lines.append(pad(String(r.id), 7) + pad(r.displayName, 24) + pad(r.status.rawValue, 10) + pad(place, 11)
                         + pad(seconds, 10) + (r.error ?? ""))
            if files, let declared = r.result.flatMap({ StepOutcomeBlob.split($0).files }) {
                lines += fileLines(declared)
            }
        }
        return lines.joined(separator: "\n")
    }

    /// A step's declared files, indented under its row.
    static func fileLines(_ files: StepFiles) -> [String] {
        let formatter = ISO8601DateFormatter()
        func line(_ role: String, _ f: FileFingerprint) -> String {
            let when = formatter.string(from: Date(timeIntervalSince1970: Double(f.modified) / 1e9))
            let hash = f.hash.map { ", xxh64 \(String($0, radix: 16))" } ?? ""
            return "       \(role) \(f.path) (\(HTMLText.count(Int(f.size))) bytes, modified \(when)\(hash))"
        }
        return files.inputs.map { line("input ", $0) } + files.outputs.map { line("output", $0) }
    }

    /// How the last launch ended, for scripts: `key=value` lines (values on one line, lists
    /// space-separated). `ending` is `interrupted` for a launch that died without saying, `none`
    /// for a database of an older build.
    static func endingLines(_ view: RunView) -> String {
        let run = view.header, liveness = view.liveness
        let last = run.launchRecords.last
        let ending: String
        if let kind = last?.ending {
            ending = kind
        } else if last != nil {
            ending = liveness.owner != nil ? "running" : "interrupted"
        } else {
            ending = liveness == .interrupted ? "interrupted" : "none"
        }
        let lost = last?.lostRanks ?? []
        func oneLine(_ s: String) -> String { s.replacingOccurrences(of: "\n", with: " ") }
        return [
            "status=\(view.status)",
            "launches=\(run.launches)",
            "ending=\(ending)",
            "why=\(oneLine(last?.why ?? ""))",
            "mpi=\(last?.mpi ?? run.mpi)",
            "threads=\(last?.threads ?? run.threads)",
            "lost_ranks=\(lost.map(String.init).joined(separator: " "))",
            "lost_hosts=\(lost.map { last?.host(of: $0) ?? "?" }.joined(separator: " "))",
            "hosts=\((last?.hosts ?? []).joined(separator: " "))",
            "running_steps=\(view.count(.running))",
        ].joined(separator: "\n")
    }

    /// The launches, one line each, when there is more than one or one lost ranks or died.
    static func launchLines(_ run: StoredRun) -> [String] {
        guard LaunchRecord.worthShowing(run.launchRecords) else { return [] }
        return ["launches:"] + run.launchRecords.map { l in
            let on = l.hosts.isEmpty ? "" : " on " + l.hostSummary
            return "  \(l.number)  \(l.started.map { HTMLText.moment($0) } ?? "—")  \(l.mpi) ranks × \(l.threads) threads\(on)  \(l.endingText)"
        }
    }

    private static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}
