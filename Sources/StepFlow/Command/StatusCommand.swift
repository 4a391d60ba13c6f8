import ArgumentParser
import Foundation

/// `status`: what a run's database says, as a table or as JSON; works while the run is live (it only
/// reads, and a reader never blocks the run's writer in WAL mode) and after it ended.
public struct StatusCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a run's steps: status, rank/slot, duration, error.",
        discussion: "Exit codes: 0 shown, 2 no readable run database there.")

    @Argument(help: "The run directory (or use --run-dir).")
    public var directory: String?

    @Option(name: .customLong("run-dir"), help: "The run directory (default ./run).")
    public var runDir: String?

    @Flag(help: "Print the run as one JSON document.")
    public var json = false

    public init() {}

    public func run() throws {
        let dir = URL(fileURLWithPath: directory ?? runDir ?? "./run")
        let stored: StoredRun
        do {
            stored = try RunStore.read(runDirectory: dir)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if json {
            let doc = RunDocument.json(protocolName: stored.protocolName, status: stored.status, threads: stored.threads,
                                       mpi: stored.mpi, started: stored.started, ended: stored.ended, steps: stored.steps)
            print(String(decoding: try RunDocument.data(doc), as: UTF8.self))
        } else {
            print(Self.table(stored))
        }
    }

    static func table(_ run: StoredRun) -> String {
        var counts = StepStatus.allCases.compactMap { s -> String? in
            let n = run.count(s)
            return n > 0 ? "\(n) \(s.rawValue)" : nil
        }
        if counts.isEmpty { counts = ["no steps"] }
        var lines = ["\(run.protocolName): \(run.status), mpi=\(run.mpi) threads=\(run.threads), \(run.steps.count) steps: \(counts.joined(separator: ", "))"]
        lines.append(pad("ID", 7) + pad("FUNCTION", 24) + pad("STATUS", 10) + pad("RANK/SLOT", 11) + pad("SECONDS", 10) + "ERROR")
        for r in run.steps {
            let place = r.rank.map { "\($0)/\(r.slot.map(String.init) ?? "-")" } ?? "-"
            let seconds = r.start.flatMap { s in r.end.map { String(format: "%.3f", $0 - s) } } ?? "-"
            lines.append(pad(String(r.id), 7) + pad(r.spec.function, 24) + pad(r.status.rawValue, 10) + pad(place, 11)
                         + pad(seconds, 10) + (r.error ?? ""))
        }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}
