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
        r.gpus = seed % 4 == 0 ? [] : Array(0..<(seed % 4)).map { $0 * 3 + seed % 2 }
        r.result = seed % 3 == 1 ? StepResult.bytes([UInt8](repeating: UInt8(seed % 256), count: seed)).encoded
            : seed % 3 == 2 ? StepResult.value(.array([.int(seed), .string("r")])).encoded : nil
        return r
    }

    static func same(_ a: StepRecord, _ b: StepRecord) -> Bool {
        a.id == b.id && a.status == b.status && a.spec == b.spec && a.prerequisites == b.prerequisites
            && a.insertPrerequisiteCount == b.insertPrerequisiteCount && a.insertedBy == b.insertedBy && a.releasedBy == b.releasedBy
            && a.crashes == b.crashes && a.rank == b.rank && a.slot == b.slot && a.attempts == b.attempts && a.start == b.start
            && a.end == b.end && a.error == b.error && a.logPath == b.logPath && a.gpus == b.gpus && a.result == b.result
    }

    /// Expects `entries` to be `records` as written: the same fields, times to the bit, dropped steps as dropped.
    static func expectReadAsWritten(_ entries: [StepLog.Entry], _ records: [StepRecord], sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        #expect(entries.count == records.count, sourceLocation: sourceLocation)
        for (entry, written) in zip(entries, records) {
            switch entry {
            case .step(let read):
                #expect(!written.isDropped && same(read, written) && read.start?.bitPattern == written.start?.bitPattern
                        && read.end?.bitPattern == written.end?.bitPattern, "step \(written.id)", sourceLocation: sourceLocation)
            case .dropped(let id):
                #expect(written.isDropped && id == written.id, "step \(written.id)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("S8: every field of a step (all statuses, inserters, releasers, optionals set and not) reads back as written; dropped steps as dropped")
    func roundTrip() throws {
        var records = (0..<70).map { Self.record($0 + 1, seed: $0) }
        records[5].isDropped = true
        Self.expectReadAsWritten(try StepLog.decode(StepLog.encode(records)), records)
    }

    @Test("A damaged row's step ids are refused: a prerequisite or inserter below 1 or above Int32.max never reaches the graph")
    func idsInRange() throws {
        for bad in [0, -1, Int(Int32.max) + 1] {
            var r = Self.record(3, seed: 1)
            r.prerequisites = [1, bad]
            r.insertPrerequisiteCount = 2
            #expect(throws: WireError.self, "prerequisite \(bad)") { try StepLog.decode(StepLog.encode([r])) }
            var s = Self.record(3, seed: 1)
            s.insertedBy = .step(bad)
            // 0 and the negative codes name no step or another inserter: only ids too large are damage.
            if bad > 0 { #expect(throws: WireError.self, "inserter \(bad)") { try StepLog.decode(StepLog.encode([s])) } }
        }
    }

    @Test("S8: steps that share a function and start microseconds apart (layout 2 leaves the function out and XORs the times) read back bit for bit")
    func sharedFunctionsAndCloseTimes() throws {
        var rng = SeededRandom(seed: 5)
        let functions = ["align", "align", "align", "ctf", "ctf", "align", "é-ünïcode", "ctf"]
        var records: [StepRecord] = []
        var clock = 1.8e9 + 0.123456789
        for i in 0..<400 {
            var r = StepRecord(id: i + 1, spec: StepSpec(function: functions[i % functions.count]), prerequisites: i > 0 ? [i] : [],
                               insertedBy: .protocolSteps, status: i % 9 == 0 ? .running : .finished)
            // Close, far, equal, negative and absent times; ends before their starts.
            switch rng.next() % 6 {
            case 0: clock += Double(rng.next() % 1_000) * 1e-7
            case 1: clock += Double(rng.next() % 100_000)
            case 2: break
            case 3: clock = -clock
            default: clock = Double(bitPattern: rng.next() >> 2)
            }
            r.start = i % 7 == 3 ? nil : clock
            r.end = i % 5 == 4 ? nil : (i % 11 == 0 ? clock - 1 : clock + Double(rng.next() % 5_000) * 1e-9)
            r.rank = i % 4
            r.slot = 0
            r.attempts = 1
            records.append(r)
        }
        Self.expectReadAsWritten(try StepLog.decode(StepLog.encode(records)), records)
    }

    @Test("S8: a finished step with no arguments takes at most 16 bytes in the log (layout 1 took 45)")
    func compactEntry() {
        let start = 1.8e9 + 0.5
        let records = (1...1_000).map { i in
            var r = StepRecord(id: 100_000 + i, spec: StepSpec(function: "bench"), prerequisites: [], insertedBy: .protocolSteps, status: .finished)
            r.rank = 1 + i % 3
            r.slot = 0
            r.attempts = 1
            r.start = start + Double(i) * 1e-6
            r.end = start + Double(i) * 1e-6 + 1e-6
            return r
        }
        let bytes = StepLog.encode(records)
        #expect(bytes.count <= 1 + "bench".utf8.count + 1 + 8 + 16 * records.count, "\(bytes.count) bytes for \(records.count) steps")
    }

    @Test("S8: a step with every number at its extreme (each field's longest encoding) reads back as written")
    func extremeNumbers() throws {
        let spec = StepSpec(function: "", args: [.int(.min)], threads: .max, needsGPU: true, retries: .min, wait: true,
                            expectedSeconds: -.greatestFiniteMagnitude)
        var r = StepRecord(id: Int(Int32.max), spec: spec, prerequisites: [Int(Int32.max), 1], insertedBy: .step(Int(Int32.max)), status: .skipped,
                           insertPrerequisiteCount: 1)
        r.releasedBy = .step(Int(Int32.max))
        r.crashes = Int(UInt16.max)
        r.rank = Int(Int32.max)
        r.slot = Int(Int32.max)
        r.attempts = Int(Int32.max)
        r.start = -.greatestFiniteMagnitude
        r.end = .greatestFiniteMagnitude
        r.error = ""
        r.logPath = ""
        // Without arguments and prerequisites, whose bytes the writer's bound counts apart.
        var bare = r
        bare.spec.args = []
        bare.prerequisites = []
        bare.insertPrerequisiteCount = 0
        // First in its row, so its start is XORed with nothing: all of its 10 bytes.
        let records = [bare, r, bare]
        Self.expectReadAsWritten(try StepLog.decode(StepLog.encode(records)), records)
        // Ids no step can have are written within the bound too (debug builds check it), and refused on read.
        var beyond = r
        beyond.prerequisites = [.max, .min, 0]
        beyond.insertedBy = .step(.max)
        #expect(throws: WireError.self) { try StepLog.decode(StepLog.encode([beyond])) }
    }

    /// A row written by a build before layout 2, by that build's encoder: `record(3, seed: 1)`,
    /// `record(4, seed: 10)`, `record(9, seed: 7)`, then step 5 dropped.
    static let firstLayoutRow = """
        0101030102663104050661226220c3a9030104000000000000e03f0701016b0602000201040201555555555555d53f010200031402020202\
        0104000040fc54d9410100004040fc54d94100000104030366313004050661226220c3a9031304000000000000e03f0701016b0602000202\
        02020002020604031602060004000100008042fc54d9410123737465702034206661696c65643a202271756f746564220a7365636f6e6420\
        6c696e65011c2f746d702f72756e206469722f6c6f67732f737465702d342e6c6f6701090002663704050661226220c3a9030d0400000000\
        0000e03f0701016b0602000200060201abaaaaaaaaaa02400402060a0e06032002000206011d000040fc54d941010000c041fc54d9410000\
        0005
        """

    @Test("S9: rows of the first log layout, written by older builds, still read as written")
    func firstLayoutStillRead() throws {
        var hex = Substring(Self.firstLayoutRow)
        var bytes: [UInt8] = []
        while !hex.isEmpty {
            bytes.append(try #require(UInt8(hex.prefix(2), radix: 16)))
            hex = hex.dropFirst(2)
        }
        #expect(bytes.first == StepLog.firstLayout && StepLog.firstLayout != StepLog.layout)
        var dropped = Self.record(5, seed: 2)
        dropped.isDropped = true
        // Layout 1 had no GPU ids nor results.
        let written = [Self.record(3, seed: 1), Self.record(4, seed: 10), Self.record(9, seed: 7), dropped].map { r in
            var r = r
            r.gpus = []
            r.result = nil
            return r
        }
        Self.expectReadAsWritten(try StepLog.decode(bytes), written)
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
        // A first entry that leaves its function out refers to nothing; a mask with unknown fields.
        #expect(throws: WireError.self) { try StepLog.decode([StepLog.layout, 1, 1, 3, 0]) }
        #expect(throws: WireError.self) { try StepLog.decode([StepLog.layout, 1, 1, 3, 0x80, 0x80, 0x20]) }
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
