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

    package init() {}

    package func run() throws {
        let dir = URL(fileURLWithPath: directory ?? runDir ?? "./run")
        let (stored, liveness): (StoredRun, Liveness)
        do {
            (stored, liveness) = try Self.read(dir)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if ending {
            print(TerminalText.visible(Self.endingLines(stored, liveness: liveness)))
        } else if json {
            let owner = liveness.owner.map { owner in
                (host: owner.host, pid: owner.pid.map { Int($0) }, started: owner.started?.timeIntervalSince1970)
            }
            var header = RunDocument.Header(protocolName: stored.protocolName, status: liveness.status(stored), threads: stored.threads,
                                            mpi: stored.mpi, started: stored.started, ended: stored.ended, owner: .some(owner))
            header.launches = stored.launchRecords
            print(RunDocument.text(header, steps: stored.steps))
        } else {
            print(TerminalText.visible(Self.table(stored, liveness: liveness, runDirectory: dir)))
        }
    }

    /// What the run directory's lock says about a run its database calls `running`.
    enum Liveness: Equatable {
        /// Not `running`, or nothing to tell (no lock file: a StepFlow that takes no lock ran it).
        case asRecorded
        /// A live launch holds the lock.
        case owned(LockHolder)
        /// Nobody holds the lock: the launch ended without recording how (killed, node lost).
        case interrupted

        func status(_ run: StoredRun) -> String { self == .interrupted ? "interrupted" : run.status }

        var owner: LockHolder? {
            if case .owned(let holder) = self { return holder }
            return nil
        }
    }

    /// Reads the run and, when it says `running`, asks the lock whether a launch still owns it.
    static func read(_ dir: URL) throws(RunStoreError) -> (StoredRun, Liveness) {
        var stored = try RunStore.read(runDirectory: dir)
        for attempt in 0..<2 where stored.status == "running" {
            switch RunDirectoryLock.probe(runDirectory: dir) {
            case .held(let holder):
                return (stored, .owned(holder))
            case .noLockFile, .unknown:
                return (stored, .asRecorded)
            case .free:
                if attempt == 1 { return (stored, .interrupted) }
                // A run records its end before it lets the lock go, and a new one takes the lock before
                // it records its start: read again, then look again, so neither is taken for a crash.
                stored = try RunStore.read(runDirectory: dir)
            }
        }
        return (stored, .asRecorded)
    }

    static func table(_ run: StoredRun, liveness: Liveness = .asRecorded, runDirectory: URL? = nil) -> String {
        var counts = StepStatus.allCases.compactMap { s -> String? in
            let n = run.count(s)
            return n > 0 ? "\(n) \(s.rawValue)" : nil
        }
        if counts.isEmpty { counts = ["no steps"] }
        let owner = liveness.owner.map { " (\($0))" } ?? ""
        var lines = ["\(run.protocolName): \(liveness.status(run))\(owner), mpi=\(run.mpi) threads=\(run.threads), \(run.steps.count) steps: \(counts.joined(separator: ", "))"]
        if liveness == .interrupted {
            let lock = runDirectory.map { RunDirectoryLock.path(in: $0) } ?? RunDirectoryLock.fileName
            lines.append("note: the database says running, but no launch holds \(lock): the run ended without recording how (killed, or its node was lost). Finish it with --continue.")
        }
        lines += launchLines(run)
        lines.append(pad("ID", 7) + pad("FUNCTION", 24) + pad("STATUS", 10) + pad("RANK/SLOT", 11) + pad("SECONDS", 10) + "ERROR")
        for r in run.steps {
            let place = r.rank.map { "\($0)/\(r.slot.map(String.init) ?? "-")" } ?? "-"
            let seconds = r.start.flatMap { s in r.end.map { String(format: "%.3f", $0 - s) } } ?? "-"
            lines.append(pad(String(r.id), 7) + pad(r.displayName, 24) + pad(r.status.rawValue, 10) + pad(place, 11)
                         + pad(seconds, 10) + (r.error ?? ""))
        }
        return lines.joined(separator: "\n")
    }

    /// How the last launch ended, for scripts: `key=value` lines (values on one line, lists
    /// space-separated). `ending` is `interrupted` for a launch that died without saying, `none`
    /// for a database of an older build.
    static func endingLines(_ run: StoredRun, liveness: Liveness) -> String {
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
            "status=\(liveness.status(run))",
            "launches=\(run.launches)",
            "ending=\(ending)",
            "why=\(oneLine(last?.why ?? ""))",
            "mpi=\(last?.mpi ?? run.mpi)",
            "threads=\(last?.threads ?? run.threads)",
            "lost_ranks=\(lost.map(String.init).joined(separator: " "))",
            "lost_hosts=\(lost.map { last?.host(of: $0) ?? "?" }.joined(separator: " "))",
            "hosts=\((last?.hosts ?? []).joined(separator: " "))",
            "running_steps=\(run.count(.running))",
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
