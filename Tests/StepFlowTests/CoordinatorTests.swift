import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// A transport that answers the coordinator with a script instead of ranks.
final class ScriptedTransport: CoordinatorTransport {
    let rankCount: Int
    private let script: Mutex<[[RankEvent]]>
    let assigned = Mutex<[(StepID, Int)]>([])
    let aborted = Atomic<Bool>(false)

    init(ranks: Int, script: [[RankEvent]]) {
        rankCount = ranks
        self.script = Mutex(script)
    }

    func assign(_ steps: [StepAssignment], to rank: Int) { assigned.withLock { $0 += steps.map { ($0.id, rank) } } }
    func takeBackUnstarted() {}
    func takeBack(_ steps: [StepID], from rank: Int) {}
    func checkAlive(_ ranks: [Int]) {}
    let silent = Mutex<[Int]>([])
    func silentRanks(longerThan timeout: Duration) -> [Int] { silent.withLock { $0 } }
    func host(of rank: Int) -> String? { "node\(rank)" }
    func reply(_ result: EditResult, to address: ReplyAddress) {}
    private let emptyCalls = Atomic<Int>(0)
    /// Waits 10 ms a call once the script is spent, as ranks that send nothing would (then time passes).
    let waitWhenIdle = Atomic<Bool>(false)

    /// The next scripted events; once the script is spent and the coordinator still waits, the run
    /// is ended as broken, so a wrong script fails the test instead of hanging it.
    func nextEvents(timeout: Duration) -> [RankEvent] {
        if let next = script.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return next }
        if waitWhenIdle.load(ordering: .relaxed) { usleep(10_000) }
        if emptyCalls.add(1, ordering: .relaxed).newValue > 1000 { return [.broken(rank: nil, message: "the test script ran out")] }
        return []
    }
    /// What happened, in order: "sync" (the journal committed), "abort", "shutdown".
    let events = Mutex<[String]>([])
    func shutdown(within limit: Duration?) -> Bool { events.withLock { $0.append("shutdown") }; return true }
    func abort(within limit: Duration) {
        events.withLock { $0.append("abort") }
        aborted.store(true, ordering: .relaxed)
    }
}

/// A journal that commits nothing and writes down, in the transport's list, each time it is synced.
final class SyncRecordingJournal: RunJournal {
    let transport: ScriptedTransport
    init(_ transport: ScriptedTransport) { self.transport = transport }
    func record(_ steps: [StepRecord]) {}
    func record(pulling changes: @escaping ChangeSource) { changes { _ in } }
    func sync() -> String? {
        transport.events.withLock { $0.append("sync") }
        return nil
    }
}

@Suite(.timeLimit(.minutes(1))) struct CoordinatorTests {
    /// Two steps, each sent out at once (one per rank, or both to a rank of two slots); a script that
    /// leaves one unanswered would spin forever, so every script ends them all.
    func run(ranks: Int, _ script: [[RankEvent]]) throws -> (RunReport, ScriptedTransport) {
        let state = SchedulerState(SchedulerConfig(ranks: ranks, threadsPerRank: 3 - ranks))
        try state.withScheduler { s in
            for _ in 0..<2 { try s.insert(StepSpec(function: "f"), prerequisites: [], insertedBy: .protocolSteps) }
        }
        let transport = ScriptedTransport(ranks: ranks, script: script)
        return (Coordinator(state: state, transport: transport, functionNames: ["f"]).run(), transport)
    }

    @Test("A rank that reports a step rank 0 never created ends the run failed, naming the rank; nothing traps")
    func unknownStep() throws {
        let (report, transport) = try run(ranks: 2, [[.message(from: 1, .ended(StepOutcome(id: 99, rank: 1, slot: 0, report: .finished, start: 1, end: 2, logPath: nil)))]])
        #expect(report.outcome == .failed && report.exitCode == 1)
        #expect(report.hookError?.contains("rank 1 reported ended step 99, which rank 0 never created") == true, "\(report.hookError ?? "")")
        let aborted = transport.aborted.load(ordering: .relaxed)
        #expect(aborted, "the other ranks are stopped")
    }

    @Test("A failed rank (silent past --rank-timeout, or sending nonsense): rank 0 commits before it tells the ranks, and the run still ends")
    func commitBeforeTellingRanks() throws {
        for script: [[RankEvent]] in [[[.broken(rank: 1, message: "rank 1 sent nonsense")]], []] {
            let state = SchedulerState(SchedulerConfig(ranks: 2, threadsPerRank: 1))
            try state.withScheduler { s in
                for _ in 0..<2 { try s.insert(StepSpec(function: "f"), prerequisites: [], insertedBy: .protocolSteps) }
            }
            let transport = ScriptedTransport(ranks: 2, script: script)
            // The empty script: rank 1 is silent from the start.
            if script.isEmpty {
                transport.silent.withLock { $0 = [1] }
                transport.waitWhenIdle.store(true, ordering: .relaxed)
            }
            let report = Coordinator(state: state, transport: transport, functionNames: ["f"], journal: SyncRecordingJournal(transport),
                                     rankTimeout: .seconds(3)).run()
            #expect(report.outcome == .failed && report.ranksAbandoned)
            #expect(report.hookError?.contains(script.isEmpty ? "--rank-timeout" : "nonsense") == true, "\(report.hookError ?? "")")
            let events = transport.events.withLock { $0 }
            #expect(events.first == "sync" && events.contains("abort") && !events.contains("shutdown"), "\(events)")
        }
    }

    @Test("A rank that reports a step rank 0 gave to another rank ends the run failed, naming both")
    func wrongRank() throws {
        // Step 1 goes to rank 0, step 2 to rank 1 (ranks take steps in turn).
        let (report, _) = try run(ranks: 2, [[.message(from: 1, .started(StepStart(id: 1, rank: 1, slot: 0, start: 1)))]])
        #expect(report.outcome == .failed)
        #expect(report.hookError?.contains("rank 1 reported started step 1, which rank 0 gave to rank 0") == true, "\(report.hookError ?? "")")
    }

    @Test("A malformed message from a rank ends the run failed with the decoder's reason")
    func brokenMessage() throws {
        let (report, _) = try run(ranks: 2, [[.broken(rank: 1, message: "rank 1 sent a message rank 0 cannot read (length past the end)")]])
        #expect(report.outcome == .failed && report.hookError?.contains("cannot read") == true)
    }

    @Test("A late report for a step no longer running (after a signal or a take-back) is ignored")
    func lateReport() throws {
        let (report, _) = try run(ranks: 1, [
            [.message(from: 0, .ended(StepOutcome(id: 1, rank: 0, slot: 0, report: .finished, start: 1, end: 2, logPath: nil))),
             .message(from: 0, .ended(StepOutcome(id: 2, rank: 0, slot: 0, report: .finished, start: 1, end: 2, logPath: nil)))],
            [.message(from: 0, .ended(StepOutcome(id: 1, rank: 0, slot: 0, report: .failed(error: "late"), start: 1, end: 2, logPath: nil)))],
        ])
        #expect(report.outcome == .finished && report.records.allSatisfy { $0.status == .finished })
    }
}
