import Foundation

/// What `stepflow serve` hands its live page, from a `RunView`: the run's summary (the numbers `top`
/// and `status --json` show), and the steps that changed since the generation the page last saw, so
/// a page polling a run of a million steps gets a few rows a second, not the run.
package enum LiveState {
    /// The most steps one answer holds. A run of empty steps changes a million steps a second: sent
    /// whole, each poll was a hundred MB of JSON, and the server and the browser took a quarter of
    /// the run's CPU on a shared machine. Counts, rate and timeline still cover every step.
    package static let stepLimit = 5_000

    /// `{"generation", "full", "partial", "run": {…}, "steps": [{…}], "removed": [ids]}`. `full` says
    /// the page must drop what it holds first (it saw nothing yet, or the run was read whole again
    /// since); `partial` that more steps changed than `limit` (the first `limit` by id are sent).
    package static func json(_ view: RunView, since: Int, limit: Int = stepLimit) -> String {
        let full = since < view.wholeReadIn
        var out = JSONBytes()
        out.raw("{\"full\":")
        out.raw(full ? "true" : "false")
        out.raw(",\"generation\":")
        out.int(view.generation)
        let changed = view.changes(since: full ? Int.min : since, limit: limit)
        out.raw(",\"partial\":")
        out.raw(changed.more ? "true" : "false")
        out.raw(",\"removed\":[")
        if !full {
            for (i, id) in view.removed(since: since).enumerated() {
                if i > 0 { out.raw(",") }
                out.int(id)
            }
        }
        out.raw("],\"run\":")
        summary(view, &out)
        out.raw(",\"steps\":[")
        for (i, r) in changed.steps.enumerated() {
            if i > 0 { out.raw(",") }
            step(r, &out)
        }
        out.raw("]}")
        return out.text
    }

    /// The run's summary alone (the list page's rows).
    package static func summaryJSON(_ view: RunView) -> String {
        var out = JSONBytes()
        summary(view, &out)
        return out.text
    }

    private static func summary(_ view: RunView, _ out: inout JSONBytes) {
        let run = view.header
        out.raw("{\"counts\":{")
        for (i, status) in StepStatus.allCases.enumerated() {
            if i > 0 { out.raw(",") }
            out.string(status.rawValue)
            out.raw(":")
            out.int(view.statusCounts[i])
        }
        out.raw("},\"directory\":")
        out.string(view.runDirectory.path)
        out.raw(",\"ended\":")
        out.double(run.ended)
        out.raw(",\"launches\":[")
        for (i, l) in run.launchRecords.enumerated() {
            if i > 0 { out.raw(",") }
            out.raw("{\"ended\":")
            out.double(l.ended)
            out.raw(",\"ending\":")
            out.string(l.ending)
            out.raw(",\"hosts\":")
            out.string(l.hosts.isEmpty ? nil : l.hostSummary)
            out.raw(",\"lostRanks\":")
            out.values(l.lostRanks.map { .int($0) })
            out.raw(",\"mpi\":")
            out.int(l.mpi)
            out.raw(",\"number\":")
            out.int(l.number)
            out.raw(",\"started\":")
            out.double(l.started)
            out.raw(",\"text\":")
            out.string(l.endingText)
            out.raw(",\"threads\":")
            out.int(l.threads)
            out.raw("}")
        }
        out.raw("],\"live\":")
        out.raw(view.isLive ? "true" : "false")
        out.raw(",\"mpi\":")
        out.int(run.mpi)
        out.raw(",\"owner\":")
        out.string(view.liveness.owner?.description)
        out.raw(",\"protocol\":")
        out.string(run.protocolName)
        out.raw(",\"secondsLeft\":")
        out.double(view.secondsLeft)
        out.raw(",\"started\":")
        out.double(run.started)
        out.raw(",\"status\":")
        out.string(view.status)
        out.raw(",\"stepsPerSecond\":")
        out.double(view.stepsPerSecond)
        out.raw(",\"takenAt\":")
        out.double(view.takenAt)
        out.raw(",\"threads\":")
        out.int(run.threads)
        out.raw(",\"total\":")
        out.int(view.total)
        out.raw("}")
    }

    private static func step(_ r: StepRecord, _ out: inout JSONBytes) {
        out.raw("{\"attempts\":")
        out.int(r.attempts)
        out.raw(",\"end\":")
        out.double(r.end)
        out.raw(",\"error\":")
        out.string(r.error)
        out.raw(",\"function\":")
        out.string(r.spec.function)
        out.raw(",\"id\":")
        out.int(r.id)
        out.raw(",\"name\":")
        out.string(r.displayName)
        out.raw(",\"rank\":")
        out.int(r.rank)
        out.raw(",\"slot\":")
        out.int(r.slot)
        out.raw(",\"start\":")
        out.double(r.start)
        out.raw(",\"status\":")
        out.string(r.status.rawValue)
        out.raw("}")
    }
}

/// The runs' figures in Prometheus's text exposition format (version 0.0.4), from `RunView`s: the
/// numbers `top` and `status --json` show, for a centre's Prometheus and Grafana.
package enum MetricsText {
    /// The run statuses a run row can hold, and `interrupted`: each gets a 0/1 sample, so a panel can
    /// graph any of them.
    static let runStates = ["running", "finished", "failed", "stalled", "aborted", "stopped", "interrupted"]

    /// The exposition for `runs`, each labelled `run="<name>"`.
    package static func text(_ runs: [(name: String, view: RunView)]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples {
                let labels = s.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
                out += name + (labels.isEmpty ? "" : "{\(labels)}") + " " + number(s.value) + "\n"
            }
        }
        family("stepflow_steps", "gauge", "Steps of the run, by status.",
               runs.flatMap { run in StepStatus.allCases.map { ([("run", run.name), ("status", $0.rawValue)], Double(run.view.count($0))) } })
        family("stepflow_run_steps", "gauge", "Steps in the run.", runs.map { ([("run", $0.name)], Double($0.view.total)) })
        family("stepflow_steps_per_second", "gauge", "Steps that ended (finished or failed) per second over the last 30 seconds; over the whole run once it ended.",
               runs.compactMap { run in run.view.stepsPerSecond.map { ([("run", run.name)], $0) } })
        family("stepflow_seconds_left", "gauge", "Seconds until every step has ended at the current rate.",
               runs.compactMap { run in run.view.secondsLeft.map { ([("run", run.name)], $0) } })
        family("stepflow_running_steps", "gauge", "Steps running now, by rank.", runs.flatMap { run in
            var byRank = [Int](repeating: 0, count: max(run.view.header.mpi, 1))
            for r in run.view.running {
                if let rank = r.rank, rank >= 0 {
                    if rank >= byRank.count { byRank += [Int](repeating: 0, count: rank + 1 - byRank.count) }
                    byRank[rank] += 1
                }
            }
            return byRank.enumerated().map { ([("run", run.name), ("rank", String($0.offset))], Double($0.element)) }
        })
        family("stepflow_failed_steps", "gauge", "Steps recorded failed (after their retries).",
               runs.map { ([("run", $0.name)], Double($0.view.count(.failed))) })
        family("stepflow_run_state", "gauge", "1 for the run's state (interrupted: recorded running, but no launch holds the run directory), 0 for the others.",
               runs.flatMap { run in
                   let status = run.view.status
                   let states = runStates.contains(status) ? runStates : runStates + [status]
                   return states.map { ([("run", run.name), ("state", $0)], $0 == status ? 1.0 : 0.0) }
               })
        family("stepflow_run_launches", "gauge", "Launches of the run (1, plus one per --continue or relaunch).",
               runs.map { ([("run", $0.name)], Double($0.view.header.launches)) })
        let stats = runs.compactMap { run in run.view.header.commits.map { (run.name, $0) } }
        out += "# HELP stepflow_db_commit_seconds Time the run database's commits of step changes took, this launch (each commit's time is recorded with the next).\n"
        out += "# TYPE stepflow_db_commit_seconds summary\n"
        for (name, c) in stats {
            out += "stepflow_db_commit_seconds_sum{run=\"\(escape(name))\"} \(number(c.totalSeconds))\n"
            out += "stepflow_db_commit_seconds_count{run=\"\(escape(name))\"} \(c.count)\n"
        }
        family("stepflow_db_commit_max_seconds", "gauge", "The longest commit of the run database, this launch.",
               stats.map { ([("run", $0.0)], $0.1.maxSeconds) })
        family("stepflow_db_last_commit_seconds", "gauge", "The latest recorded commit of the run database.",
               stats.map { ([("run", $0.0)], $0.1.lastSeconds) })
        return out
    }

    /// A label value as the format wants it: backslash, double quote and newline escaped.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
        return String(v)
    }
}
