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
        if params.failing.split(separator: ",").contains(Substring(label)) { throw Boom() }
        let line = "\(label)\n"
        let fd = open(s.runDirectory.path + "/runs.txt", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        defer { close(fd) }
        _ = line.withCString { write(fd, $0, strlen($0)) }
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
    }

    @Test("A run directory that holds a run needs --continue or --restart; --restart moves the old database aside")
    func existingRun() throws {
        let dir = Executables.temporaryFolder("restart")
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
        _ = runs(dir)
        #expect {
            try ProtocolRunner.runLocal(try proto(), settings: settings(dir))
        } throws: { error in
            "\(error)".contains("already holds a run of ContinueProtocol") && "\(error)".contains("--continue")
        }
        let report = try ProtocolRunner.runLocal(try proto(), settings: settings(dir, .restart))
        #expect(report.outcome == .finished && runs(dir).count == 8)
        let aside = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("run-") && $0.hasSuffix(".db") }
        #expect(aside.count == 1)
        #expect(try RunStore.read(runDirectory: URL(fileURLWithPath: dir.path)).steps.count == 8)
    }

    static func fileDigest(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    @Test("A run.db of another protocol, a newer schema or a corrupt file: a clear error, the file untouched",
          arguments: ["other-protocol", "newer-schema", "corrupt"])
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
        default:
            try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }).write(to: URL(fileURLWithPath: path))
        }
        let before = Self.fileDigest(path)
        let expected = ["other-protocol": "holds a run of protocol 'OtherProtocol'", "newer-schema": "newer StepFlow",
                        "corrupt": "is not a StepFlow run database"][kind]!
        for mode in [RunMode.new, .continueRun] {
            #expect {
                try ProtocolRunner.runLocal(try proto(), settings: settings(dir, mode))
            } throws: { error in
                "\(error)".contains(expected)
            }
        }
        #expect(Self.fileDigest(path) == before, "the database file was left as it was")
        if kind != "other-protocol" {
            let status = try Executables.run("ImportMovies", ["status", "--run-dir", dir.path, "--json"])
            #expect(status.code == 2 && status.stderr.contains(expected), "\(status.stderr)")
        }
    }
}
