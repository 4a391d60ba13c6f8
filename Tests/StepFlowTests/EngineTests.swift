import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// The engine end to end over `InMemoryRanks`: real worker threads, steps that record when they ran.
@Suite struct EngineTests {
    static let sleep: @Sendable (Intervals) -> @Sendable (StepContext) throws -> Void = { iv in
        { step in iv.record(step) { Thread.sleep(forTimeInterval: 0.05) } }
    }

    /// An embedded engine (steps inline, manual clock) over `functions`: "at once" is exact there.
    static func embedded(threads: Int, ranks: Int = 1, mode: StepsExecutionMode = .parallel, policy: FailurePolicy = .stop,
                         _ functions: [String: @Sendable (StepContext) throws -> Void]) -> EmbeddedEngine {
        EmbeddedEngine(config: SchedulerConfig(ranks: ranks, threadsPerRank: threads, mode: mode, failurePolicy: policy),
                       functions: functions)
    }

    @Test("S2: without prerequisites register steps run one after another; with [readXml] they overlap", arguments: [false, true])
    func defaultPrerequisites(parallel: Bool) throws {
        let registered = Mutex<[StepID]>([])
        let engine = Self.embedded(threads: 4, [
            "readXml": { _ in },
            "register": { _ in },
            "download": { step in
                let readXml = try step.insertFunctionStep("readXml")
                for _ in 0..<4 {
                    let id = parallel ? try step.insertFunctionStep("register", prerequisites: [readXml])
                                      : try step.insertFunctionStep("register")
                    registered.withLock { $0.append(id) }
                }
            },
        ])
        engine.durations = ["register": .seconds(1)]
        try engine.steps.insertFunctionStep("download")
        let report = try engine.runToEnd()
        #expect(report.outcome == .finished)
        let ids = registered.withLock { $0 }
        #expect(ids == [3, 4, 5, 6])
        #expect(engine.ranAtOnce(ids) == parallel)
        #expect(engine.startedTogether.suffix(parallel ? 1 : 4) == (parallel ? [ids] : ids.map { [$0] }))
        if !parallel {
            #expect(report.records[3].prerequisites == [3], "step 4 depends on step 3, the step inserted just before it")
            #expect(report.records[2].prerequisites == [2])
        }
        #expect(report.records[1].prerequisites.isEmpty, "the first step a running step inserts has no default prerequisite")
    }

    @Test("S2: in insertAllSteps the default prerequisite is the previous step; [] means none")
    func protocolDefaults() throws {
        let engine = Self.embedded(threads: 3, ["s": { _ in }])
        engine.durations = ["s": .seconds(1)]
        try engine.steps.insertFunctionStep("s")
        try engine.steps.insertFunctionStep("s")
        try engine.steps.insertFunctionStep("s", prerequisites: [])
        let report = try engine.runToEnd()
        #expect(report.records.map(\.prerequisites) == [[], [1], []])
        #expect(!engine.ranAtOnce([1, 2]))
        #expect(engine.ranAtOnce([1, 3]))
        #expect(engine.startedTogether == [[1, 3], [2]])
    }

    @Test("S3: steps inserted at run time start while their inserter still runs; their ids work at once", arguments: [1, 2])
    func insertedAtRunTime(ranks: Int) throws {
        var h = Harness(threads: 2, ranks: ranks)
        let childRan = DispatchSemaphore(value: 0)
        let seen = Mutex<[String]>([])
        h.functions = [
            "child": { s in seen.withLock { $0.append("child \(s.id)") }; childRan.signal() },
            "after": { s in seen.withLock { $0.append("after \(s.id)") } },
            "parent": { step in
                let child = try step.insertFunctionStep("child", prerequisites: [])
                // Not a time limit: the child runs within milliseconds; 60 s only keeps a broken engine from hanging the suite.
                #expect(childRan.wait(timeout: .now() + 60) == .success, "the child ran while its parent was still running")
                try step.insertFunctionStep("after", prerequisites: [child])
            },
        ]
        let report = try h.run { try $0.insertFunctionStep("parent") }
        #expect(report.outcome == .finished)
        #expect(seen.withLock { $0 } == ["child 2", "after 3"])
        #expect(report.records[1].insertedBy == .step(1) && report.records[2].prerequisites == [2])
    }

    @Test("S3: a running step's refused edit throws in that step, with rank 0's message", arguments: [1, 2])
    func refusedEditInStep(ranks: Int) throws {
        var h = Harness(threads: 1, ranks: ranks)
        let messages = Mutex<[String]>([])
        h.functions = ["s": { step in
            do {
                try step.insertFunctionStep("s", prerequisites: [99])
            } catch {
                messages.withLock { $0.append(String(describing: error)) }
            }
        }]
        // One step per rank: on rank 1 the refusal comes back over the wire.
        let report = try h.run { steps in for _ in 0..<ranks { try steps.insertFunctionStep("s", prerequisites: []) } }
        #expect(report.outcome == .finished && Set(report.records.compactMap(\.rank)) == Set(0..<ranks))
        let seen = messages.withLock { $0 }
        #expect(seen.count == ranks && seen.allSatisfy { $0.contains("step 99 does not exist") }, "\(seen)")
    }

    @Test("S4: a waiting step runs only once a step releases it, after the prerequisites added to it", arguments: [1, 2])
    func releasedByStep(ranks: Int) throws {
        let iv = Intervals()
        var h = Harness(threads: 4, ranks: ranks)
        let close = 2
        h.functions = [
            "work": EngineTests.sleep(iv),
            "close": { s in iv.record(s) {} },
            "fanout": { step in
                var ids: [StepID] = []
                for _ in 0..<3 { ids.append(try step.insertFunctionStep("work", prerequisites: [])) }
                try step.addPrerequisites(to: close, ids)
                try step.release(close)
            },
        ]
        let report = try h.run { steps in
            try steps.insertFunctionStep("fanout")
            #expect(try steps.insertFunctionStep("close", wait: true) == close)
        }
        #expect(report.outcome == .finished)
        let closeStart = try #require(iv.of(close)).start
        for id in 3...5 { #expect(try #require(iv.of(id)).end <= closeStart) }
    }

    @Test("S4: the stepsCheck hook releases a waiting step", arguments: [1, 2])
    func releasedByHook(ranks: Int) throws {
        let calls = Mutex(0)
        var h = Harness(threads: 1, ranks: ranks)
        h.functions = ["s": { _ in }]
        h.hook = { run in
            let n = calls.withLock { $0 += 1; return $0 }
            if n == 3 {
                try run.insertFunctionStep("s", prerequisites: [])
                try run.release(1)
            }
        }
        let report = try h.run { try $0.insertFunctionStep("s", wait: true) }
        #expect(report.outcome == .finished)
        #expect(calls.withLock { $0 } >= 3)
        #expect(report.records.map(\.status) == [.finished, .finished])
        #expect(report.records[1].insertedBy == .stepsCheck)
    }

    @Test("S4: with no hook, a run whose waiting step is never released ends stalled, naming it", arguments: [1, 2])
    func stalled(ranks: Int) throws {
        var h = Harness(threads: 2, ranks: ranks)
        h.functions = ["s": { _ in }]
        let report = try h.run { steps in
            try steps.insertFunctionStep("s")
            try steps.insertFunctionStep("s", wait: true)
            try steps.insertFunctionStep("s")
        }
        #expect(report.outcome == .stalled(waiting: [2], blocked: [3]))
        #expect(report.exitCode == 1)
        let text = RunSummary.text(report, protocolName: "T", runDirectory: URL(fileURLWithPath: "/tmp"))
        #expect(text.contains("STALLED") && text.contains("2 's'"))
    }

    @Test("S4: a hook that declares none (the default stepsCheck) does not keep a stalled run alive")
    func defaultHookIsNoHook() throws {
        struct P: StepProtocol {
            init(params: NoParams) {}
            static let functions: StepFunctions<P> = ["s": { _, _ in }]
            mutating func insertAllSteps(_ steps: StepInserter) throws { try steps.insertFunctionStep("s", wait: true) }
        }
        let dir = Executables.temporaryFolder("nohook")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(P(), settings: RunSettings(runDirectory: dir, stepsCheckInterval: .milliseconds(5)))
        #expect(report.outcome == .stalled(waiting: [1], blocked: []))
    }

    @Test("S5: a step with threads: k holds k slots; at most T slots are busy at once")
    func threadsPerStep() throws {
        let engine = Self.embedded(threads: 4, ["s": { _ in }])
        engine.durations = ["s": .seconds(1)]
        for _ in 0..<6 { try engine.steps.insertFunctionStep("s", prerequisites: [], threads: 2) }
        #expect(try engine.runToEnd().outcome == .finished)
        #expect(engine.startedTogether == [[1, 2], [3, 4], [5, 6]], "two 2-slot steps fill 4 slots; the next two wait for them")
        #expect(engine.peakRunning == 2 && engine.peakSlotsBusy == 4)
    }

    @Test("S5: on worker threads too, steps of threads: k never hold more than T slots at once")
    func threadsPerStepOnWorkers() throws {
        // Only the bound: how many overlap on real threads depends on how the machine schedules them.
        let iv = Intervals()
        var h = Harness(threads: 4)
        h.functions = ["s": { s in iv.record(s) { Thread.sleep(forTimeInterval: 0.01) } }]
        let report = try h.run { steps in
            for _ in 0..<6 { try steps.insertFunctionStep("s", prerequisites: [], threads: 2) }
        }
        #expect(report.outcome == .finished)
        #expect(iv.peakConcurrency <= 2 && iv.all.count == 6)
    }

    @Test("S5: serial mode runs one step at a time in id order, whatever the prerequisites", arguments: [1, 2])
    func serial(ranks: Int) throws {
        let iv = Intervals()
        var h = Harness(threads: 4, ranks: ranks, mode: .serial)
        h.functions = ["s": { s in iv.record(s) { Thread.sleep(forTimeInterval: 0.005) } }]
        let report = try h.run { steps in
            for _ in 0..<8 { try steps.insertFunctionStep("s", prerequisites: []) }
        }
        #expect(report.outcome == .finished)
        #expect(iv.peakConcurrency == 1)
        #expect(iv.order == Array(1...8))
    }

    @Test("S6: with one slot, independent steps run in ascending id order")
    func idOrder() throws {
        let iv = Intervals()
        var h = Harness(threads: 1)
        h.functions = ["s": { s in iv.record(s) {} }]
        _ = try h.run { steps in for _ in 0..<20 { try steps.insertFunctionStep("s", prerequisites: []) } }
        #expect(iv.order == Array(1...20))
    }

    @Test("S7: by default a failure stops new launches; running steps finish and are recorded", arguments: [1, 2])
    func failureStops(ranks: Int) throws {
        // No sleeps: 'fail' throws once 'slow' has started, and 'slow' ends only once rank 0 has
        // recorded the failure, so the failure always comes while 'slow' runs.
        let config = SchedulerConfig(ranks: ranks, threadsPerRank: 2)
        let state = SchedulerState(config)
        let started = Mutex(Set<StepID>())
        let slowStarted = DispatchSemaphore(value: 0)
        let executor = StepExecutor(functions: [
            "fail": { s in
                started.withLock { _ = $0.insert(s.id) }
                #expect(slowStarted.wait(timeout: .now() + 60) == .success)
                throw Boom()
            },
            "slow": { s in
                started.withLock { _ = $0.insert(s.id) }
                slowStarted.signal()
                #expect(Background.waitUntil { state.withScheduler { $0.graph.status(1) == .failed } }, "rank 0 recorded step 1 failed")
            },
            "later": { s in started.withLock { _ = $0.insert(s.id) } },
        ])
        let steps = StepInserter(.protocolSteps, editor: state.editor, functionNames: executor.functionNames)
        try steps.insertFunctionStep("fail", prerequisites: [])
        try steps.insertFunctionStep("slow", prerequisites: [])
        try steps.insertFunctionStep("later", prerequisites: [1, 2])
        try steps.insertFunctionStep("later", prerequisites: [2])
        let dir = Executables.temporaryFolder("failure-stops")
        defer { try? FileManager.default.removeItem(at: dir) }
        let transport = InMemoryRanks.start(ranks: ranks, threads: 2, executor: executor, runDirectory: dir)
        let report = Coordinator(state: state, transport: transport, functionNames: executor.functionNames).run()
        #expect(report.outcome == .failed && report.exitCode == 1)
        #expect(report.records.map(\.status) == [.failed, .finished, .new, .new], "step 4's prerequisite finished after the failure: it never started")
        #expect(started.withLock { $0 } == [1, 2])
        #expect(report.records[0].error == "boom")
        #expect(report.records[1].end != nil, "the running step's end was recorded")
        let text = RunSummary.text(report, protocolName: "T", runDirectory: dir)
        #expect(text.contains("failed step 1 'fail'") && text.contains("boom") && text.contains("step-1.log"))
    }

    @Test("S7: on the embedded engine a failure stops launches at the moment of its result, whatever runs beside it", arguments: [1, 2])
    func failureStopsAtItsResult(ranks: Int) throws {
        let engine = Self.embedded(threads: 2, ranks: ranks, ["fail": { _ in throw Boom() }, "slow": { _ in }, "later": { _ in }])
        engine.durations = ["fail": .seconds(1), "slow": .seconds(10)]
        try engine.steps.insertFunctionStep("fail", prerequisites: [])
        try engine.steps.insertFunctionStep("slow", prerequisites: [])
        try engine.steps.insertFunctionStep("later", prerequisites: [1, 2])
        try engine.steps.insertFunctionStep("later", prerequisites: [2])
        let report = try engine.runToEnd()
        #expect(report.outcome == .failed)
        #expect(engine.startOrder == [1, 2] && report.records.map(\.status) == [.failed, .finished, .new, .new])
        #expect(report.records[0].end == 1 && report.records[1].end == 10, "step 2 ran to its end, 9 s after the failure")
    }

    @Test("S7: --keep-going runs what does not depend on the failure; dependents end skipped", arguments: [1, 2])
    func keepGoing(ranks: Int) throws {
        var h = Harness(threads: 2, ranks: ranks, policy: .keepGoing)
        h.functions = ["fail": { _ in throw Boom() }, "ok": { _ in }]
        let report = try h.run { steps in
            try steps.insertFunctionStep("fail", prerequisites: [])
            try steps.insertFunctionStep("ok")
            try steps.insertFunctionStep("ok")
            try steps.insertFunctionStep("ok", prerequisites: [])
            try steps.insertFunctionStep("ok")
        }
        #expect(report.outcome == .failed)
        #expect(report.records.map(\.status) == [.failed, .skipped, .skipped, .finished, .finished])
    }

    @Test("S7: retries: a step that fails twice then succeeds finishes on its third attempt", arguments: [1, 2])
    func retries(ranks: Int) throws {
        var h = Harness(threads: 1, ranks: ranks)
        let attempts = Mutex<[Int]>([])
        h.functions = ["flaky": { s in
            attempts.withLock { $0.append(s.attempt) }
            if s.attempt < 3 { throw Boom() }
        }]
        let ok = try h.run { try $0.insertFunctionStep("flaky", retries: 2) }
        #expect(ok.outcome == .finished && ok.records[0].attempts == 3)
        #expect(attempts.withLock { $0 } == [1, 2, 3])
        let short = try h.run { try $0.insertFunctionStep("flaky", retries: 0) }
        #expect(short.outcome == .failed && short.records[0].attempts == 1)
    }

    @Test("S5: an impossible request is an error at insertion, from a running step too", arguments: [1, 2])
    func impossibleThreads(ranks: Int) throws {
        var h = Harness(threads: 2, ranks: ranks)
        let message = Mutex<String?>(nil)
        h.functions = ["s": { step in
            do { try step.insertFunctionStep("s", threads: 3) } catch { message.withLock { $0 = "\(error)" } }
        }]
        #expect(throws: StepGraphError.self) { try h.run { try $0.insertFunctionStep("s", threads: 5) } }
        let report = try h.run { try $0.insertFunctionStep("s") }
        #expect(report.outcome == .finished)
        #expect(message.withLock { $0 }?.contains("threads: 3") == true)
    }

    @Test("S11: a step logs to logs/step-<id>.log and the record points at it")
    func stepLog() throws {
        struct P: StepProtocol {
            init(params: NoParams) {}
            static let functions: StepFunctions<P> = ["s": { _, step in step.logger.info("hello from \(step.id)") }]
            mutating func insertAllSteps(_ steps: StepInserter) throws { try steps.insertFunctionStep("s") }
        }
        let dir = Executables.temporaryFolder("log")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(P(), settings: RunSettings(runDirectory: dir))
        let path = try #require(report.records[0].logPath)
        #expect(path == dir.appendingPathComponent("logs/step-1.log").path)
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("hello from 1"))
        #expect(report.records[0].rank == 0 && report.records[0].slot == 0)
    }
}
