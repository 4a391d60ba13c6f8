import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// The embedded engine: the scheduler driven round by round on a manual clock, steps inline. What
/// the engine tests over worker threads could only show by sleeping and racing, shown exactly.
@Suite struct EmbeddedEngineTests {
    func engine(ranks: Int = 1, threads: Int = 1, gpus: Int = 0, prefetch: Int = 0, mode: StepsExecutionMode = .parallel,
                policy: FailurePolicy = .stop, functions: [String: @Sendable (StepContext) throws -> Void],
                hook: (@Sendable (StepsCheck) throws -> Void)? = nil, hookInterval: Duration = .seconds(1)) -> EmbeddedEngine {
        EmbeddedEngine(config: SchedulerConfig(ranks: ranks, threadsPerRank: threads, gpusPerRank: gpus, prefetch: prefetch,
                                               mode: mode, failurePolicy: policy),
                       functions: functions, hook: hook, hookInterval: hookInterval)
    }

    @Test("Nothing runs until advance(); a round starts what fits, the next reports it and starts what it made ready")
    func rounds() throws {
        let e = engine(threads: 2, functions: ["s": { _ in }])
        try e.steps.insertFunctionStep("s")
        try e.steps.insertFunctionStep("s", prerequisites: [])
        try e.steps.insertFunctionStep("s")
        #expect(e.startOrder.isEmpty && e.status(1) == .new)
        #expect(e.advance() == [1, 2], "two slots: 1 and 2 start, 3 waits for 2")
        #expect(e.runningSteps == [1, 2])
        #expect(e.advance() == [3], "1 and 2 took no time: reported now, and 3 starts in the same instant")
        #expect(e.advance().isEmpty && e.outcome == .finished)
        #expect(e.startedTogether == [[1, 2], [3]] && e.peakRunning == 2 && e.now == 0)
    }

    @Test("A step's simulated duration keeps it running across rounds; advance(by:) stops at each end on the way")
    func durations() throws {
        let e = engine(threads: 2, functions: ["long": { _ in }, "short": { _ in }])
        e.durations = ["long": .seconds(10), "short": .seconds(3)]
        try e.steps.insertFunctionStep("long", prerequisites: [])
        try e.steps.insertFunctionStep("short", prerequisites: [])
        for _ in 0..<2 { try e.steps.insertFunctionStep("short") }
        e.advance()
        #expect(e.runningSteps == [1, 2])
        e.advance(by: .seconds(7))
        #expect(e.now == 7 && e.startOrder == [1, 2, 3, 4] && e.runningSteps == [1, 4])
        #expect(e.run(of: 3)?.start == 3 && e.run(of: 4)?.start == 6, "each short step started the moment the one before ended")
        let report = try e.runToEnd()
        #expect(report.outcome == .finished && e.now == 10)
        #expect(report.records.map(\.start) == [0, 0, 3, 6] && report.records.map(\.end) == [10, 3, 6, 9])
        #expect(e.ranAtOnce([1, 4]) && !e.ranAtOnce([2, 3, 4]))
    }

    @Test("A step's graph edits apply to the scheduler as it makes them: its children start while it still runs")
    func editsApplyAtOnce() throws {
        let ids = Mutex<[StepID]>([])
        let e = engine(threads: 2, functions: [
            "parent": { step in
                let child = try step.insertFunctionStep("child", prerequisites: [])
                ids.withLock { $0.append(child) }
                try step.insertFunctionStep("child", prerequisites: [child])
            },
            "child": { _ in },
        ])
        e.durations = ["parent": .seconds(5)]
        try e.steps.insertFunctionStep("parent")
        #expect(e.advance() == [1])
        #expect(ids.withLock { $0 } == [2] && e.status(2) == .new && e.status(3) == .new)
        #expect(e.advance() == [2], "the child starts in the next round, its parent still running")
        #expect(e.advance() == [3] && e.runningSteps == [1, 3])
        #expect(e.advance().isEmpty && e.runningSteps == [1], "both children ended while the parent runs")
        #expect(try e.runToEnd().outcome == .finished)
    }

    @Test("A refused edit throws in the step with rank 0's message; an unknown function throws at once")
    func refusedEdit() throws {
        let said = Mutex<[String]>([])
        let e = engine(functions: ["s": { step in
            do { try step.insertFunctionStep("s", prerequisites: [99]) } catch { said.withLock { $0.append("\(error)") } }
            do { try step.insertFunctionStep("nope") } catch { said.withLock { $0.append("\(error)") } }
        }])
        try e.steps.insertFunctionStep("s")
        #expect(try e.runToEnd().outcome == .finished)
        let messages = said.withLock { $0 }
        #expect(messages.count == 2 && messages[0].contains("step 99 does not exist") && messages[1].contains("nope"), "\(messages)")
    }

    @Test("Steps sent ahead (prefetch) wait in their rank's queue; a prerequisite added to one takes it back first (S3)")
    func prefetchAndTakeBack() throws {
        let e = engine(threads: 1, prefetch: 1, functions: [
            "adder": { step in
                let extra = try step.insertFunctionStep("s", prerequisites: [])
                try step.addPrerequisites(to: 2, [extra])
            },
            "s": { _ in },
        ])
        try e.steps.insertFunctionStep("adder")
        try e.steps.insertFunctionStep("s", prerequisites: [])
        #expect(e.advance() == [1], "step 2 was sent ahead behind step 1, then taken back by step 1's edit")
        #expect(e.status(2) == .new && e.records[1].prerequisites == [3])
        #expect(try e.runToEnd().outcome == .finished)
        #expect(e.startOrder == [1, 3, 2])
    }

    @Test("The stepsCheck hook runs on the manual clock, every interval; a stalled run waits for it")
    func hookOnTheClock() throws {
        let e = engine(functions: ["s": { _ in }], hook: { run in
            if run.status(of: 1) == .waiting, run.status(of: 2) == nil { try run.insertFunctionStep("s", prerequisites: []) }
        }, hookInterval: .seconds(5))
        try e.steps.insertFunctionStep("s", wait: true)
        e.advance(by: .seconds(4))
        #expect(e.hookCalls == 0 && e.outcome == nil, "stalled, but a live hook may still release step 1")
        e.advance(by: .seconds(1))
        #expect(e.hookCalls == 1 && e.startOrder == [2] && e.now == 5)
        e.advance(by: .seconds(12))
        #expect(e.hookCalls == 3, "at 10 and 15")
        #expect(e.outcome == nil)
        #expect(throws: EmbeddedEngine.NotEnded.self) { try e.runToEnd(maxRounds: 50) }
    }

    @Test("S7: a failure stops new launches at its result; steps running then finish and are recorded")
    func failureStops() throws {
        let e = engine(ranks: 2, threads: 1, functions: ["fail": { _ in throw Boom() }, "slow": { _ in }, "later": { _ in }])
        e.durations = ["fail": .seconds(1), "slow": .seconds(10)]
        try e.steps.insertFunctionStep("fail", prerequisites: [])
        try e.steps.insertFunctionStep("slow", prerequisites: [])
        try e.steps.insertFunctionStep("later", prerequisites: [2])
        e.advance(by: .seconds(1))
        #expect(e.status(1) == .failed && e.runningSteps == [2])
        let report = try e.runToEnd()
        #expect(report.outcome == .failed && report.records.map(\.status) == [.failed, .finished, .new])
        #expect(report.records[1].end == 10 && e.startOrder == [1, 2])
    }

    @Test("--stop-before on the manual clock: a step expected to outlast the deadline waits while shorter ones start; after it nothing starts; running steps finish; stopped for the time limit")
    func launchDeadline() throws {
        let e = engine(threads: 2, functions: ["s": { _ in }, "overrun": { _ in }])
        e.durations = ["overrun": .seconds(50)]
        e.setLaunchDeadline(100, why: "the allocation ends at 103 (--stop-before 3s)")
        for _ in 0..<5 { try e.steps.insertFunctionStep("s", prerequisites: [], expected: .seconds(30)) }
        try e.steps.insertFunctionStep("overrun", prerequisites: [], expected: .seconds(30))
        for _ in 0..<2 { try e.steps.insertFunctionStep("s", prerequisites: [], expected: .seconds(30)) }
        e.advance(to: 60)
        #expect(e.startedTogether == [[1, 2], [3, 4], [5, 6]], "at 0, 30 and 60: each expected to end by 100")
        e.advance(to: 99)
        #expect(e.startOrder.count == 6 && e.runningSteps == [6], "at 90 a 30 s step would end at 120: 7 and 8 wait")
        #expect(e.status(7) == .new && e.outcome == nil)
        e.advance(to: 100)
        #expect(e.report.hookError?.contains("2 step(s) left") == true && e.report.hookError?.contains("103") == true, "\(e.report.hookError ?? "")")
        let report = try e.runToEnd()
        #expect(report.outcome == .stoppedForTimeLimit && report.exitCode == 143)
        #expect(e.now == 110 && e.run(of: 6)?.end == 110, "the step running at the deadline finished")
        #expect(report.records.map(\.status) == Array(repeating: .finished, count: 6) + [.new, .new])
    }

    @Test("--stop-before: a ready step that fits still starts when the steps that just ended leave nothing running")
    func launchDeadlineShortStepAfterHeldOne() throws {
        let e = engine(threads: 2, functions: ["s": { _ in }])
        e.setLaunchDeadline(100)
        try e.steps.insertFunctionStep("s", prerequisites: [], expected: .seconds(3600))
        try e.steps.insertFunctionStep("s", prerequisites: [], expected: .seconds(30))
        try e.steps.insertFunctionStep("s", prerequisites: [], expected: .seconds(30))
        try e.steps.insertFunctionStep("s", prerequisites: [], expected: .seconds(5))
        e.advance(to: 30)
        // At 30 steps 2 and 3 end together and nothing runs: the check that follows the dispatch sees
        // that step 4 (5 s) fitted and started, so the run goes on.
        #expect(e.startOrder == [2, 3, 4])
        let report = try e.runToEnd()
        #expect(report.outcome == .stoppedForTimeLimit && report.records.map(\.status) == [.new, .finished, .finished, .finished])
    }

    @Test("--stop-before: with nothing running and only steps too long for the time left, the run stops at once, not at the deadline")
    func launchDeadlineOnlyTooLong() throws {
        let e = engine(threads: 1, functions: ["s": { _ in }])
        e.setLaunchDeadline(50)
        try e.steps.insertFunctionStep("s", expected: .seconds(10))
        try e.steps.insertFunctionStep("s", expected: .seconds(60))
        let report = try e.runToEnd()
        #expect(report.outcome == .stoppedForTimeLimit && e.now == 10, "stopped when step 1 ended, 40 s before the deadline")
        #expect(report.records.map(\.status) == [.finished, .new])
        #expect(report.hookError?.contains("every step ready to start is expected to run past the launch deadline") == true)
    }

    @Test("A signal at a chosen moment aborts exactly the steps running then; steps sent ahead are new again")
    func signalAtAMoment() throws {
        let e = engine(threads: 2, prefetch: 1, functions: ["s": { _ in }])
        e.durations = ["s": .seconds(10)]
        for _ in 0..<5 { try e.steps.insertFunctionStep("s", prerequisites: []) }
        e.advance(by: .seconds(15))
        #expect(e.runningSteps == [3, 4] && e.status(5) == .running, "5 is sent ahead, waiting in the queue")
        e.signal(SIGTERM)
        #expect(e.outcome == .aborted(signal: SIGTERM))
        #expect(e.records.map(\.status) == [.finished, .finished, .aborted, .aborted, .new])
    }

    @Test("A protocol runs on the engine as on the coordinator: insertAllSteps, its hook and its mode")
    func protocolOnTheEngine() throws {
        struct P: StepProtocol {
            init(params: NoParams) {}
            static let functions: StepFunctions<P> = ["s": { _, _ in }]
            var stepsExecutionMode: StepsExecutionMode { .serial }
            var stepsCheckInterval: Duration { .seconds(2) }
            mutating func insertAllSteps(_ steps: StepInserter) throws {
                for _ in 0..<3 { try steps.insertFunctionStep("s", prerequisites: []) }
                try steps.insertFunctionStep("s", prerequisites: [], wait: true)
            }
            func stepsCheck(_ run: StepsCheck) throws { if run.status(of: 3) == .finished { try run.release(4) } }
        }
        let e = try EmbeddedEngine(P(), config: SchedulerConfig(threadsPerRank: 4))
        e.durations = ["s": .seconds(1)]
        let report = try e.runToEnd()
        #expect(report.outcome == .finished && e.startOrder == [1, 2, 3, 4] && e.peakRunning == 1)
        #expect(e.run(of: 4)?.start == 4, "released by the hook's call at 4 s, the first after step 3 ended at 3 s")
    }
}
