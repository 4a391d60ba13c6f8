import Foundation

/// What the run directory's lock says about a run its database calls `running`.
package enum RunLiveness: Equatable, Sendable {
    /// Not `running`, or nothing to tell (no lock file: a StepFlow that takes no lock ran it).
    case asRecorded
    /// A live launch holds the lock.
    case owned(LockHolder)
    /// Nobody holds the lock: the launch ended without recording how (killed, node lost).
    case interrupted

    /// The status to show for a run the database says is `recorded`.
    package func status(_ recorded: String) -> String { self == .interrupted ? "interrupted" : recorded }

    package var owner: LockHolder? {
        if case .owned(let holder) = self { return holder }
        return nil
    }
}

/// A run as every view shows it — `status`, `report`, `top`, `serve` and `/metrics` — so their numbers
/// agree: the database's run and steps, whether a launch still owns it, the counts by status, and how
/// fast steps end. Taken by a `RunWatcher`; a value, safe to hand to another thread.
package struct RunView: Sendable {
    package let runDirectory: URL
    /// The run's row and launches as recorded; its `steps` are empty (they are `records`).
    package let header: StoredRun
    package let liveness: RunLiveness
    /// The steps by id − 1; nil where no step has that id (dropped, S12).
    package let records: ChunkedArray<StepRecord?>
    /// How many steps have each status, in `StepStatus.allCases` order.
    package let statusCounts: [Int]
    /// The watcher's count of reads that found changes, when this view was taken (see `changes(since:)`).
    package let generation: Int
    /// The generation in which each step last changed, by id − 1, and the latest of each chunk.
    let changedIn: ChunkedArray<Int>
    let chunkChangedIn: [Int]
    /// The ids of the running and the failed steps: kept by the watcher, so a view of millions of
    /// steps finds them without a pass over all of them.
    let runningIDs: Set<StepID>
    let failedIDs: Set<StepID>
    /// The generation of the watcher's latest read of the whole run: a viewer that last saw an
    /// earlier one must drop what it holds (a continued run may have fewer steps).
    package let wholeReadIn: Int
    /// Steps that ended (finished or failed) per second over the last half minute the watcher saw, or
    /// over the whole run once it ended; nil until it can tell.
    package let stepsPerSecond: Double?
    /// When the view was taken, seconds since 1970.
    package let takenAt: Double

    /// The run's status, with a dead launch's `running` shown as `interrupted`.
    package var status: String { liveness.status(header.status) }
    /// Whether a launch is running the run now.
    package var isLive: Bool { liveness.owner != nil || (header.status == "running" && liveness == .asRecorded) }
    package var total: Int { statusCounts.reduce(0, +) }
    package func count(_ status: StepStatus) -> Int { statusCounts[status.ordinal] }
    /// Steps that ended one way or another: finished, failed or skipped.
    package var ended: Int { count(.finished) + count(.failed) + count(.skipped) }

    /// Seconds until every step has ended at the current rate; nil when it cannot tell or the run is over.
    package var secondsLeft: Double? {
        guard isLive, let rate = stepsPerSecond, rate > 0 else { return nil }
        return Double(total - ended) / rate
    }

    /// The steps, in id order.
    package var steps: [StepRecord] { records.compactMap { $0 } }

    /// The run as `StoredRun` (status as shown, steps in id order), for the views that take one.
    package var stored: StoredRun {
        var run = header
        run.status = status
        run.steps = steps
        return run
    }

    /// The step with id `id`, if the run has it.
    package func record(_ id: StepID) -> StepRecord? {
        id >= 1 && id <= records.count ? records[id - 1] : nil
    }

    /// Running steps, the longest-running first.
    package var running: [StepRecord] {
        runningIDs.compactMap { record($0) }.sorted { ($0.start ?? .infinity, $0.id) < ($1.start ?? .infinity, $1.id) }
    }

    /// Failed steps, the latest to end first.
    package func failures(limit: Int = .max) -> [StepRecord] {
        Array(failedIDs.compactMap { record($0) }.sorted { ($0.end ?? 0, $0.id) > ($1.end ?? 0, $1.id) }.prefix(limit))
    }

    /// The steps that changed after generation `since` (all of them for a `since` before the
    /// watcher's first read or a read that read the run whole).
    package func changes(since: Int) -> [StepRecord] {
        changes(since: since, limit: .max).steps
    }

    /// The first `limit` steps, in id order, that changed after generation `since`, and whether more did.
    package func changes(since: Int, limit: Int) -> (steps: [StepRecord], more: Bool) {
        var out: [StepRecord] = []
        for chunk in chunkChangedIn.indices where chunkChangedIn[chunk] > since {
            for i in records.positions(ofChunk: chunk) where changedIn[i] > since {
                guard let r = records[i] else { continue }
                if out.count == limit { return (out, true) }
                out.append(r)
            }
        }
        return (out, false)
    }

    /// The ids that changed after `since` and are no longer in the run.
    package func removed(since: Int) -> [StepID] {
        chunkChangedIn.indices.filter { chunkChangedIn[$0] > since }.flatMap { chunk in
            records.positions(ofChunk: chunk).filter { records[$0] == nil && changedIn[$0] > since }.map { $0 + 1 }
        }
    }

    /// The last lines of step `id`'s log (only a file in this run's logs folder is read).
    package func logTail(_ id: StepID, lines: Int = 30) -> LogTail? {
        record(id).map { LogTail.of($0, runDirectory: runDirectory, lines: lines) }
    }
}

/// Takes `RunView`s of one run directory, again and again as the run goes: each refresh reads only
/// what the run committed since the last (`RunStoreFollower`). Not shared between threads: each
/// viewer has its own.
package final class RunWatcher {
    package let runDirectory: URL
    private let follower: RunStoreFollower
    private var header: StoredRun?
    private var records = ChunkedArray<StepRecord?>()
    private var statusCounts = [Int](repeating: 0, count: StepStatus.allCases.count)
    private var changedIn = ChunkedArray<Int>()
    private var chunkChangedIn: [Int] = []
    private var runningIDs: Set<StepID> = []
    private var failedIDs: Set<StepID> = []
    private var generation = 0
    private var wholeReadIn = 0
    /// (when, steps ended then): the last minute of refreshes, for the rate.
    private var samples: [(at: Double, ended: Int)] = []

    package init(runDirectory: URL) {
        self.runDirectory = runDirectory
        self.follower = RunStoreFollower(runDirectory: runDirectory)
    }

    /// Reads what the run committed since the last refresh and returns the run as it is now. A run
    /// recorded `running` is checked against the run directory's lock.
    /// - Throws: `RunStoreError.noRun` while the directory holds no database, `.unreadable` for a
    ///   file that is not one or is damaged.
    package func refresh(now: Double = Date().timeIntervalSince1970) throws(RunStoreError) -> RunView {
        try read(now: now)
        var liveness = RunLiveness.asRecorded
        for attempt in 0..<2 where header?.status == "running" {
            switch RunDirectoryLock.probe(runDirectory: runDirectory) {
            case .held(let holder):
                liveness = .owned(holder)
            case .noLockFile, .unknown:
                liveness = .asRecorded
            case .free:
                if attempt == 1 {
                    liveness = .interrupted
                } else {
                    // A run records its end before it lets the lock go, and a new one takes the lock
                    // before it records its start: read again, then look again, so neither is taken
                    // for a crash.
                    try read(now: now)
                    continue
                }
            }
            break
        }
        return view(liveness: liveness, now: now)
    }

    private func read(now: Double) throws(RunStoreError) {
        var changed = false
        let update = try follower.read { entries in
            if !changed && !entries.isEmpty {
                generation += 1
                changed = true
            }
            for entry in entries {
                switch entry {
                case .step(var r):
                    r.start = StoredRun.plausibleTime(r.start)
                    r.end = StoredRun.plausibleTime(r.end)
                    put(r.id, r)
                case .dropped(let id):
                    put(id, nil)
                }
            }
        }
        apply(update, now: now)
    }

    private func apply(_ update: RunStoreFollower.Update, now: Double) {
        switch update {
        case .whole(let h, let slots):
            generation += 1
            wholeReadIn = generation
            header = h
            records = ChunkedArray(slots)
            statusCounts = [Int](repeating: 0, count: StepStatus.allCases.count)
            runningIDs = []
            failedIDs = []
            for case let r? in slots {
                statusCounts[Self.index(r.status)] += 1
                if r.status == .running { runningIDs.insert(r.id) } else if r.status == .failed { failedIDs.insert(r.id) }
            }
            changedIn = ChunkedArray(repeatElement(generation, count: records.count))
            chunkChangedIn = [Int](repeating: generation, count: records.chunkCount)
            seedRate(started: h.started, now: now)
        case .changes(let h):
            header = h
        }
        let ended = statusCounts[Self.index(.finished)] + statusCounts[Self.index(.failed)]
        samples.append((now, ended))
        samples.removeAll { $0.at < now - 60 }
    }

    private func put(_ id: StepID, _ record: StepRecord?) {
        guard id >= 1, id - records.count <= RunStore.maxIDJump else { return }
        if id > records.count {
            records.append(repeating: nil, count: id - records.count)
            changedIn.append(repeating: generation, count: id - changedIn.count)
            chunkChangedIn += [Int](repeating: generation, count: records.chunkCount - chunkChangedIn.count)
        }
        if let old = records[id - 1] {
            statusCounts[Self.index(old.status)] -= 1
            if old.status == .running { runningIDs.remove(id) } else if old.status == .failed { failedIDs.remove(id) }
        }
        if let record {
            statusCounts[Self.index(record.status)] += 1
            if record.status == .running { runningIDs.insert(id) } else if record.status == .failed { failedIDs.insert(id) }
        }
        records[id - 1] = record
        changedIn[id - 1] = generation
        chunkChangedIn[ChunkedArray<Int>.chunk(of: id - 1)] = generation
    }

    /// A first sample from the steps' end times, so a viewer attached to a long run shows a rate at once.
    private func seedRate(started: Double?, now: Double) {
        samples.removeAll()
        let since = max(now - 30, started ?? now - 30)
        guard since < now else { return }
        var before = 0
        for case let r? in records where r.status == .finished || r.status == .failed {
            if let end = r.end, end < since { before += 1 } else if r.end == nil { before += 1 }
        }
        samples.append((since, before))
    }

    private func view(liveness: RunLiveness, now: Double) -> RunView {
        let h = header ?? StoredRun(protocolName: "", params: [], status: "", threads: 1, mpi: 1, started: nil, ended: nil, launches: 0, steps: [])
        let ended = statusCounts[Self.index(.finished)] + statusCounts[Self.index(.failed)]
        var rate: Double?
        let live = liveness.owner != nil || (h.status == "running" && liveness == .asRecorded)
        if !live, let started = h.started, let end = h.ended, end > started {
            rate = Double(ended) / (end - started)
        } else if let first = samples.first(where: { $0.at >= now - 30 }) ?? samples.first, now - first.at >= 0.5 {
            rate = Double(ended - first.ended) / (now - first.at)
        }
        return RunView(runDirectory: runDirectory, header: h, liveness: liveness, records: records, statusCounts: statusCounts,
                       generation: generation, changedIn: changedIn, chunkChangedIn: chunkChangedIn, runningIDs: runningIDs,
                       failedIDs: failedIDs, wholeReadIn: wholeReadIn, stepsPerSecond: rate, takenAt: now)
    }

    private static func index(_ status: StepStatus) -> Int { status.ordinal }
}
