import Foundation
import Testing
@testable import StepFlow

/// What used to differ between one process and `mpirun`: both now run `RankLink` and `WorkerRuntime`
/// over a messenger, with steps sent ahead. These run the scenarios of the mpirun tests in one process.
@Suite struct SameRuntimeTests {
    /// StepFlowProbe's `takeback` scenario, in one process and under mpirun: steps go to the ranks in turn, so step 4 waits on rank 1 behind the sleeper 2 when
    /// step 1, on rank 0, adds a new step 7 to its prerequisites.
    @Test("S3, the same in one process and under mpirun: addPrerequisites to a step sent ahead to a busy rank but not started takes it back; it then waits for the new prerequisite")
    func addPrerequisitesToSentAhead() throws {
        let intervals = Intervals()
        var harness = Harness()
        harness.ranks = 2
        harness.threads = 1
        harness.functions = [
            "adder": { step in
                try intervals.record(step) {
                    usleep(100_000)
                    let extra = try step.insertFunctionStep("work", prerequisites: [])
                    try step.addPrerequisites(to: 4, [extra])
                }
            },
            "sleeper": { step in intervals.record(step) { usleep(1_000_000) } },
            "work": { step in intervals.record(step) {} },
        ]
        let report = try harness.run { steps in
            try steps.insertFunctionStep("adder", prerequisites: [])
            try steps.insertFunctionStep("sleeper", prerequisites: [])
            try steps.insertFunctionStep("work", prerequisites: [])
            for _ in 0..<3 { try steps.insertFunctionStep("work", prerequisites: []) }
        }
        #expect(report.outcome == .finished, "\(report.hookError ?? "")")
        #expect(report.records.count == 7 && Set(report.records[3].prerequisites) == [7])
        let target = try #require(intervals.of(4)), extra = try #require(intervals.of(7))
        #expect(extra.end <= target.start, "in one process, step 4 waited for the prerequisite added while it was queued on rank 1")

        // The same scenario under mpirun gives the same graph and the same order.
        let dir = Executables.temporaryFolder("takeback")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let result = try MPILaunch.run(np: 2, "StepFlowProbe", ["--run-dir", run.path, "--scenario", "takeback", "--threads", "1"],
                                       environment: ["PROBE_RUN_DIR": run.path])
        #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
        let stored = try #require(Background.stored(run))
        #expect(stored.steps.map(\.prerequisites) == report.records.map(\.prerequisites), "the graph is the same in both")
        #expect(stored.steps.allSatisfy { $0.status == .finished })
        let runs = Dictionary(grouping: try ProbeRecords(runDirectory: run).runs, by: \.id)
        let mpiTarget = try #require(runs[4]?.first), mpiExtra = try #require(runs[7]?.first)
        #expect(mpiExtra.end <= mpiTarget.start, "under mpirun, step 4 waited for the prerequisite added while it was queued on rank 1")
    }

    @Test("--stop-before: a step sent ahead whose start-by moment passed while it waited in the rank's queue is handed back unstarted, not run")
    func startByPassedInTheQueue() throws {
        let ran = Intervals()
        let reports = EventQueue<FromRank>()
        let dir = Executables.temporaryFolder("start-by")
        defer { try? FileManager.default.removeItem(at: dir) }
        let pool = WorkerPool(rank: 0, threads: 1, executor: StepExecutor(functions: ["work": { step in ran.record(step) {} }]),
                              runDirectory: dir, channel: TokenRequestChannel(replies: ReplyTable(), push: { _ in }),
                              report: { reports.push($0) })
        let now = Date().timeIntervalSince1970
        pool.submit([StepAssignment(id: 1, function: "work", args: [], threads: 1, gpus: [], attempt: 1, startBy: now - 1),
                     StepAssignment(id: 2, function: "work", args: [], threads: 1, gpus: [], attempt: 1, startBy: now + 600),
                     StepAssignment(id: 3, function: "work", args: [], threads: 1, gpus: [], attempt: 1)])
        pool.shutdown()
        let ended = reports.drain().compactMap { message -> (StepID, Scheduler.Report)? in
            if case .ended(let outcome) = message { return (outcome.id, outcome.report) }
            return nil
        }
        #expect(ended.map(\.0) == [1, 2, 3] && ended[0].1 == .notStarted && ended[1].1 == .finished && ended[2].1 == .finished)
        #expect(ran.all.map(\.step).sorted() == [2, 3], "the late step never ran")
    }
}
