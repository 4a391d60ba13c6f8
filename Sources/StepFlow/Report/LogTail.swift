import Foundation

/// The last lines of a step's log, as the HTML report shows them, or why there are none.
package struct LogTail: Sendable, Equatable {
    /// The file the lines come from (nil: the run recorded no log for the step).
    package var path: String?
    /// The last lines, oldest first.
    package var lines: [String]
    /// Whether the log has lines before `lines`.
    package var earlierLinesOmitted: Bool
    /// Why there are no lines, said for a person ("no such file", "the log is empty"); nil when read.
    package var problem: String?

    package init(path: String?, lines: [String], earlierLinesOmitted: Bool = false, problem: String? = nil) {
        self.path = path
        self.lines = lines
        self.earlierLinesOmitted = earlierLinesOmitted
        self.problem = problem
    }

    /// Reads the last `lines` lines of the log at `path`, looking only at its last `maxBytes` bytes (a
    /// command's log can be 100 MB). Lines longer than `maxLineLength` characters are cut. Never
    /// throws: a missing or unreadable log comes back with `problem` saying why.
    package static func read(path: String?, lines: Int = 30, maxBytes: Int = 64 * 1024, maxLineLength: Int = 400) -> LogTail {
        guard let path else { return LogTail(path: nil, lines: [], problem: "the run recorded no log for this step") }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "it cannot be read (permission denied?)" : "no such file"
            return LogTail(path: path, lines: [], problem: "log missing: \(reason)")
        }
        defer { try? handle.close() }
        let data: Data
        let fromStart: Bool
        do {
            let size = try handle.seekToEnd()
            let offset = size > UInt64(maxBytes) ? size - UInt64(maxBytes) : 0
            try handle.seek(toOffset: offset)
            data = try handle.readToEnd() ?? Data()
            fromStart = offset == 0
        } catch {
            return LogTail(path: path, lines: [], problem: "log unreadable: \(ErrorText.sentence(error))")
        }
        var all = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if all.last == "" { all.removeLast() }
        // Reading from the middle of the file, the first line is a fragment of a longer one.
        if !fromStart && !all.isEmpty { all.removeFirst() }
        if all.isEmpty && fromStart { return LogTail(path: path, lines: [], problem: "the log is empty") }
        let kept = all.suffix(lines).map { line in
            line.count > maxLineLength ? String(line.prefix(maxLineLength)) + " … (line cut)" : line
        }
        return LogTail(path: path, lines: kept, earlierLinesOmitted: !fromStart || all.count > kept.count)
    }

    /// The log tails of the run's failed steps, by step id (at most `limit` steps, first failed first).
    /// A log recorded under another directory (the run directory was moved or set aside by
    /// `--restart`) is looked for under `runDirectory/logs/` too.
    package static func failedSteps(of run: StoredRun, runDirectory: URL, lines: Int = 30, limit: Int = 50) -> [StepID: LogTail] {
        var out: [StepID: LogTail] = [:]
        for r in run.steps where r.status == .failed {
            if out.count >= limit { break }
            let recorded = r.logPath ?? StepLogFile.path(runDirectory: runDirectory, step: r.id)
            var path = recorded
            if !FileManager.default.fileExists(atPath: recorded), let range = recorded.range(of: "/logs/", options: .backwards) {
                let moved = runDirectory.path + recorded[range.lowerBound...]
                if FileManager.default.fileExists(atPath: moved) { path = moved }
            }
            out[r.id] = read(path: path, lines: lines)
        }
        return out
    }
}
