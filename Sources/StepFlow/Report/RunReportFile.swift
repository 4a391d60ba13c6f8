import Foundation

/// `<run-dir>/report.json`: the run and every step's record (where and when it ran), written by rank 0
/// when the run ends. Its shape is the one `status --json` prints.
public enum RunReportFile {
    public static let name = "report.json"

    public static func json(_ report: RunReport, protocolName: String) -> [String: Any] {
        var counts: [String: Int] = [:]
        for s in StepStatus.allCases { counts[s.rawValue] = report.count(s) }
        let status: String
        switch report.outcome {
        case .finished: status = "finished"
        case .failed: status = "failed"
        case .stalled: status = "stalled"
        case .aborted: status = "aborted"
        }
        let run: [String: Any] = [
            "protocol": protocolName, "status": status, "threads": report.config.threadsPerRank,
            "mpi": report.config.ranks, "wallSeconds": report.wallSeconds, "counts": counts,
        ]
        let steps: [[String: Any]] = report.records.map { r in
            var o: [String: Any] = [
                "id": r.id, "function": r.spec.function, "args": r.spec.args.map(\.jsonObject),
                "prerequisites": r.prerequisites, "status": r.status.rawValue, "attempts": r.attempts,
            ]
            o["rank"] = r.rank ?? NSNull()
            o["slot"] = r.slot ?? NSNull()
            o["start"] = r.start ?? NSNull()
            o["end"] = r.end ?? NSNull()
            o["insertedBy"] = r.insertedBy.stepID ?? NSNull()
            o["error"] = r.error ?? NSNull()
            o["log"] = r.logPath ?? NSNull()
            return o
        }
        return ["run": run, "steps": steps]
    }

    /// Writes the report atomically into the run directory.
    public static func write(_ report: RunReport, protocolName: String, to runDirectory: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: json(report, protocolName: protocolName), options: [.sortedKeys])
        try data.write(to: runDirectory.appendingPathComponent(name), options: .atomic)
    }
}
