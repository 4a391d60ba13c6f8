import Foundation
import GRDB

/// Follows a run database while its run writes it: the first `read()` reads it whole, each later one
/// only the step-log rows committed since (for a run of a million steps a second, ~13 MB a second
/// instead of the whole run each time). A continued run (its log starts over) or a database put in
/// the file's place (`--restart`) is read whole again.
///
/// Each read is one short read transaction on a read-only connection: in WAL mode a reader never
/// holds the writer back, and with a rollback journal (shared filesystems) the reader's lock lasts
/// only as long as that transaction.
final class RunStoreFollower {
    /// What a read found.
    enum Update {
        /// The run read from scratch: its row and launches (`steps` empty), and its steps by id − 1.
        case whole(StoredRun, [StepRecord?])
        /// The run's row and launches (`steps` empty); the steps changed since the last read went to
        /// the reader's `changed`, in the order they were committed (a step may come more than once;
        /// the last one counts).
        case changes(StoredRun)
    }

    package let runDirectory: URL
    private var reader: DatabaseQueue?
    /// The database file the reader has open (device, inode): another there means read it whole.
    private var file: (device: UInt64, inode: UInt64)?
    private var lastSeq: Int64 = 0
    private var launches: Int?

    package init(runDirectory: URL) {
        self.runDirectory = runDirectory
    }

    /// Reads what changed since the last read (everything, the first time). Changed steps are handed
    /// to `changed` one log row at a time, as they are read: gathered into one array first, a second
    /// of a fast run was hundreds of MB of fresh memory, and its page faults cost more than reading.
    /// - Throws: `RunStoreError.noRun` while there is no database (yet, or any more), `.unreadable`
    ///   for a file that is not a run database or a damaged row.
    package func read(changed: ([StepLog.Entry]) -> Void) throws(RunStoreError) -> Update {
        let path = RunStore.path(in: runDirectory)
        var info = stat()
        guard stat(path, &info) == 0 else {
            reader = nil
            throw .noRun(path: path)
        }
        let identity = (device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        if reader == nil || file?.device != identity.device || file?.inode != identity.inode {
            do {
                reader = try RunStore.openReader(path: path)
            } catch {
                reader = nil
                throw error
            }
            file = identity
            launches = nil
        }
        guard let reader else { throw .noRun(path: path) }
        // The new log rows are copied inside the read transaction and decoded after it: in WAL mode
        // a reader's snapshot keeps the writer's checkpoints from finishing, and decoding a second of
        // a fast run in the transaction held it for half a second (the run lost a tenth of its speed).
        var rows: [(seq: Int64, data: Data)] = []
        let update: Update
        do {
            update = try reader.read { db -> Update in
                let header = try RunStore.header(db, path: path)
                let hasLog = try db.tableExists("step_log")
                let last = hasLog ? try Int64.fetchOne(db, sql: "SELECT max(seq) FROM step_log") ?? 0 : 0
                // A continue rewrites the log from row 1 in the transaction that counts its launch.
                if launches == nil || header.launches != launches || last < lastSeq || !hasLog {
                    let slots = try RunStore.stepSlots(db, path: path)
                    lastSeq = last
                    launches = header.launches
                    return .whole(header, slots)
                }
                let cursor = try Row.fetchCursor(db, sql: "SELECT seq, steps FROM step_log WHERE seq > ? ORDER BY seq", arguments: [lastSeq])
                while let row = try cursor.next() {
                    let seq: Int64 = row[0]
                    guard let data = row[1] as Data? else {
                        throw RunStoreError.unreadable(path: path, reason: "step log row \(seq) is empty")
                    }
                    rows.append((seq, data))
                }
                return .changes(header)
            }
        } catch let error as RunStoreError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: RunStore.reason(error))
        }
        for row in rows {
            changed(try RunStore.logEntries(row.data, seq: row.seq, path: path))
            lastSeq = row.seq
        }
        return update
    }
}
