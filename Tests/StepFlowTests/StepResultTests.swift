import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// Step results (S13): a step hands a small result to the steps that depend on it, and a dependent
/// reads its prerequisites' results; recorded in the run database and restored by --continue.
@Suite(.serialized) struct StepResultTests {
    /// What the steps saw, by step id.
    static let seen = Mutex<[StepID: String]>([:])

    struct P: StepProtocol {
        init(params: NoParams) {}
        static let functions: StepFunctions<P> = [
            "bytes": { _, step in try step.setResult([1, 2, 3]) },
            "value": { _, step in try step.setResult(.object(["n": .int(step.id), "name": .string("v")])) },
            "none": { _, _ in },
            "read": { _, step in
                let a = try step.result(of: 1), b = try step.result(of: 2), c = try step.result(of: 3)
                StepResultTests.seen.withLock { $0[step.id] = "\(a?.bytes ?? []) \(b?.value?.description ?? "-") \(c == nil ? "nil" : "set")" }
            },
            "stranger": { _, step in _ = try step.result(of: 1) },
            "huge": { _, step in try step.setResult([UInt8](repeating: 7, count: 70_000)) },
            "replace": { _, step in
                try step.setResult([9])
                try step.setResult(.string("second"))
            },
            "readReplace": { _, step in
                StepResultTests.seen.withLock { $0[step.id] = (try? step.result(of: 8))??.value?.stringValue ?? "?" }
            },
        ]
        mutating func insertAllSteps(_ steps: StepInserter) throws {
            try steps.insertFunctionStep("bytes", prerequisites: [])            // 1
            try steps.insertFunctionStep("value", prerequisites: [])            // 2
            try steps.insertFunctionStep("none", prerequisites: [])             // 3
            try steps.insertFunctionStep("read", prerequisites: [1, 2, 3])      // 4
            try steps.insertFunctionStep("stranger", prerequisites: [2])        // 5
            try steps.insertFunctionStep("huge", prerequisites: [])             // 6
            try steps.insertFunctionStep("none", prerequisites: [6])            // 7: after a failure
            try steps.insertFunctionStep("replace", prerequisites: [])          // 8
            try steps.insertFunctionStep("readReplace", prerequisites: [8])     // 9
        }
    }

    @Test("S13: withResultBytes reads a prerequisite's bytes where they lie, as result(of:) would give them: nil for a value or no result, the bytes behind files' fingerprints, and an error for a step that is not a prerequisite")
    func resultBytesInPlace() throws {
        let files = StepFiles(inputs: [], outputs: [], content: false)
        let inputs = [
            StepInput(id: 1, name: "a", result: StepResult.bytes([1, 2, 3]).encoded),
            StepInput(id: 2, name: "b", result: StepResult.value(.int(5)).encoded),
            StepInput(id: 3, name: "c", result: []),
            StepInput(id: 4, name: "d", result: StepOutcomeBlob.make(result: StepResult.bytes([9, 8]).encoded, files: files)!),
            StepInput(id: 5, name: "e", result: StepResult.bytes([]).encoded),
        ]
        let context = StepContext(id: 9, function: "read", args: [], rank: 0, slot: 0, gpus: [], attempt: 1,
                                  runDirectory: URL(fileURLWithPath: "/tmp"), editor: RefusesEdits(), functionNames: [], inputs: inputs)
        for id in 1...5 {
            let inPlace = try context.withResultBytes(of: id) { $0.map { Array($0) } }
            #expect(inPlace == (try context.result(of: id))?.bytes, "step \(id)")
        }
        #expect(try context.withResultBytes(of: 1) { $0.map { Array($0) } } == [1, 2, 3])
        #expect(try context.withResultBytes(of: 4) { $0.map { Array($0) } } == [9, 8])
        #expect(try context.withResultBytes(of: 5) { $0?.count } == 0)
        #expect(throws: StepResultError.notAPrerequisite(step: 9, asked: 6)) { try context.withResultBytes(of: 6) { _ in } }
        // Before any step of the run set a result, rank 0 sends no inputs: every read is nil, as result(of:).
        let early = StepContext(id: 9, function: "read", args: [], rank: 0, slot: 0, gpus: [], attempt: 1,
                                runDirectory: URL(fileURLWithPath: "/tmp"), editor: RefusesEdits(), functionNames: [])
        #expect(try early.withResultBytes(of: 6) { $0 == nil })
        // A result set already encoded is held to the limit as any other.
        let small = StepContext(id: 9, function: "read", args: [], rank: 0, slot: 0, gpus: [], attempt: 1,
                                runDirectory: URL(fileURLWithPath: "/tmp"), editor: RefusesEdits(), functionNames: [], resultLimit: 4)
        try small.setEncodedResult(StepResult.bytes([1, 2, 3, 4]).encoded)
        #expect(small.resultEncoded == [0, 1, 2, 3, 4])
        #expect(throws: StepResultError.tooLarge(step: 9, function: "read", bytes: 5, limit: 4)) { try small.setEncodedResult([0, 1, 2, 3, 4, 5]) }
    }

    @Test("S13 in one run over 2 ranks × 2 slots: bytes and values reach dependents, none reads nil, a stranger's result and a result past the limit fail their step with what to do; the database keeps each result")
    func rules() throws {
        Self.seen.withLock { $0 = [:] }
        let dir = Executables.temporaryFolder("results")
        defer { try? FileManager.default.removeItem(at: dir) }
        var settings = RunSettings(runDirectory: dir, threads: 2, mpi: 2, keepGoing: true, environment: [:])
        settings.resultLimit = 65_536
        let report = try ProtocolRunner.runLocal(P(params: NoParams()), settings: settings, worldSize: nil)
        let seen = Self.seen.withLock { $0 }
        #expect(seen[4] == "[1, 2, 3] {\"n\": 2, \"name\": \"v\"} nil", "\(seen)")
        #expect(seen[9] == "second", "setting again replaces: \(seen)")
        let stranger = try #require(report.record(5))
        #expect(stranger.status == .failed && stranger.error?.contains("step 5 asked for the result of step 1, which is not one of its prerequisites") == true,
                "\(stranger.error ?? "")")
        let huge = try #require(report.record(6))
        #expect(huge.status == .failed && huge.error?.contains("step 6 'huge' set a result of 70000 bytes, more than the run's limit of 65536 (--result-limit)") == true,
                "\(huge.error ?? "")")
        #expect(report.record(7)?.status == .skipped)
        // Recorded: the run database and status --json hold every result.
        let stored = try #require(Background.stored(dir))
        #expect(stored.steps[0].result.flatMap { StepResult(encoded: $0) } == .bytes([1, 2, 3]))
        #expect(stored.steps[1].result.flatMap { StepResult(encoded: $0) } == .value(.object(["n": .int(2), "name": .string("v")])))
        #expect(stored.steps[2].result == nil && stored.steps[5].result == nil)
        let status = try Executables.run("stepflow", ["status", "--json", dir.path])
        #expect(status.stdout.contains(#""result":{"base64":"AQID"}"#) && status.stdout.contains(#""result":{"value":{"n":2,"name":"v"}}"#),
                "\(status.stdout.prefix(2000))")
    }

    /// Step 1 sets a result counted by a file; step 2 reads it, but fails until `<run-dir>/go` exists.
    struct Resumed: StepProtocol {
        init(params: NoParams) {}
        static let functions: StepFunctions<Resumed> = [
            "produce": { _, step in
                let count = step.runDirectory.appendingPathComponent("produced")
                let n = (Int((try? String(contentsOf: count, encoding: .utf8)) ?? "0") ?? 0) + 1
                try String(n).write(to: count, atomically: true, encoding: .utf8)
                try step.setResult(.string("made in run \(n)"))
            },
            "consume": { _, step in
                guard FileManager.default.fileExists(atPath: step.runDirectory.appendingPathComponent("go").path) else {
                    throw ResumeNotYet()
                }
                let got = try step.result(of: 1)?.value?.stringValue ?? "nothing"
                try got.write(to: step.runDirectory.appendingPathComponent("consumed"), atomically: true, encoding: .utf8)
            },
        ]
        mutating func insertAllSteps(_ steps: StepInserter) throws {
            try steps.insertFunctionStep("produce", prerequisites: [])
            try steps.insertFunctionStep("consume", prerequisites: [1])
        }
    }
    struct ResumeNotYet: Error {}

    @Test("S13 with S9: a result restored by --continue is read by a dependent that runs after the resume; its producer does not run again")
    func restoredByContinue() throws {
        let dir = Executables.temporaryFolder("results-continue")
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = try ProtocolRunner.runLocal(Resumed(params: NoParams()), settings: RunSettings(runDirectory: dir, threads: 1, mpi: 2, environment: [:]),
                                                worldSize: nil)
        #expect(first.outcome == .failed && first.record(1)?.status == .finished)
        FileManager.default.createFile(atPath: dir.appendingPathComponent("go").path, contents: nil)
        var settings = RunSettings(runDirectory: dir, threads: 1, mpi: 2, environment: [:])
        settings.mode = .continueRun
        let second = try ProtocolRunner.runLocal(Resumed(params: NoParams()), settings: settings, worldSize: nil)
        #expect(second.outcome == .finished)
        #expect(try String(contentsOf: dir.appendingPathComponent("produced"), encoding: .utf8) == "1", "the producer ran once")
        #expect(try String(contentsOf: dir.appendingPathComponent("consumed"), encoding: .utf8) == "made in run 1")
    }

    @Test("S13 for command steps under run_mpi.sh --mpi 2: a command writes $STEPFLOW_RESULT, its dependents read $STEPFLOW_INPUTS/<name>; a result past --result-limit fails its step")
    func commandSteps() throws {
        let dir = Executables.temporaryFolder("results-commands")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("w.yaml")
        try """
            steps:
              - name: produce
                foreach: [a, b, c]
                shell: printf 'from-%s' {item:q} > "$STEPFLOW_RESULT"
              - name: sum
                after: [produce]
                shell: cat "$STEPFLOW_INPUTS/produce[0]" "$STEPFLOW_INPUTS/produce[1]" "$STEPFLOW_INPUTS/produce[2]" > "$STEPFLOW_RUN_DIR/got.txt"; printf total > "$STEPFLOW_RESULT"
              - name: last
                shell: cat "$STEPFLOW_INPUTS/sum" > "$STEPFLOW_RUN_DIR/last.txt"; test -z "$(ls "$STEPFLOW_INPUTS" | grep -v '^sum$')"
            """.write(to: file, atomically: true, encoding: .utf8)
        let runMPI = RelaunchTests.runMPI
        let run = dir.appendingPathComponent("run")
        let result = try Executables.runProcess(runMPI, ["--debug", "--mpi", "2", "--threads", "2", "--", "stepflow", "run", file.path, "--run-dir", run.path])
        #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
        #expect(try String(contentsOf: run.appendingPathComponent("got.txt"), encoding: .utf8) == "from-afrom-bfrom-c")
        #expect(try String(contentsOf: run.appendingPathComponent("last.txt"), encoding: .utf8) == "total")
        let limited = dir.appendingPathComponent("limited")
        let refused = try Executables.runProcess(runMPI, ["--debug", "--mpi", "2", "--threads", "2", "--", "stepflow", "run", file.path,
                                                          "--run-dir", limited.path, "--result-limit", "4"])
        #expect(refused.code == 1 && refused.stdout.contains("set a result of 6 bytes, more than the run's limit of 4 (--result-limit)"),
                "\(refused.stdout)\(refused.stderr)")
    }
}

/// An editor for a step context made by hand: the tests using it edit nothing.
private struct RefusesEdits: GraphEditor {
    func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? { throw GraphEditError("no edits in this test") }
}

