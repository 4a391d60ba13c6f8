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
        // Non-blocking, and a regular file only: a pipe or a device in a log's place must not hang
        // or flood the reader.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = errno == ENOENT ? "no such file" : String(cString: strerror(errno))
            return LogTail(path: path, lines: [], problem: "log missing: \(reason)")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        defer { try? handle.close() }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            return LogTail(path: path, lines: [], problem: "log unreadable: it is not a regular file")
        }
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

    /// The log tails of the run's failed steps, by step id (at most `limit` steps, first failed first),
    /// each as `of` reads it.
    package static func failedSteps(of run: StoredRun, runDirectory: URL, lines: Int = 30, limit: Int = 50) -> [StepID: LogTail] {
        var out: [StepID: LogTail] = [:]
        for r in run.steps where r.status == .failed {
            if out.count >= limit { break }
            out[r.id] = of(r, runDirectory: runDirectory, lines: lines)
        }
        return out
    }

    /// The last `lines` lines of step `r`'s log (looking at its last `maxBytes` bytes). A log recorded
    /// under another directory (the run directory was moved or set aside by `--restart`) is looked
    /// for under `runDirectory/logs/` too.
    ///
    /// Only files under `runDirectory/logs/` are read (links resolved): a path from a damaged or
    /// foreign database never makes a view show another file's text.
    package static func of(_ r: StepRecord, runDirectory: URL, lines: Int = 30, maxBytes: Int = 64 * 1024) -> LogTail {
        let logs = runDirectory.appendingPathComponent("logs").path
        let root = (resolved(logs) ?? logs) + "/"
        let recorded = r.logPath ?? StepLogFile.path(runDirectory: runDirectory, step: r.id)
        var candidates = [recorded]
        if let range = recorded.range(of: "/logs/", options: .backwards) { candidates.append(runDirectory.path + recorded[range.lowerBound...]) }
        let existing = candidates.filter { FileManager.default.fileExists(atPath: $0) }
        if let inside = existing.first(where: { resolved($0)?.hasPrefix(root) == true }) {
            return read(path: inside, lines: lines, maxBytes: maxBytes)
        } else if existing.isEmpty {
            return LogTail(path: recorded, lines: [], problem: "log missing: no such file")
        } else {
            return LogTail(path: recorded, lines: [], problem: "the recorded log is not in this run's logs folder (\(logs)), so it was not read")
        }
    }

    /// `path` with every link and `..` resolved, or nil when it does not exist.
    private static func resolved(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
