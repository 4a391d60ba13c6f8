import Foundation
import GRDB
import Testing
@testable import StepFlow

/// The run database keeps steps as rows of `StepLog` bytes (schema 3, S8): every field of a record
/// must come back as written, and damaged bytes must be refused, never trap or read as something else.
@Suite struct StepLogTests {
    /// A record with every field set from `seed`, covering each status, inserter, releaser and the
    /// nil and non-nil forms of every optional.
    static func record(_ id: StepID, seed: Int) -> StepRecord {
        let inserters: [Inserter] = [.protocolSteps, .stepsCheck, .step(id + 7)]
        let args: [StepValue] = seed % 3 == 0 ? [] : [.string("a\"b é"), .int(-seed), .double(0.5), .object(["k": [.null, true]])]
        let spec = StepSpec(function: seed % 4 == 0 ? "" : "f\(seed)", args: args, threads: 1 + seed % 5, needsGPU: seed % 2 == 0,
                            retries: seed % 3, wait: seed % 5 == 1, expectedSeconds: seed % 2 == 0 ? nil : Double(seed) / 3)
        let prerequisites = Array(stride(from: 1, to: id, by: 1 + seed % 3))
        var r = StepRecord(id: id, spec: spec, prerequisites: prerequisites, insertedBy: inserters[seed % 3],
                           status: StepStatus.allCases[seed % StepStatus.allCases.count],
                           insertPrerequisiteCount: prerequisites.count - (seed % 2 == 0 ? 0 : min(1, prerequisites.count)))
        r.releasedBy = seed % 4 == 0 ? nil : inserters[(seed + 1) % 3]
        r.crashes = seed % 3
        r.rank = seed % 3 == 0 ? nil : seed % 7
        r.slot = seed % 3 == 0 ? nil : seed % 2
        r.attempts = seed % 4
        r.start = seed % 2 == 0 ? nil : 1.7e9 + Double(seed) * 1e-6
        r.end = seed % 3 == 0 ? nil : 1.7e9 + Double(seed)
        r.error = seed % 5 == 0 ? "step \(id) failed: \"quoted\"\nsecond line" : nil
        r.logPath = seed % 2 == 0 ? "/tmp/run dir/logs/step-\(id).log" : nil
        return r
    }

    static func same(_ a: StepRecord, _ b: StepRecord) -> Bool {
        a.id == b.id && a.status == b.status && a.spec == b.spec && a.prerequisites == b.prerequisites
            && a.insertPrerequisiteCount == b.insertPrerequisiteCount && a.insertedBy == b.insertedBy && a.releasedBy == b.releasedBy
            && a.crashes == b.crashes && a.rank == b.rank && a.slot == b.slot && a.attempts == b.attempts && a.start == b.start
            && a.end == b.end && a.error == b.error && a.logPath == b.logPath
    }

    @Test("S8: every field of a step (all statuses, inserters, releasers, optionals set and not) reads back as written; dropped steps as dropped")
    func roundTrip() throws {
        var records = (0..<70).map { Self.record($0 + 1, seed: $0) }
        records[5].isDropped = true
        let entries = try StepLog.decode(StepLog.encode(records))
        #expect(entries.count == records.count)
        for (entry, written) in zip(entries, records) {
            switch entry {
            case .step(let read): #expect(!written.isDropped && Self.same(read, written), "step \(written.id)")
            case .dropped(let id): #expect(written.isDropped && id == written.id)
            }
        }
    }

    @Test("A damaged step log row is refused with what and where, never trapping: every truncation, every flipped byte")
    func damage() throws {
        let bytes = StepLog.encode((0..<6).map { Self.record($0 + 1, seed: $0 * 5 + 1) })
        for cut in 0..<bytes.count {
            // A cut between two entries is a shorter row, not a damaged one: only the first cut, which
            // leaves no layout byte, and cuts inside an entry must throw.
            do {
                let entries = try StepLog.decode(Array(bytes.prefix(cut)))
                #expect(cut > 0 && entries.count < 6)
            } catch {
                #expect(!error.problem.isEmpty)
            }
        }
        var rng = SeededRandom(seed: 11)
        for _ in 0..<2_000 {
            var damaged = bytes
            damaged[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            _ = try? StepLog.decode(damaged)
        }
        #expect(throws: WireError.self) { try StepLog.decode([9] + bytes.dropFirst()) }
        #expect(throws: WireError.self) { try StepLog.decode([StepLog.layout, 1, 0]) }
    }

    @Test("S8: the run database reads steps from the log in commit order: the last write of a step is the step, a dropped step is gone")
    func laterEntriesWin() throws {
        let dir = Executables.temporaryFolder("steplog")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        let first = (1...4).map { Self.record($0, seed: 1) }
        store.record(first)
        #expect(store.sync() == nil)
        var second = Self.record(2, seed: 9)
        second.status = .finished
        var dropped = first[2]
        dropped.isDropped = true
        store.record([second, dropped])
        #expect(store.finish(status: "finished") == nil)
        let stored = try RunStore.read(runDirectory: dir)
        #expect(stored.steps.map(\.id) == [1, 2, 4])
        #expect(Self.same(stored.steps[1], second))
        #expect(Self.same(stored.steps[0], first[0]) && Self.same(stored.steps[2], first[3]))
        #expect(stored.schemaVersion == 3)
        // A commit is one row of every changed step; SQLite's cost for it goes by the page.
        let reader = try DatabaseQueue(path: RunStore.path(in: dir))
        defer { try? reader.close() }
        #expect(try reader.read { try Int.fetchOne($0, sql: "PRAGMA page_size") } == 65536)
    }

    @Test("S9: a database of an older StepFlow (a row per step) is read as it is, and continuing in it rewrites it as the log")
    func olderDatabaseRewritten() throws {
        let dir = try RecoveryEdgeCaseTests.v1Database([(1, "download", "[]", "finished", 0, nil), (2, "merge", "[1]", "new", 0, nil)])
        defer { try? FileManager.default.removeItem(at: dir) }
        let old = try RunStore.read(runDirectory: dir)
        #expect(old.schemaVersion == 1 && old.steps.map(\.spec.function) == ["download", "merge"] && old.steps[0].status == .finished)
        let store = try RunStore.reopen(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1,
                                        previousLaunches: old.launches, steps: old.steps)
        #expect(store.finish(status: "finished") == nil)
        let again = try RunStore.read(runDirectory: dir)
        #expect(again.schemaVersion == RunStore.schemaVersion)
        #expect(zip(again.steps, old.steps).allSatisfy { Self.same($0, $1) } && again.steps.count == 2)
        let reader = try DatabaseQueue(path: RunStore.path(in: dir))
        defer { try? reader.close() }
        let (rows, logRows) = try reader.read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM step") ?? -1, try Int.fetchOne(db, sql: "SELECT count(*) FROM step_log") ?? -1)
        }
        #expect(rows == 0 && logRows == 1)
    }
}
