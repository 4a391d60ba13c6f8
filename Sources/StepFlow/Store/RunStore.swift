import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Why the run database cannot be used. The file is left as it was.
package enum RunStoreError: Error, CustomStringConvertible, Sendable {
    case unreadable(path: String, reason: String)
    case otherProtocol(path: String, found: String, expected: String)
    case newerSchema(path: String, found: Int, supported: Int)
    case alreadyHoldsRun(path: String, protocolName: String, status: String, steps: Int)
    case noRun(path: String)
    case write(path: String, reason: String)

    package var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "'\(path)' is not a StepFlow run database (\(reason)). Leave it be and choose another --run-dir, or move it away and start over."
        case .otherProtocol(let path, let found, let expected):
            return "'\(path)' holds a run of protocol '\(found)', not '\(expected)'. Use another --run-dir, or --restart to set the old run aside and start over."
        case .newerSchema(let path, let found, let supported):
            return "'\(path)' was written by a newer StepFlow (schema \(found); this one reads up to \(supported)). Use that StepFlow, or another --run-dir."
        case .alreadyHoldsRun(let path, let name, let status, let steps):
            return "'\(path)' already holds a run of \(name) (\(status), \(steps) steps). Add --continue to finish it, or --restart to set it aside and start over."
        case .noRun(let path):
            return "no run database at '\(path)'. Give the --run-dir of a run (it holds run.db)."
        case .write(let path, let reason):
            return "cannot write the run database '\(path)': \(reason)"
        }
    }
}

/// A run as the database holds it.
package struct StoredRun: Sendable {
    package var protocolName: String
    package var params: [String]
    package var status: String
    package var threads: Int
    package var mpi: Int
    package var started: Double?
    package var ended: Double?
    /// How many times the run was launched: 1, plus one per `--continue`.
    package var launches: Int
    package var steps: [StepRecord]
    /// The launches the database records (databases of older builds record none).
    package var launchRecords: [LaunchRecord] = []
    /// The database's schema version; 1 kept neither added prerequisites apart nor releasers.
    package var schemaVersion = RunStore.schemaVersion
    /// How long the writer's commits took, this launch (nil: a database of an older build).
    package var commits: CommitStats?

    package func count(_ status: StepStatus) -> Int { steps.lazy.filter { $0.status == status }.count }

    /// `t` when it can be a moment of a run (seconds since 1970, before the year ~5000), else nil.
    package static func plausibleTime(_ t: Double?) -> Double? {
        guard let t, t.isFinite, t >= 0, t < 1e11 else { return nil }
        return t
    }
}

/// How long the run's writer took to commit step changes in this launch: each commit's time is
/// recorded with the next commit (and the last one as the run ends), so the figures lag one commit.
package struct CommitStats: Sendable, Equatable {
    package var count: Int
    package var totalSeconds: Double
    package var maxSeconds: Double
    package var lastSeconds: Double
}

/// The run database (S8): `<run-dir>/run.db`, SQLite in WAL mode, owned by rank 0. Step records are
/// written behind the run by a thread of their own, each transaction one `step_log` row of every
/// step it changed (`StepLog`); `sync()` waits until everything handed over is committed, so a
/// status is on disk before the run reports it.
package final class RunStore: Sendable {
    package static let fileName = "run.db"
    /// 2 added what continuing a growing graph needs (S12): insert-time prerequisites (NULL: all of
    /// them), releases, crashes (NULL: none), launches. 3 keeps steps in `step_log` (`StepLog`), a row
    /// per commit instead of a row per step. An older database is upgraded when a run continues in it.
    package static let schemaVersion = 3

    package let path: String
    /// This launch's number in the run: 1 for a new run, one more for each `--continue`.
    package let launch: Int
    /// The journal the database uses here, and why (see `DatabaseJournal`).
    package let journal: (mode: DatabaseJournal, reason: String)
    private let db: DatabaseQueue
    /// What `record` hands the writer: records, or a pull of the changes at the moment it is written
    /// (a copy of every queued batch held 200 bytes a step while the writer caught up).
    private enum Batch {
        case records([StepRecord])
        case pull(ChangeSource)
    }
    private let queue = Mutex<(pending: [Batch], handed: Int, committed: Int, closing: Bool, failure: String?)>(([], 0, 0, false, nil))
    private let wake = NSCondition()
    private let writerDone = DispatchSemaphore(value: 0)

    package static func path(in runDirectory: URL) -> String { runDirectory.path + "/" + fileName }

    /// Opens the database of a run to read it (`status`), without writing and without blocking a live run.
    /// With `steps: false` only the run's row is read (the steps come back empty): what a caller that
    /// only needs the protocol's name pays for a million-step run is one row, not a million.
    package static func read(runDirectory: URL, steps readSteps: Bool = true) throws(RunStoreError) -> StoredRun {
        let path = path(in: runDirectory)
        guard FileManager.default.fileExists(atPath: path) else { throw .noRun(path: path) }
        return try load(openReader(path: path), path: path, steps: readSteps)
    }

    /// A read-only connection to the database at `path`, waiting up to 5 s for a writer's lock.
    /// - Throws: `RunStoreError.unreadable` when it cannot be opened.
    static func openReader(path: String) throws(RunStoreError) -> DatabaseQueue {
        do {
            var config = Configuration()
            config.readonly = true
            config.busyMode = .timeout(5)
            return try DatabaseQueue(path: path, configuration: config)
        } catch {
            throw .unreadable(path: path, reason: Self.reason(error))
        }
    }

    /// What the run directory holds: nil when there is no database yet. Never changes the file.
    package static func inspect(runDirectory: URL) throws(RunStoreError) -> StoredRun? {
        guard FileManager.default.fileExists(atPath: path(in: runDirectory)) else { return nil }
        return try read(runDirectory: runDirectory)
    }

    /// Creates the database of a new run. The run directory must not hold one (a restart sets the old
    /// run aside first).
    package static func create(runDirectory: URL, protocolName: String, params: [String], threads: Int, mpi: Int,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws(RunStoreError) -> RunStore {
        let path = path(in: runDirectory)
        guard !FileManager.default.fileExists(atPath: path) else {
            throw .write(path: path, reason: "a run database is already there; continue it with --continue or set it aside with --restart")
        }
        let store = try RunStore(path: path, launch: 1, environment: environment)
        try store.writeRun(protocolName: protocolName, params: params, threads: threads, mpi: mpi, replaceSteps: nil)
        return store
    }

    /// Opens an existing database to continue its run: its run row is refreshed (one more launch) and
    /// its steps are replaced by the continued graph's.
    package static func reopen(runDirectory: URL, protocolName: String, params: [String], threads: Int, mpi: Int,
                              previousLaunches: Int, steps: [StepRecord],
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws(RunStoreError) -> RunStore {
        let store = try RunStore(path: path(in: runDirectory), launch: previousLaunches + 1, environment: environment)
        try store.writeRun(protocolName: protocolName, params: params, threads: threads, mpi: mpi, replaceSteps: steps)
        return store
    }

    private init(path: String, launch: Int, environment: [String: String]) throws(RunStoreError) {
        self.path = path
        self.launch = launch
        journal = DatabaseJournal.choose(for: (path as NSString).deletingLastPathComponent, environment: environment)
        do {
            var config = Configuration()
            config.busyMode = .timeout(5)
            let pragmas = journal.mode.pragmas
            config.prepareDatabase { db in
                // 64 KiB pages (only a new database takes them, before its journal mode is set): each
                // commit is one row of ~50 bytes a changed step, and SQLite's cost goes by the page, 3×
                // less for a 6 MB row than with 4 KiB pages (18 ms against 6 ms on this machine).
                try db.execute(sql: "PRAGMA page_size = 65536; " + pragmas + "; PRAGMA cache_size = -65536")
            }
            db = try DatabaseQueue(path: path, configuration: config)
            try db.write { db in
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                if version > Self.schemaVersion { throw RunStoreError.newerSchema(path: path, found: version, supported: Self.schemaVersion) }
                if version == 1 { try db.execute(sql: Self.upgradeFrom1) }
                try db.execute(sql: Self.schema)
                try db.execute(sql: "PRAGMA user_version = \(Self.schemaVersion)")
            }
        } catch let error as RunStoreError {
            throw error
        } catch {
            throw .write(path: path, reason: Self.reason(error))
        }
        let thread = Thread { [self] in self.writerLoop() }
        thread.name = "stepflow-runstore"
        thread.start()
    }

    /// Hands step records to the writer; they are committed within one batch, in order.
    package func record(_ steps: [StepRecord]) {
        guard !steps.isEmpty else { return }
        hand(.records(steps))
    }

    /// Queues a pull of the changed steps: the writer calls `changes` when it gets to it and commits
    /// everything it returns in one transaction.
    package func record(pulling changes: @escaping ChangeSource) {
        hand(.pull(changes))
    }

    private func hand(_ batch: Batch) {
        wake.lock()
        queue.withLock {
            $0.pending.append(batch)
            $0.handed += 1
        }
        wake.signal()
        wake.unlock()
    }

    /// Waits until everything handed over so far is committed. Returns the writer's failure, if any.
    @discardableResult
    package func sync() -> String? {
        let target = queue.withLock { $0.handed }
        wake.lock()
        defer { wake.unlock() }
        while true {
            let (committed, failure) = queue.withLock { ($0.committed, $0.failure) }
            if committed >= target || failure != nil { return failure }
            wake.wait()
        }
    }

    /// Records the host of each rank of this launch (rank 0 learns them once the ranks are up).
    /// Returns what went wrong, if anything: the run goes on without it.
    @discardableResult
    package func recordHosts(_ hosts: [String]) -> String? {
        do {
            try db.write { db in
                try db.execute(sql: "UPDATE launch SET hosts = ? WHERE n = ?", arguments: [JSONText.values(hosts.map { .string($0) }), launch])
            }
            return nil
        } catch {
            return "could not record the launch's hosts: \(Self.reason(error))"
        }
    }

    /// Records how the run ended, commits everything, stops the writer and closes the database.
    /// Returns what went wrong, if anything did: the caller must tell the user, the database may not
    /// say how the run ended.
    @discardableResult
    package func finish(status: String, ending: (kind: String, why: String, lostRanks: [Int])? = nil) -> String? {
        var failure = sync()
        do {
            try db.write { db in
                let now = Date().timeIntervalSince1970
                try db.execute(sql: "UPDATE run SET status = ?, ended = ? WHERE id = 1", arguments: [status, now])
                if let ending {
                    try db.execute(sql: "UPDATE launch SET ended = ?, ending = ?, why = ?, lost_ranks = ? WHERE n = ?",
                                   arguments: [now, ending.kind, ending.why, JSONText.values(ending.lostRanks.map { .int($0) }), launch])
                }
            }
        } catch {
            failure = failure ?? "could not record the run as \(status): \(Self.reason(error))"
        }
        wake.lock()
        queue.withLock { $0.closing = true }
        wake.broadcast()
        wake.unlock()
        writerDone.wait()
        // Closing checkpoints the write-ahead log into run.db now, not whenever the store is freed.
        do {
            try db.close()
        } catch {
            failure = failure ?? "could not close the database: \(Self.reason(error))"
        }
        return failure
    }

    private func writerLoop() {
        let row = StepLog.Row()
        let clock = ContinuousClock()
        var stats = CommitStats(count: 0, totalSeconds: 0, maxSeconds: 0, lastSeconds: 0)
        while true {
            wake.lock()
            var batches: [Batch] = []
            var closing = false
            while true {
                (batches, closing) = queue.withLock { q in
                    let b = q.pending
                    q.pending.removeAll()
                    return (b, q.closing)
                }
                if !batches.isEmpty || closing { break }
                wake.wait()
            }
            wake.unlock()
            if !batches.isEmpty {
                var failure: String?
                row.clear()
                for batch in batches {
                    switch batch {
                    case .records(let records): for r in records { row.append(r) }
                    case .pull(let changes): changes { row.append($0) }
                    }
                }
                if !row.isEmpty {
                    do {
                        let began = clock.now
                        try db.write { db in
                            try self.appendLog(row.bytes, db)
                            if stats.count > 0 { try Self.recordStats(stats, db) }
                        }
                        let took = clock.now - began
                        let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) * 1e-18
                        stats.count += 1
                        stats.totalSeconds += seconds
                        stats.maxSeconds = max(stats.maxSeconds, seconds)
                        stats.lastSeconds = seconds
                    } catch {
                        failure = Self.reason(error)
                    }
                }
                wake.lock()
                queue.withLock {
                    $0.committed += batches.count
                    if let failure, $0.failure == nil { $0.failure = failure }
                }
                wake.broadcast()
                wake.unlock()
            }
            if closing && batches.isEmpty { break }
        }
        // The last commit's time, which no later commit carries.
        if stats.count > 0 { _ = try? db.write { db in try Self.recordStats(stats, db) } }
        writerDone.signal()
    }

    private static func recordStats(_ stats: CommitStats, _ db: Database) throws {
        let statement = try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO store_stats (id, commits, commit_seconds, commit_max_seconds, last_commit_seconds) VALUES (1, ?, ?, ?, ?)
            """)
        try statement.execute(arguments: [stats.count, stats.totalSeconds, stats.maxSeconds, stats.lastSeconds])
    }

    /// Appends one row of `StepLog` bytes, bound in place.
    private func appendLog(_ bytes: UnsafeRawBufferPointer, _ db: Database) throws {
        guard bytes.count <= Int(Int32.max) else {
            throw RunStoreError.write(path: path, reason: "\(bytes.count) bytes of step changes in one commit, more than SQLite takes in one value")
        }
        let statement = try db.cachedStatement(sql: "INSERT INTO step_log (steps) VALUES (?)")
        let handle = statement.sqliteStatement
        sqlite3_reset(handle)
        sqlite3_bind_blob(handle, 1, bytes.baseAddress, Int32(bytes.count), nil)
        let rc = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))))
        }
    }

    private func writeRun(protocolName: String, params: [String], threads: Int, mpi: Int, replaceSteps: [StepRecord]?) throws(RunStoreError) {
        do {
            try db.write { db in
                let existing = try String.fetchOne(db, sql: "SELECT protocol FROM run WHERE id = 1")
                if let existing, existing != protocolName {
                    throw RunStoreError.otherProtocol(path: path, found: existing, expected: protocolName)
                }
                try db.execute(sql: """
                    INSERT INTO run (id, protocol, params, status, threads, mpi, started, ended, launches) VALUES (1, ?, ?, 'running', ?, ?, ?, NULL, ?)
                    ON CONFLICT(id) DO UPDATE SET params = excluded.params, status = 'running', threads = excluded.threads,
                      mpi = excluded.mpi, started = excluded.started, ended = NULL, launches = excluded.launches
                    """, arguments: [protocolName, JSONText.values(params.map { .string($0) }), threads, mpi, Date().timeIntervalSince1970, launch])
                try db.execute(sql: "INSERT OR REPLACE INTO launch (n, started, mpi, threads) VALUES (?, ?, ?, ?)",
                               arguments: [launch, Date().timeIntervalSince1970, mpi, threads])
                // The commit figures are this launch's.
                try db.execute(sql: "DELETE FROM store_stats")
                if let replaceSteps {
                    // The continued graph in one row: what the old rows said is in it.
                    try db.execute(sql: "DELETE FROM step; DELETE FROM step_log")
                    try StepLog.encode(replaceSteps.lazy.filter { !$0.isDropped }).withUnsafeBytes { try self.appendLog($0, db) }
                }
            }
        } catch let error as RunStoreError {
            throw error
        } catch {
            throw .write(path: path, reason: Self.reason(error))
        }
    }

    static let schema = """
        CREATE TABLE IF NOT EXISTS run (
          id INTEGER PRIMARY KEY CHECK (id = 1), protocol TEXT NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL,
          threads INTEGER NOT NULL, mpi INTEGER NOT NULL, started REAL, ended REAL, launches INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE IF NOT EXISTS step (
          id INTEGER PRIMARY KEY, function TEXT NOT NULL, args BLOB NOT NULL, prerequisites TEXT NOT NULL,
          status TEXT NOT NULL, wait INTEGER NOT NULL, threads INTEGER NOT NULL, needs_gpu INTEGER NOT NULL,
          retries INTEGER NOT NULL, inserter TEXT NOT NULL, inserted_by INTEGER, rank INTEGER, slot INTEGER,
          attempts INTEGER NOT NULL, start REAL, "end" REAL, error TEXT, log TEXT,
          insert_prerequisites INTEGER, released_by INTEGER, crashes INTEGER, expected REAL);
        CREATE TABLE IF NOT EXISTS step_log (seq INTEGER PRIMARY KEY, steps BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS store_stats (
          id INTEGER PRIMARY KEY CHECK (id = 1), commits INTEGER NOT NULL, commit_seconds REAL NOT NULL,
          commit_max_seconds REAL NOT NULL, last_commit_seconds REAL NOT NULL);
        """ + LaunchRecord.schema

    static let upgradeFrom1 = """
        ALTER TABLE run ADD COLUMN launches INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE step ADD COLUMN insert_prerequisites INTEGER;
        ALTER TABLE step ADD COLUMN released_by INTEGER;
        ALTER TABLE step ADD COLUMN crashes INTEGER;
        ALTER TABLE step ADD COLUMN expected REAL;
        """


    private static func load(_ reader: DatabaseQueue, path: String, steps readSteps: Bool = true) throws(RunStoreError) -> StoredRun {
        do {
            return try reader.read { db -> StoredRun in
                var stored = try header(db, path: path)
                if readSteps { stored.steps = try steps(db, path: path) }
                return stored
            }
        } catch let error as RunStoreError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: reason(error))
        }
    }

    /// The run's row and launches, with no steps: what a reader that keeps the steps itself reads each time.
    static func header(_ db: Database, path: String) throws -> StoredRun {
        let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        if version > schemaVersion { throw RunStoreError.newerSchema(path: path, found: version, supported: schemaVersion) }
        guard try db.tableExists("run"), try db.tableExists("step"), let run = try Row.fetchOne(db, sql: "SELECT * FROM run WHERE id = 1") else {
            throw RunStoreError.unreadable(path: path, reason: "it has no StepFlow run in it")
        }
        let cells = Cells(path: path)
        let params = JSONText.parseStrings(try cells.optional(run, "params", "the run") ?? "[]") ?? []
        let threads: Int = try cells.required(run, "threads", "the run"), mpi: Int = try cells.required(run, "mpi", "the run")
        // Sizes and counts are computed from these: a damaged database's must not overflow them.
        guard (1...Int(Int32.max)).contains(threads), (1...Int(Int32.max)).contains(mpi) else {
            throw RunStoreError.unreadable(path: path, reason: "its run has threads \(threads) and mpi \(mpi), which no run can have")
        }
        var stored = StoredRun(protocolName: try cells.required(run, "protocol", "the run"), params: params,
                               status: try cells.required(run, "status", "the run"), threads: threads, mpi: mpi,
                               started: StoredRun.plausibleTime(try cells.optional(run, "started", "the run")),
                               ended: StoredRun.plausibleTime(try cells.optional(run, "ended", "the run")),
                               launches: try cells.optional(run, "launches", "the run") ?? 1, steps: [], schemaVersion: version)
        stored.launchRecords = try LaunchRecord.readAll(db)
        if try db.tableExists("store_stats"), let row = try Row.fetchOne(db, sql: "SELECT * FROM store_stats WHERE id = 1") {
            stored.commits = CommitStats(count: try cells.required(row, "commits", "the commit figures"),
                                         totalSeconds: try cells.required(row, "commit_seconds", "the commit figures"),
                                         maxSeconds: try cells.required(row, "commit_max_seconds", "the commit figures"),
                                         lastSeconds: try cells.required(row, "last_commit_seconds", "the commit figures"))
        }
        return stored
    }

    /// Every step: the `step` rows (schemas 1 and 2, and a database upgraded from them) with the
    /// `step_log` rows applied, in id order.
    static func steps(_ db: Database, path: String) throws -> [StepRecord] {
        try stepSlots(db, path: path).compactMap { $0 }
    }

    /// Every step by id − 1 (nil where no step has that id). Ids are dense from 1, so an array indexed
    /// by id takes the log's entries in place: a dictionary and a sort of the records cost 3× more for
    /// a million steps.
    static func stepSlots(_ db: Database, path: String) throws -> [StepRecord?] {
        let cells = Cells(path: path)
        var steps: [StepRecord] = []
        for row in try Row.fetchAll(db, sql: "SELECT * FROM step ORDER BY id") {
            let id: Int = try cells.required(row, "id", "a step")
            let at = "step \(id)"
            // Ids index the graph's arrays: a damaged row's must not reach them.
            let idRange = 1...Int(Int32.max)
            guard idRange.contains(id) else { throw RunStoreError.unreadable(path: path, reason: "a step has the id \(id)") }
            let kind: String = try cells.required(row, "inserter", at)
            let by: Int? = try cells.optional(row, "inserted_by", at)
            let inserter: Inserter
            switch (kind, by) {
            case ("step", let s?) where idRange.contains(s): inserter = .step(s)
            case ("stepsCheck", _): inserter = .stepsCheck
            case ("protocol", _): inserter = .protocolSteps
            default: throw RunStoreError.unreadable(path: path, reason: "\(at) names an unknown inserter '\(kind)'")
            }
            let argBytes: Data = try cells.required(row, "args", at)
            let args: [StepValue]
            do {
                args = try WireCodec.decode(arguments: [UInt8](argBytes))
            } catch {
                throw RunStoreError.unreadable(path: path, reason: "\(at)'s arguments cannot be read (\(error))")
            }
            let spec = StepSpec(function: try cells.required(row, "function", at), args: args,
                                threads: try cells.required(row, "threads", at), needsGPU: try cells.required(row, "needs_gpu", at),
                                retries: try cells.required(row, "retries", at), wait: try cells.required(row, "wait", at),
                                expectedSeconds: try cells.optional(row, "expected", at))
            let prerequisiteText: String = try cells.required(row, "prerequisites", at)
            guard let prerequisites = JSONText.parseIDList(prerequisiteText), prerequisites.allSatisfy(idRange.contains) else {
                throw RunStoreError.unreadable(path: path, reason: "\(at)'s prerequisites cannot be read ('\(prerequisiteText.prefix(80))')")
            }
            let statusText: String = try cells.required(row, "status", at)
            guard let status = StepStatus(rawValue: statusText) else {
                throw RunStoreError.unreadable(path: path, reason: "\(at) has an unknown status '\(statusText)'")
            }
            // A version 1 database did not tell insert-time prerequisites from added ones: all count.
            let insertCount: Int? = try cells.optional(row, "insert_prerequisites", at)
            var r = StepRecord(id: id, spec: spec, prerequisites: prerequisites, insertedBy: inserter, status: status,
                               insertPrerequisiteCount: insertCount.map { min(max($0, 0), prerequisites.count) })
            // NULL: not released; -1 insertAllSteps, -2 the stepsCheck hook, n > 0 step n.
            let released: Int? = try cells.optional(row, "released_by", at)
            switch released {
            case nil: r.releasedBy = nil
            case -1: r.releasedBy = .protocolSteps
            case -2: r.releasedBy = .stepsCheck
            case let n? where n > 0: r.releasedBy = .step(n)
            case let other?: throw RunStoreError.unreadable(path: path, reason: "\(at) was released by an unknown \(other)")
            }
            r.crashes = try cells.optional(row, "crashes", at) ?? 0
            r.rank = try cells.optional(row, "rank", at)
            r.slot = try cells.optional(row, "slot", at)
            r.attempts = try cells.required(row, "attempts", at)
            r.start = try cells.optional(row, "start", at)
            r.end = try cells.optional(row, "end", at)
            r.error = try cells.optional(row, "error", at)
            r.logPath = try cells.optional(row, "log", at)
            steps.append(r)
        }
        var slots: [StepRecord?] = []
        slots.reserveCapacity(steps.count)
        func put(_ id: StepID, _ record: StepRecord?) throws {
            // Ids come one after another: append, so the array grows geometrically (an append of
            // a repeated nil reallocated it to the exact size each time, a copy per step).
            if id == slots.count + 1 {
                slots.append(record)
                return
            }
            if id > slots.count {
                // Ids are handed out one by one: a jump this far is a damaged row, not a run.
                guard id - slots.count <= maxIDJump else {
                    throw RunStoreError.unreadable(path: path, reason: "a step has the id \(id), far beyond the run's \(slots.count) others")
                }
                slots += repeatElement(nil, count: id - slots.count)
            }
            slots[id - 1] = record
        }
        for r in steps { try put(r.id, r) }
        steps = []
        if try db.tableExists("step_log") {
            let cursor = try Row.fetchCursor(db, sql: "SELECT seq, steps FROM step_log ORDER BY seq")
            while let row = try cursor.next() {
                let seq: Int64 = row[0]
                guard let data = row[1] as Data? else {
                    throw RunStoreError.unreadable(path: path, reason: "step log row \(seq) is empty")
                }
                for entry in try logEntries(data, seq: seq, path: path) {
                    switch entry {
                    case .step(let r): try put(r.id, r)
                    case .dropped(let id): if id >= 1 && id <= slots.count { slots[id - 1] = nil }
                    }
                }
            }
        }
        // A time no run can have (NaN, infinite, before 1970 or millennia ahead) reads as none.
        for i in slots.indices where slots[i] != nil {
            slots[i]!.start = StoredRun.plausibleTime(slots[i]!.start)
            slots[i]!.end = StoredRun.plausibleTime(slots[i]!.end)
        }
        return slots
    }

    /// How far past the highest id seen a step's id may be: a run inserts its steps one id at a time.
    static let maxIDJump = 10_000_000

    /// The entries of one `step_log` row.
    static func logEntries(_ data: Data, seq: Int64, path: String) throws(RunStoreError) -> [StepLog.Entry] {
        do {
            return try StepLog.decode([UInt8](data))
        } catch {
            throw .unreadable(path: path, reason: "step log row \(seq) cannot be read (\(error.problem), at byte \(error.offset))")
        }
    }

    /// Reads cells of a database that may be damaged: a missing, NULL or mistyped cell is an error
    /// naming the step and column, never a crash.
    private struct Cells {
        let path: String

        func optional<T: DatabaseValueConvertible>(_ row: Row, _ column: String, _ owner: String) throws(RunStoreError) -> T? {
            let value: DatabaseValue = (row[column] as DatabaseValue?) ?? .null
            if value.isNull { return nil }
            guard let converted = T.fromDatabaseValue(value) else {
                throw .unreadable(path: path, reason: "\(owner): column '\(column)' holds \(value), not a \(T.self)")
            }
            return converted
        }

        func required<T: DatabaseValueConvertible>(_ row: Row, _ column: String, _ owner: String) throws(RunStoreError) -> T {
            guard let value: T = try optional(row, column, owner) else {
                throw .unreadable(path: path, reason: "\(owner): column '\(column)' is empty")
            }
            return value
        }
    }

    static func reason(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return e.message ?? e.description }
        return String(describing: error)
    }
}
