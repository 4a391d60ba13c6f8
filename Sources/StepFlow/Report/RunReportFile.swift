import Foundation

/// The JSON document of a run — `status --json` prints it and `<run-dir>/report.json` holds it:
/// `{"run": {"protocol", "status", "threads", "mpi", "started", "ended", "counts"}, "steps": [{"id",
/// "function", "args", "prerequisites", "status", "rank", "slot", "gpus", "attempts", "start", "end",
/// "insertedBy", "error", "log"}]}`, times in seconds since the epoch, keys in sorted order.
///
/// Written as text, a chunk at a time: building Foundation objects for every step and serializing them
/// held about 6 KB a step at the run's end and cost more instructions than running the steps.
package enum RunDocument {
    /// The run's header fields.
    package struct Header {
        package var protocolName: String
        package var status: String
        package var threads: Int
        package var mpi: Int
        package var started: Double?
        package var ended: Double?
        /// Who holds the run directory's lock (`status --json`); nil leaves the key out.
        package var owner: (host: String?, pid: Int?, started: Double?)??
        /// The run's launches (`status --json`); nil leaves the key out.
        package var launches: [LaunchRecord]?

        package init(protocolName: String, status: String, threads: Int, mpi: Int, started: Double?, ended: Double?,
                     owner: (host: String?, pid: Int?, started: Double?)?? = nil) {
            self.protocolName = protocolName
            self.status = status
            self.threads = threads
            self.mpi = mpi
            self.started = started
            self.ended = ended
            self.owner = owner
        }
    }

    /// Text is handed to `sink` whenever this many bytes have gathered.
    static let chunkBytes = 1 << 16

    /// Writes the document for `steps` to `sink`, a chunk of UTF-8 text at a time.
    /// - Throws: whatever `sink` throws.
    /// - Parameter statusCounts: the steps by status in `StepStatus.allCases` order, when the caller has
    ///   them (a `RunView`'s); else counted from `steps`.
    package static func write<Steps: Sequence<StepRecord>>(_ header: Header, steps: Steps, statusCounts: [Int]? = nil,
                                                            to sink: ([UInt8]) throws -> Void) throws {
        var out = JSONBytes()
        out.reserve(chunkBytes + 4096)
        out.raw("{\"run\":{\"counts\":{")
        let statuses = StepStatus.allCases
        var counts = statusCounts ?? [Int](repeating: 0, count: statuses.count)
        if statusCounts == nil {
            for r in steps { counts[statuses.firstIndex(of: r.status)!] += 1 }
        }
        let sortedCounts = zip(statuses.map(\.rawValue), counts).sorted { $0.0 < $1.0 }
        for (i, (name, count)) in sortedCounts.enumerated() {
            if i > 0 { out.raw(",") }
            out.string(name)
            out.raw(":")
            out.int(count)
        }
        out.raw("},\"ended\":")
        out.double(header.ended)
        if let launches = header.launches {
            out.raw(",\"launches\":[")
            for (i, l) in launches.enumerated() {
                if i > 0 { out.raw(",") }
                out.raw("{\"ended\":")
                out.double(l.ended)
                out.raw(",\"ending\":")
                out.string(l.ending)
                out.raw(",\"hosts\":")
                out.values(l.hosts.map { .string($0) })
                out.raw(",\"lostRanks\":")
                out.values(l.lostRanks.map { .int($0) })
                out.raw(",\"mpi\":")
                out.int(l.mpi)
                out.raw(",\"number\":")
                out.int(l.number)
                out.raw(",\"started\":")
                out.double(l.started)
                out.raw(",\"threads\":")
                out.int(l.threads)
                out.raw(",\"why\":")
                out.string(l.why)
                out.raw("}")
            }
            out.raw("]")
        }
        out.raw(",\"mpi\":")
        out.int(header.mpi)
        if let owner = header.owner {
            out.raw(",\"owner\":")
            if let owner {
                out.raw("{\"host\":")
                out.string(owner.host)
                out.raw(",\"pid\":")
                out.int(owner.pid)
                out.raw(",\"started\":")
                out.double(owner.started)
                out.raw("}")
            } else {
                out.raw("null")
            }
        }
        out.raw(",\"protocol\":")
        out.string(header.protocolName)
        out.raw(",\"started\":")
        out.double(header.started)
        out.raw(",\"status\":")
        out.string(header.status)
        out.raw(",\"threads\":")
        out.int(header.threads)
        out.raw("},\"steps\":[")
        for (i, r) in steps.enumerated() {
            if i > 0 { out.raw(",") }
            appendStep(r, to: &out)
            if out.count >= chunkBytes {
                try sink(out.bytes)
                out.removeAll()
            }
        }
        out.raw("]}")
        try sink(out.bytes)
    }

    /// The whole document as one string (`status --json`).
    package static func text(_ header: Header, steps: [StepRecord]) -> String {
        var bytes: [UInt8] = []
        // The sink never throws.
        try? write(header, steps: steps) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The document of a run as `RunView` shows it (`status --json`): its status as shown, the launch
    /// that owns it, its launches, and its counts.
    package static func text(_ view: RunView) -> String {
        let run = view.header
        let owner = view.liveness.owner.map { owner in
            (host: owner.host, pid: owner.pid.map { Int($0) }, started: owner.started?.timeIntervalSince1970)
        }
        var header = Header(protocolName: run.protocolName, status: view.status, threads: run.threads, mpi: run.mpi,
                            started: run.started, ended: run.ended, owner: .some(owner))
        header.launches = run.launchRecords
        var bytes: [UInt8] = []
        try? write(header, steps: view.records.lazy.compactMap { $0 }, statusCounts: view.statusCounts) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func appendStep(_ r: StepRecord, to out: inout JSONBytes) {
        out.raw("{\"args\":")
        out.values(r.spec.args)
        out.raw(",\"attempts\":")
        out.int(r.attempts)
        out.raw(",\"end\":")
        out.double(r.end)
        out.raw(",\"error\":")
        out.string(r.error)
        out.raw(",\"function\":")
        out.string(r.spec.function)
        out.raw(",\"gpus\":[")
        for (i, g) in r.gpus.enumerated() {
            if i > 0 { out.raw(",") }
            out.int(g)
        }
        out.raw("],\"id\":")
        out.int(r.id)
        out.raw(",\"insertedBy\":")
        out.int(r.insertedBy.stepID)
        out.raw(",\"log\":")
        out.string(r.logPath)
        out.raw(",\"prerequisites\":[")
        for (i, p) in r.prerequisites.enumerated() {
            if i > 0 { out.raw(",") }
            out.int(p)
        }
        out.raw("],\"rank\":")
        out.int(r.rank)
        // Its result (S13): {"value": …} or {"base64": "…"}; null when it set none.
        let stored = StepOutcomeBlob.split(r.result ?? [])
        if let files = stored.files {
            // Its declared files as it saw them (S9 with files): inputs when it started, outputs when it ended.
            out.raw(",\"files\":{\"content\":")
            out.raw(files.content ? "true" : "false")
            for (key, list) in [(",\"inputs\":[" as StaticString, files.inputs), (",\"outputs\":[", files.outputs)] {
                out.raw(key)
                for (i, f) in list.enumerated() {
                    if i > 0 { out.raw(",") }
                    out.raw("{\"path\":")
                    out.string(f.path)
                    out.raw(",\"size\":")
                    out.int(Int(f.size))
                    out.raw(",\"modified\":")
                    out.double(Double(f.modified) / 1e9)
                    if let h = f.hash {
                        out.raw(",\"xxh64\":")
                        out.string(String(h, radix: 16))
                    }
                    out.raw("}")
                }
                out.raw("]")
            }
            out.raw("}")
        }
        out.raw(",\"result\":")
        if stored.result.first == 0 {
            // Bytes (kind 0) are written from where they lie, not copied out into a `StepResult`.
            out.raw("{\"base64\":")
            out.base64(stored.result.dropFirst())
            out.raw("}")
        } else if !stored.result.isEmpty, case .value(let v)? = StepResult(encoded: stored.result) {
            out.raw("{\"value\":")
            out.value(v)
            out.raw("}")
        } else {
            out.raw("null")
        }
        out.raw(",\"slot\":")
        out.int(r.slot)
        out.raw(",\"start\":")
        out.double(r.start)
        out.raw(",\"status\":")
        out.string(r.status.rawValue)
        out.raw("}")
    }
}

/// `<run-dir>/report.json`, written by rank 0 when the run ends.
package enum RunReportFile {
    package static let name = "report.json"

    package static func header(_ report: RunReport, protocolName: String) -> RunDocument.Header {
        RunDocument.Header(protocolName: protocolName, status: report.outcome.statusName, threads: report.config.threadsPerRank,
                           mpi: report.config.ranks, started: report.started, ended: report.started + report.wallSeconds)
    }

    /// Writes the report into the run directory: into a temporary file first, renamed over
    /// `report.json` once complete, so a reader never sees half a report.
    /// - Throws: the file system's error when the file cannot be created, written or renamed.
    package static func write(_ report: RunReport, protocolName: String, to runDirectory: URL) throws {
        let final = runDirectory.appendingPathComponent(name)
        let partial = runDirectory.appendingPathComponent(".\(name).\(getpid()).partial")
        // One launch owns a run directory (its lock): another partial report is a killed launch's.
        removeStalePartials(in: runDirectory, keeping: partial.lastPathComponent)
        // Never through a link planted there: the report is written here or not at all.
        let fd = open(partial.path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let code = errno
            // The reason the system gave (no such folder, read-only, a link in the way), not a guess.
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: partial.path,
                                                          NSUnderlyingErrorKey: POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)])
        }
        do {
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            defer { try? handle.close() }
            try RunDocument.write(header(report, protocolName: protocolName), steps: report.records) {
                try handle.write(contentsOf: $0)
            }
            try handle.synchronize()
            guard rename(partial.path, final.path) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: final.path,
                                                              NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
        } catch {
            unlink(partial.path)
            throw error
        }
    }

    /// Whether `name` is a report being written (`.report.json.<pid>.partial`).
    package static func isPartial(_ name: String) -> Bool {
        let prefix = ".\(self.name).", suffix = ".partial"
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count > prefix.count + suffix.count else { return false }
        return name.dropFirst(prefix.count).dropLast(suffix.count).allSatisfy { $0.isASCII && $0.isNumber }
    }

    private static func removeStalePartials(in runDirectory: URL, keeping mine: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: runDirectory.path) else { return }
        for name in names where isPartial(name) && name != mine {
            unlink(runDirectory.appendingPathComponent(name).path)
        }
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
