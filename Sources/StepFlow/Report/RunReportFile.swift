import Foundation

/// The JSON document of a run — `status --json` prints it and `<run-dir>/report.json` holds it:
/// `{"run": {"protocol", "status", "threads", "mpi", "started", "ended", "counts"}, "steps": [{"id",
/// "function", "args", "prerequisites", "status", "rank", "slot", "attempts", "start", "end",
/// "insertedBy", "error", "log"}]}`, times in seconds since the epoch.
package enum RunDocument {
    package static func json(protocolName: String, status: String, threads: Int, mpi: Int, started: Double?,
                            ended: Double?, steps: [StepRecord]) -> [String: Any] {
        var counts: [String: Int] = [:]
        for s in StepStatus.allCases { counts[s.rawValue] = 0 }
        for r in steps { counts[r.status.rawValue, default: 0] += 1 }
        let run: [String: Any] = [
            "protocol": protocolName, "status": status, "threads": threads, "mpi": mpi,
            "started": started ?? NSNull(), "ended": ended ?? NSNull(), "counts": counts,
        ]
        return ["run": run, "steps": steps.map(step)]
    }

    static func step(_ r: StepRecord) -> [String: Any] {
        [
            "id": r.id, "function": r.spec.function, "args": r.spec.args.map(\.jsonObject),
            "prerequisites": r.prerequisites, "status": r.status.rawValue, "attempts": r.attempts,
            "rank": r.rank ?? NSNull(), "slot": r.slot ?? NSNull(), "start": r.start ?? NSNull(), "end": r.end ?? NSNull(),
            "insertedBy": r.insertedBy.stepID ?? NSNull(), "error": r.error ?? NSNull(), "log": r.logPath ?? NSNull(),
        ]
    }

    package static func data(_ document: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])
    }
}

/// `<run-dir>/report.json`, written by rank 0 when the run ends.
package enum RunReportFile {
    package static let name = "report.json"

    package static func json(_ report: RunReport, protocolName: String) -> [String: Any] {
        RunDocument.json(protocolName: protocolName, status: report.outcome.statusName, threads: report.config.threadsPerRank,
                         mpi: report.config.ranks, started: report.started, ended: report.started + report.wallSeconds,
                         steps: report.records)
    }

    /// Writes the report atomically into the run directory.
    package static func write(_ report: RunReport, protocolName: String, to runDirectory: URL) throws {
        try RunDocument.data(json(report, protocolName: protocolName))
            .write(to: runDirectory.appendingPathComponent(name), options: .atomic)
    }
}

extension RunOutcome {
    /// The run status recorded for this outcome.
    package var statusName: String {
        switch self {
        case .finished: return "finished"
        case .failed: return "failed"
        case .stalled: return "stalled"
        case .aborted: return "aborted"
        case .stoppedForTimeLimit: return "stopped"
        }
    }
}
