import ArgumentParser
import Foundation
import GRDB
import Synchronization
import Testing
@testable import StepFlow

/// A protocol whose steps write down each run in `<run-dir>/runs.txt`, for continue tests.
struct ContinueProtocol: StepProtocol {
    struct Params: ParsableArguments, Sendable {
        @Option var value: Int = 1
        @Option(name: .customLong("fail")) var failing: String = ""
    }

    let params: Params
    init(params: Params) { self.params = params }

    static let functions: StepFunctions<ContinueProtocol> = [
        "step": { p, s in try p.record(s) },
        "spawner": { p, s in
            try p.record(s)
            let a = try s.insertFunctionStep("step", "child-a", prerequisites: [])
            try s.insertFunctionStep("step", "child-b", prerequisites: [a])
            try s.addPrerequisites(to: 6, [a])
            try s.release(6)
        },
    ]

    mutating func insertAllSteps(_ steps: StepInserter) throws {
        try steps.insertFunctionStep("step", "a")                                   // 1
        try steps.insertFunctionStep("step", .string("b"), .int(params.value))     // 2, after 1
        try steps.insertFunctionStep("step", "c")                                   // 3, after 2
        try steps.insertFunctionStep("step", "d", prerequisites: [])                // 4
        try steps.insertFunctionStep("spawner", prerequisites: [])                  // 5
        try steps.insertFunctionStep("step", "close", prerequisites: [4], wait: true) // 6
    }

    func record(_ s: StepContext) throws {
        let label = s.args.first?.stringValue ?? s.function
        s.logger.info("ran \(label)")
        if params.failing.split(separator: ",").contains(Substring(label)) { throw Boom() }
        let line = "\(label)\n"
        let fd = open(s.runDirectory.path + "/runs.txt", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        defer { close(fd) }
        _ = line.withCString { write(fd, $0, strlen($0)) }
    }
}

/// Thousands of independent empty steps: more than one chunk of the journal's pull.
struct ManyStepsProtocol: StepProtocol {
    init(params: NoParams) {}
    static let functions: StepFunctions<ManyStepsProtocol> = ["x": { _, _ in }]
    mutating func insertAllSteps(_ steps: StepInserter) throws {
        for _ in 0..<6_000 { try steps.insertFunctionStep("x", prerequisites: []) }
    }
}

/// A second protocol, to check that a run database is not taken for another protocol's.
struct OtherProtocol: StepProtocol {
    init(params: NoParams) {}
    static let functions: StepFunctions<OtherProtocol> = ["x": { _, _ in }]
    mutating func insertAllSteps(_ steps: StepInserter) throws { try steps.insertFunctionStep("x") }
}

@Suite struct RunStoreTests {
    func settings(_ dir: URL, _ mode: RunMode = .new, keepGoing: Bool = false) -> RunSettings {
        var s = RunSettings(runDirectory: dir, threads: 2, keepGoing: keepGoing, environment: [:])
        s.mode = mode
        return s
    }

    func runs(_ dir: URL) -> [String] {
        let text = (try? String(contentsOf: dir.appendingPathComponent("runs.txt"), encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: dir.appendingPathComponent("runs.txt"))
        return text.split(separator: "\n").map(String.init).sorted()
    }

    func proto(value: Int = 1, fail: String = "") throws -> ContinueProtocol {
        ContinueProtocol(params: try .parse(["--value", String(value), "--fail", fail]))
    }

    @Test("S8: every step is in run.db with status, rank, slot, times, inserter and prerequisites")
    func recorded() throws {
        let dir = Executables.temporaryFolder("store")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
        #expect(report.outcome == .finished)
        let stored = try RunStore.read(runDirectory: dir)
        #expect(stored.protocolName == "ContinueProtocol" && stored.status == "finished")
        #expect(stored.steps.count == 8)
        #expect(stored.steps.allSatisfy { $0.status == .finished && $0.rank == 0 && $0.slot != nil && $0.start != nil && $0.end != nil && $0.attempts == 1 })
        #expect(stored.steps[6].insertedBy == .step(5) && stored.steps[7].prerequisites == [7])
        #expect(Set(stored.steps[5].prerequisites) == [4, 7], "the prerequisite added at run time is recorded")
    }

    @Test("S8: a run of 6,000 steps, pulled 2,048 at a time, has every step in run.db as it ended")
    func manyStepsRecorded() throws {
        let dir = Executables.temporaryFolder("store-many")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(ManyStepsProtocol(), settings: settings(dir))
        #expect(report.outcome == .finished)
        let stored = try RunStore.read(runDirectory: dir).steps
        #expect(stored.map(\.id) == Array(1...6_000))
        #expect(stored.allSatisfy { $0.status == .finished && $0.start != nil && $0.end != nil && $0.attempts == 1 && $0.slot != nil })
    }

    @Test("S9: changing one step's arguments re-runs that step and its dependents, nothing else; run-time inserts are restored")
    func continueAfterChange() throws {
        let dir = Executables.temporaryFolder("continue")
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try ProtocolRunner.runLocal(try proto(value: 1), settings: settings(dir))
        #expect(runs(dir) == ["a", "b", "c", "child-a", "child-b", "close", "d", "spawner"])
        let report = try ProtocolRunner.runLocal(try proto(value: 2), settings: settings(dir, .continueRun))
        #expect(report.outcome == .finished)
        #expect(runs(dir) == ["b", "c"])
        #expect(report.records.count == 8, "the spawner's children were restored, not inserted again")
        #expect(report.records[6].spec.args == ["child-a"] && report.records[6].insertedBy == .step(5))
        let stored = try RunStore.read(runDirectory: dir)
        #expect(stored.steps.count == 8 && stored.steps.allSatisfy { $0.status == .finished })
        #expect(stored.steps[1].spec.args == ["b", 2])
        // Nothing changed: nothing runs.
        _ = try ProtocolRunner.runLocal(try proto(value: 2), settings: settings(dir, .continueRun))
        #expect(runs(dir).isEmpty)
    }

    @Test("S9: a failed step and what depends on it run again on --continue; finished steps do not")
    func continueAfterFailure() throws {
        let dir = Executables.temporaryFolder("continue-fail")
        defer { try? FileManager.default.removeItem(at: dir) }
        let failed = try ProtocolRunner.runLocal(try proto(fail: "b"), settings: settings(dir, keepGoing: true))
        #expect(failed.outcome == .failed)
        #expect(runs(dir) == ["a", "child-a", "child-b", "close", "d", "spawner"])
        let report = try ProtocolRunner.runLocal(try proto(), settings: settings(dir, .continueRun))
        #expect(report.outcome == .finished)
        #expect(runs(dir) == ["b", "c"])
        // Logs never mix launches: the failed attempt's log stays as it was, the re-run has its own.
        let first = try String(contentsOf: dir.appendingPathComponent("logs/step-2.log"), encoding: .utf8)
        #expect(first.contains("ran b") && first.contains("failed: boom"))
        let second = try String(contentsOf: dir.appendingPathComponent("logs/launch-2/step-2.log"), encoding: .utf8)
        #expect(second.contains("ran b") && !second.contains("boom"))
        #expect(report.records[1].logPath == dir.appendingPathComponent("logs/launch-2/step-2.log").path)
        #expect(report.records[0].logPath == dir.appendingPathComponent("logs/step-1.log").path, "a kept step keeps its log")
    }

    @Test("A run directory that holds a run needs --continue or --restart; --restart sets the whole old run aside")
    func existingRun() throws {
        let dir = Executables.temporaryFolder("restart")
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
        let oldRuns = try String(contentsOf: dir.appendingPathComponent("runs.txt"), encoding: .utf8)
        #expect {
            try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
        } throws: { error in
            "\(error)".contains("already holds a run of ContinueProtocol") && "\(error)".contains("--continue")
        }
        let report = try ProtocolRunner.runLocal(try proto(), settings: settings(dir, .restart))
        #expect(report.outcome == .finished && runs(dir).count == 8, "the new run's outputs do not mix with the old run's")
        let aside = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("previous-") }
        #expect(aside.count == 1)
        let folder = dir.appendingPathComponent(aside[0])
        #expect(try String(contentsOf: folder.appendingPathComponent("runs.txt"), encoding: .utf8) == oldRuns,
                "the protocol's own outputs were set aside with the old run, not deleted")
        #expect(try RunStore.read(runDirectory: folder).steps.count == 8, "the old database is in the same folder")
        #expect(try RunStore.read(runDirectory: dir).steps.count == 8)
        _ = try ProtocolRunner.runLocal(try proto(), settings: settings(dir, .restart))
        let asideTwice = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("previous-") }
        #expect(asideTwice.count == 2, "a second restart sets the second run aside beside the first")
    }

    static func fileDigest(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    @Test("S12: a run directory whose lock a live process holds is refused (exit 2, naming it) and left byte for byte as it was")
    func lockHeld() throws {
        let dir = Executables.temporaryFolder("held")
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
        let lock = try RunDirectoryLock.acquire(runDirectory: dir)
        defer { lock.release() }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        let before = files.map { Self.fileDigest(dir.appendingPathComponent($0).path) }
        for flags in [["--continue"], ["--restart"], []] {
            let result = try Executables.run("ImportMovies", ["--run-dir", dir.path] + flags)
            #expect(result.code == 2 && result.stderr.contains("pid \(getpid())") && result.stderr.contains("owns run directory"), "\(result.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == files)
        #expect(files.map { Self.fileDigest(dir.appendingPathComponent($0).path) } == before)
    }

    @Test("A run.db of another protocol, a newer schema, a corrupt or a truncated file: a clear error, exit 2, the file untouched",
          arguments: ["other-protocol", "newer-schema", "corrupt", "truncated", "cut-log-row", "unknown-log-entry"])
    func badDatabase(kind: String) throws {
        let dir = Executables.temporaryFolder("baddb")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = RunStore.path(in: dir)
        switch kind {
        case "other-protocol":
            _ = try ProtocolRunner.runLocal(OtherProtocol(), settings: settings(dir))
        case "newer-schema":
            _ = try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
            let db = try DatabaseQueue(path: path)
            try db.writeWithoutTransaction { try $0.execute(sql: "PRAGMA user_version = 99") }
            try db.close()
        case "cut-log-row", "unknown-log-entry":
            _ = try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
            let db = try DatabaseQueue(path: path)
            let damage = kind == "cut-log-row"
                ? "UPDATE step_log SET steps = substr(steps, 1, length(steps) - 5) WHERE seq = (SELECT max(seq) FROM step_log)"
                : "UPDATE step_log SET steps = x'01FF07' WHERE seq = (SELECT min(seq) FROM step_log)"
            try db.writeWithoutTransaction { try $0.execute(sql: damage) }
            try db.close()
        case "truncated":
            // A run big enough to span many pages, cut short after its first ones.
            let big = try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
            #expect(big.outcome == .finished)
            let whole = try Data(contentsOf: URL(fileURLWithPath: path))
            try whole.prefix(4096).write(to: URL(fileURLWithPath: path))
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        default:
            try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }).write(to: URL(fileURLWithPath: path))
        }
        let before = Self.fileDigest(path)
        // The cut row's last entry is whichever step changed last, so what it ends inside varies.
        let expected = ["other-protocol": ["holds a run of protocol 'OtherProtocol'"], "newer-schema": ["newer StepFlow"],
                        "corrupt": ["is not a StepFlow run database"], "truncated": ["is not a StepFlow run database"],
                        "cut-log-row": ["step log row", "cannot be read (", "at byte"],
                        "unknown-log-entry": ["unknown step entry kind 255"]][kind]!
        let says = { (message: String) in expected.allSatisfy { message.contains($0) } }
        for mode in [RunMode.new, .continueRun] {
            #expect {
                try ProtocolRunner.runLocal(try proto(), settings: settings(dir, mode))
            } throws: { error in
                says("\(error)")
            }
        }
        #expect(Self.fileDigest(path) == before, "the database file was left as it was")
        if kind != "other-protocol" {
            let status = try Executables.run("ImportMovies", ["status", "--run-dir", dir.path, "--json"])
            #expect(status.code == 2 && says(status.stderr), "\(status.stderr)")
            let launch = try Executables.run("ImportMovies", ["--run-dir", dir.path, "--continue"])
            #expect(launch.code == 2 && says(launch.stderr), "\(launch.stderr)")
        }
        #expect(Self.fileDigest(path) == before, "the database file was left as it was")
    }
}

/// The run database's journal: WAL on a local disk, a rollback journal on a filesystem several hosts
/// share (where WAL's shared-memory index does not work across hosts).
@Suite struct DatabaseJournalTests {
    static let mounts = """
        27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
        40 27 0:50 / /shared rw,relatime - nfs4 server:/export rw,vers=4.2
        41 40 0:51 / /shared/scratch\\040space rw,relatime - lustre 10.0.0.1@tcp:/fs rw
        """

    @Test("The filesystem of a path comes from the longest mount point that holds it")
    func filesystemType() {
        #expect(DatabaseJournal.filesystemType(of: "/home/me/run", mountInfo: Self.mounts) == "ext4")
        #expect(DatabaseJournal.filesystemType(of: "/shared/project/run", mountInfo: Self.mounts) == "nfs4")
        #expect(DatabaseJournal.filesystemType(of: "/shared/scratch space/run", mountInfo: Self.mounts) == "lustre")
        #expect(DatabaseJournal.filesystemType(of: "/sharedx/run", mountInfo: Self.mounts) == "ext4")
        #expect(DatabaseJournal.choose(for: NSTemporaryDirectory(), environment: [:]).0 == .wal)
        #expect(DatabaseJournal.choose(for: NSTemporaryDirectory(), environment: ["STEPFLOW_DB_JOURNAL": "rollback"]).0 == .rollback)
    }

    @Test("With a rollback journal a live run is read while it runs, and no write-ahead log is left")
    func rollbackJournalLiveRead() throws {
        let dir = Executables.temporaryFolder("rollback")
        defer { try? FileManager.default.removeItem(at: dir) }
        struct P: StepProtocol {
            init(params: NoParams) {}
            static let gate = DispatchSemaphore(value: 0)
            static let functions: StepFunctions<P> = [
                "s": { _, _ in usleep(2_000) },
                "gate": { _, _ in _ = P.gate.wait(timeout: .now() + 30) },
            ]
            mutating func insertAllSteps(_ steps: StepInserter) throws {
                for _ in 0..<200 { try steps.insertFunctionStep("s", prerequisites: []) }
                try steps.insertFunctionStep("gate", prerequisites: [])
            }
        }
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<RunOutcome?>(nil)
        let settings = RunSettings(runDirectory: dir, threads: 2, environment: ["STEPFLOW_DB_JOURNAL": "rollback"])
        Thread {
            let report = try? ProtocolRunner.runLocal(P(), settings: settings)
            outcome.withLock { $0 = report?.outcome }
            done.signal()
        }.start()
        #expect(Background.waitUntil { (try? RunStore.read(runDirectory: dir))?.count(.finished) ?? 0 >= 100 })
        for _ in 0..<20 { #expect(try RunStore.read(runDirectory: dir).status == "running") }
        P.gate.signal()
        #expect(done.wait(timeout: .now() + 60) == .success)
        #expect(outcome.withLock { $0 } == .finished)
        #expect(!FileManager.default.fileExists(atPath: RunStore.path(in: dir) + "-wal"))
        let db = try DatabaseQueue(path: RunStore.path(in: dir))
        #expect(try db.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "delete")
        try db.close()
    }
}
