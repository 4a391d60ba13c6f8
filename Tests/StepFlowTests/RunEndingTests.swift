import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// The exit code and the status recorded for the run agree, however the run ends; retries do not
/// insert twice (S7, S8, S12).
@Suite struct RunEndingTests {
    /// A journal that keeps what it is given and fails its syncs once told to.
    final class FailingJournal: RunJournal {
        let failing = Atomic<Bool>(false)
        func record(_ steps: [StepRecord]) {}
        func record(pulling changes: @escaping ChangeSource) { changes { _ in } }
        func sync() -> String? { failing.load(ordering: .relaxed) ? "disk I/O error (simulated)" : nil }
    }

    @Test("S10: a database error while a signal stops the run still exits 128+signal, with the error reported")
    func databaseErrorDuringSignal() throws {
        let config = SchedulerConfig(ranks: 1, threadsPerRank: 2)
        let state = SchedulerState(config)
        let journal = FailingJournal()
        let started = Atomic<Int>(0)
        let executor = StepExecutor(functions: ["s": { _ in started.add(1, ordering: .relaxed); usleep(20_000) }])
        let inserter = StepInserter(.protocolSteps, editor: state.editor, functionNames: executor.functionNames)
        for _ in 0..<50 { try inserter.insertFunctionStep("s", prerequisites: []) }
        let dir = Executables.temporaryFolder("db-signal")
        defer { try? FileManager.default.removeItem(at: dir) }
        let transport = InMemoryRanks.start(ranks: 1, threads: 2, executor: executor, runDirectory: dir)
        let report = Coordinator(state: state, transport: transport, functionNames: executor.functionNames, journal: journal,
                                 signalSource: {
                                     guard started.load(ordering: .relaxed) >= 5 else { return nil }
                                     journal.failing.store(true, ordering: .relaxed)
                                     return SIGTERM
                                 }).run()
        #expect(report.outcome == .aborted(signal: SIGTERM))
        #expect(report.exitCode == 143 && report.statusName == "aborted")
        #expect(report.databaseError?.contains("disk I/O error") == true)
        #expect(RunSummary.text(report, protocolName: "T", runDirectory: dir).contains("disk I/O error"))
    }

    @Test("A hook that throws while the last step runs: every step finishes, yet the run is recorded failed and exits 1")
    func hookFailsAfterEverythingFinished() throws {
        struct P: StepProtocol {
            init(params: NoParams) {}
            // The hook throws while the step runs, and the step ends after that: no sleep decides which
            // comes first (a step not yet started when the hook threw would be taken back, not finished).
            static let started = Atomic<Bool>(false)
            static let hookThrew = Atomic<Bool>(false)
            static let functions: StepFunctions<P> = ["s": { _, _ in
                P.started.store(true, ordering: .sequentiallyConsistent)
                #expect(Background.waitUntil { P.hookThrew.load(ordering: .sequentiallyConsistent) }, "the hook threw")
            }]
            var stepsCheckInterval: Duration { .milliseconds(5) }
            mutating func insertAllSteps(_ steps: StepInserter) throws { try steps.insertFunctionStep("s") }
            func stepsCheck(_ run: StepsCheck) throws {
                guard P.started.load(ordering: .sequentiallyConsistent) else { return }
                P.hookThrew.store(true, ordering: .sequentiallyConsistent)
                throw Boom()
            }
        }
        let dir = Executables.temporaryFolder("hook-fails")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(P(), settings: RunSettings(runDirectory: dir, environment: [:]))
        #expect(report.records.allSatisfy { $0.status == .finished })
        #expect(report.exitCode == 1 && report.statusName == "failed")
        #expect(try RunStore.read(runDirectory: dir).status == "failed", "the database says what the exit code says")
    }

    @Test("S7: under --keep-going, an inserter that failed before releasing its waiting step ends the run failed, not stalled")
    func keepGoingInserterFailed() throws {
        struct P: StepProtocol {
            init(params: NoParams) {}
            static let functions: StepFunctions<P> = [
                "spawn": { _, step in
                    try step.insertFunctionStep("s", prerequisites: [])
                    throw Boom()
                },
                "s": { _, _ in },
            ]
            mutating func insertAllSteps(_ steps: StepInserter) throws {
                try steps.insertFunctionStep("spawn")
                try steps.insertFunctionStep("s", prerequisites: [], wait: true)
            }
        }
        let dir = Executables.temporaryFolder("keep-going-stall")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(P(), settings: RunSettings(runDirectory: dir, keepGoing: true, environment: [:]))
        #expect(report.outcome == .failed && report.exitCode == 1)
        #expect(try RunStore.read(runDirectory: dir).status == "failed")
        #expect(RunSummary.text(report, protocolName: "P", runDirectory: dir).contains("failed step 1 'spawn'"))
    }

    @Test("S12: a retry of a step that inserted steps inserts them once: the retry gets the same ids", arguments: [1, 2])
    func retryDoesNotInsertTwice(ranks: Int) throws {
        var h = Harness(threads: 2, ranks: ranks)
        let ran = Mutex<[String]>([])
        h.functions = [
            "spawn": { step in
                var previous: StepID?
                for name in ["a", "b", "c"] {
                    let id = try step.insertFunctionStep("child", .string(name), prerequisites: previous.map { [$0] } ?? [])
                    previous = id
                }
                if step.attempt == 1 { throw Boom() }
            },
            "child": { step in ran.withLock { $0.append(step.args[0].stringValue ?? "?") } },
        ]
        let report = try h.run { try $0.insertFunctionStep("spawn", retries: 1) }
        #expect(report.outcome == .finished)
        #expect(report.records.count == 4, "\(report.records.map(\.spec.function))")
        #expect(report.records[0].attempts == 2)
        #expect(ran.withLock { $0 }.sorted() == ["a", "b", "c"], "each child ran once")
    }
}
