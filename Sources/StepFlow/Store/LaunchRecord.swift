import Foundation
import GRDB

/// One launch of a run (the first, and one per `--continue`), as the run database keeps it: its
/// shape, the host of each rank, and how it ended. A launch that died without recording its end (its
/// rank 0 was killed) has no `ending`. `run_mpi.sh --relaunch` reads the last one to decide whether
/// another launch can finish the run.
package struct LaunchRecord: Sendable, Equatable {
    package var number: Int
    package var started: Double?
    package var ended: Double?
    package var mpi: Int
    package var threads: Int
    /// The host of each rank, in rank order (empty until the ranks have told rank 0).
    package var hosts: [String]
    /// How it ended, one word (see `LaunchEnding`); nil when it died without saying.
    package var ending: String?
    /// Why, as a sentence for a person.
    package var why: String?
    /// Ranks it lost: silent past `--rank-timeout`, or gone when the launcher ended the job.
    package var lostRanks: [Int]

    package init(number: Int, started: Double?, ended: Double?, mpi: Int, threads: Int, hosts: [String] = [],
                 ending: String? = nil, why: String? = nil, lostRanks: [Int] = []) {
        self.number = number
        self.started = started
        self.ended = ended
        self.mpi = mpi
        self.threads = threads
        self.hosts = hosts
        self.ending = ending
        self.why = why
        self.lostRanks = lostRanks
    }

    /// The host of `rank`, when known.
    package func host(of rank: Int) -> String? { rank >= 0 && rank < hosts.count ? hosts[rank] : nil }

    /// Each host once, with how many ranks it ran, in rank order: "sf1 (2), sf2 (2)".
    package var hostSummary: String {
        var counts: [(host: String, ranks: Int)] = []
        for h in hosts {
            if let i = counts.firstIndex(where: { $0.host == h }) { counts[i].ranks += 1 } else { counts.append((h, 1)) }
        }
        return counts.map { "\($0.host) (\($0.ranks))" }.joined(separator: ", ")
    }

    /// How it ended, for a person: "rank-silent: rank 2 on host … has sent nothing …".
    package var endingText: String { ending.map { "\($0): \(why ?? "")" } ?? "no end recorded (the launch died, or is live)" }

    /// Whether a run's launches are worth showing: more than one, or one that lost ranks or died.
    package static func worthShowing(_ launches: [LaunchRecord]) -> Bool {
        launches.count > 1 || launches.contains { !$0.lostRanks.isEmpty || $0.ending == nil }
    }

    static let schema = """
        CREATE TABLE IF NOT EXISTS launch (
          n INTEGER PRIMARY KEY, started REAL, ended REAL, mpi INTEGER NOT NULL, threads INTEGER NOT NULL,
          hosts TEXT NOT NULL DEFAULT '[]', ending TEXT, why TEXT, lost_ranks TEXT NOT NULL DEFAULT '[]');
        """

    /// Every launch the database records, in order (none for a database of an older build).
    static func readAll(_ db: Database) throws -> [LaunchRecord] {
        guard try db.tableExists("launch") else { return [] }
        return try Row.fetchAll(db, sql: "SELECT * FROM launch ORDER BY n").compactMap { row in
            let n: Int = row["n"], mpi: Int = row["mpi"], threads: Int = row["threads"]
            guard n >= 1, mpi >= 1, threads >= 1 else { return nil }
            return LaunchRecord(number: n, started: StoredRun.plausibleTime(row["started"]), ended: StoredRun.plausibleTime(row["ended"]),
                                mpi: mpi, threads: threads, hosts: JSONText.parseStrings(row["hosts"] ?? "[]") ?? [],
                                ending: row["ending"], why: row["why"],
                                lostRanks: JSONText.parseIDList(row["lost_ranks"] ?? "[]") ?? [])
        }
    }
}

/// How a launch ended, as `LaunchRecord.ending` says it.
package enum LaunchEnding {
    /// The word and the sentence for `report`'s ending.
    package static func of(_ report: RunReport) -> (kind: String, why: String) {
        switch report.rankFailure {
        case .silent?: return ("rank-silent", report.hookError ?? "a rank went silent")
        case .nonsense?: return ("rank-broken", report.hookError ?? "a rank sent what rank 0 cannot use")
        case nil: break
        }
        if let failure = report.databaseError { return ("database", failure) }
        switch report.outcome {
        case .aborted(let signal):
            let lost = report.lostRanks.isEmpty ? "" : "; rank\(report.lostRanks.count == 1 ? "" : "s") \(report.lostRanks.map(String.init).joined(separator: ", ")) did not answer (gone with the launch)"
            return ("signal", "stopped by signal \(signal) (SIG\(signalName(signal)))\(lost)")
        case .stoppedForTimeLimit:
            return ("stopped", report.hookError ?? "stopped before the allocation's end (--stop-before)")
        case .stalled:
            return ("stalled", "stalled: waiting steps that nothing can release")
        case .failed:
            let failed = report.count(.failed)
            if failed == 0, let hook = report.hookError { return ("hook", hook) }
            return ("failed", "\(failed) step\(failed == 1 ? "" : "s") failed")
        case .finished:
            if let hook = report.hookError { return ("hook", hook) }
            return ("finished", "every step finished")
        }
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "TERM"
        case SIGINT: return "INT"
        case SIGHUP: return "HUP"
        case SIGKILL: return "KILL"
        default: return String(signal)
        }
    }
}
