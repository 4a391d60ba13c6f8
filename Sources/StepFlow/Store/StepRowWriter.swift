import GRDB
import GRDBSQLite

/// Writes step rows with SQLite's own binding calls on GRDB's prepared statement: the run database
/// writes every step, and building GRDB's `StatementArguments` for each row cost more than the step.
/// A step's first write is a whole row; later writes update only what changes while it runs.
struct StepRowWriter {
    private let insert: OpaquePointer
    private let update: OpaquePointer
    private let updateWaiting: OpaquePointer
    private let remove: OpaquePointer
    /// SQLITE_TRANSIENT: SQLite copies the text before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    static let insertSQL = """
        INSERT OR REPLACE INTO step (id, function, args, prerequisites, status, wait, threads, needs_gpu, retries, inserter,
          inserted_by, rank, slot, attempts, start, "end", error, log, insert_prerequisites, released_by, crashes, expected)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    static let updateSQL = """
        UPDATE step SET prerequisites = ?4, status = ?5, rank = ?12, slot = ?13, attempts = ?14, start = ?15,
          "end" = ?16, error = ?17, log = ?18, insert_prerequisites = ?19 WHERE id = ?1
        """
    /// Only a waiting step can be released: the others skip those columns (every column costs SQLite
    /// work on every row).
    static let updateWaitingSQL = """
        UPDATE step SET prerequisites = ?4, status = ?5, rank = ?12, slot = ?13, attempts = ?14, start = ?15,
          "end" = ?16, error = ?17, log = ?18, insert_prerequisites = ?19, released_by = ?20 WHERE id = ?1
        """
    static let deleteSQL = "DELETE FROM step WHERE id = ?"

    init(_ db: Database) throws {
        insert = try db.cachedStatement(sql: Self.insertSQL).sqliteStatement
        update = try db.cachedStatement(sql: Self.updateSQL).sqliteStatement
        updateWaiting = try db.cachedStatement(sql: Self.updateWaitingSQL).sqliteStatement
        remove = try db.cachedStatement(sql: Self.deleteSQL).sqliteStatement
    }

    /// Deletes a step's row (a step dropped from the run, S12).
    func delete(_ id: StepID) throws {
        sqlite3_reset(remove)
        sqlite3_bind_int64(remove, 1, Int64(id))
        let rc = sqlite3_step(remove)
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(remove))))
        }
    }

    /// Writes one step: the whole row the first time, the changing columns afterwards.
    func write(_ r: StepRecord, firstTime: Bool) throws {
        let handle = firstTime ? insert : r.spec.wait ? updateWaiting : update
        sqlite3_reset(handle)
        bind(r, to: handle, whole: firstTime, release: firstTime || r.spec.wait)
        let rc: Int32
        if firstTime {
            // The function name is bound in place for the length of the step (SQLITE_STATIC: no copy);
            // every later write of this statement binds it again.
            var function = r.spec.function
            rc = function.withUTF8 { utf8 in
                if utf8.isEmpty {
                    Self.constant(handle, 2, "")
                } else {
                    _ = utf8.withMemoryRebound(to: CChar.self) { sqlite3_bind_text(handle, 2, $0.baseAddress, Int32(utf8.count), nil) }
                }
                return sqlite3_step(handle)
            }
        } else {
            rc = sqlite3_step(handle)
        }
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))))
        }
    }

    func finish() {
        sqlite3_reset(insert)
        sqlite3_reset(update)
        sqlite3_reset(updateWaiting)
        sqlite3_reset(remove)
    }

    /// Binds by column number (the numbering of `insertSQL`, which `updateSQL` reuses).
    private func bind(_ r: StepRecord, to handle: OpaquePointer, whole: Bool, release: Bool) {
        let text = { (i: Int32, v: String?) in Self.text(handle, i, v) }
        let int = { (i: Int32, v: Int?) in Self.int(handle, i, v) }
        let double = { (i: Int32, v: Double?) in Self.double(handle, i, v) }
        sqlite3_bind_int64(handle, 1, Int64(r.id))
        if r.prerequisites.isEmpty { Self.constant(handle, 4, "[]") } else { text(4, JSONText.ids(r.prerequisites)) }
        Self.constant(handle, 5, Self.statusText(r.status))
        int(12, r.rank)
        int(13, r.slot)
        sqlite3_bind_int64(handle, 14, Int64(r.attempts))
        double(15, r.start)
        double(16, r.end)
        text(17, r.error)
        text(18, r.logPath)
        // NULL for the usual values keeps rows short: SQLite pays for every stored cell on every update.
        int(19, r.insertPrerequisiteCount == r.prerequisites.count ? nil : r.insertPrerequisiteCount)
        if release {
            switch r.releasedBy {
            case nil: int(20, nil)
            case .protocolSteps?: int(20, -1)
            case .stepsCheck?: int(20, -2)
            case .step(let id)?: int(20, id)
            }
        }
        guard whole else { return }
        int(21, r.crashes == 0 ? nil : r.crashes)
        double(22, r.spec.expectedSeconds)
        if r.spec.args.isEmpty {
            sqlite3_bind_blob(handle, 3, Self.noArguments.utf8Start, 1, nil)
        } else {
            let args = WireCodec.encode(arguments: r.spec.args)
            _ = args.withUnsafeBytes { sqlite3_bind_blob(handle, 3, $0.baseAddress, Int32($0.count), Self.transient) }
        }
        sqlite3_bind_int64(handle, 6, r.spec.wait ? 1 : 0)
        sqlite3_bind_int64(handle, 7, Int64(r.spec.threads))
        sqlite3_bind_int64(handle, 8, r.spec.needsGPU ? 1 : 0)
        sqlite3_bind_int64(handle, 9, Int64(r.spec.retries))
        switch r.insertedBy {
        case .protocolSteps: Self.constant(handle, 10, "protocol")
        case .stepsCheck: Self.constant(handle, 10, "stepsCheck")
        case .step: Self.constant(handle, 10, "step")
        }
        int(11, r.insertedBy.stepID)
    }

    /// `WireCodec.encode(arguments: [])`: a count of zero (checked by StepRowWriterTests). Static,
    /// so SQLite reads it in place.
    static let noArguments: StaticString = "\u{0}"

    private static func statusText(_ status: StepStatus) -> StaticString {
        switch status {
        case .new: return "new"
        case .waiting: return "waiting"
        case .running: return "running"
        case .finished: return "finished"
        case .failed: return "failed"
        case .aborted: return "aborted"
        case .skipped: return "skipped"
        }
    }

    /// Binds text that lives as long as the program: SQLite uses it in place (no copy, no allocation),
    /// which matters on a path taken for every step.
    private static func constant(_ handle: OpaquePointer, _ index: Int32, _ value: StaticString) {
        value.utf8Start.withMemoryRebound(to: CChar.self, capacity: value.utf8CodeUnitCount) {
            _ = sqlite3_bind_text(handle, index, $0, Int32(value.utf8CodeUnitCount), nil)
        }
    }

    private static func text(_ handle: OpaquePointer, _ index: Int32, _ value: String?) {
        guard let value else { sqlite3_bind_null(handle, index); return }
        var copy = value
        copy.withUTF8 { utf8 in
            _ = utf8.withMemoryRebound(to: CChar.self) { sqlite3_bind_text(handle, index, $0.baseAddress, Int32(utf8.count), transient) }
        }
    }

    private static func int(_ handle: OpaquePointer, _ index: Int32, _ value: Int?) {
        if let value { sqlite3_bind_int64(handle, index, Int64(value)) } else { sqlite3_bind_null(handle, index) }
    }

    private static func double(_ handle: OpaquePointer, _ index: Int32, _ value: Double?) {
        if let value { sqlite3_bind_double(handle, index, value) } else { sqlite3_bind_null(handle, index) }
    }
}
