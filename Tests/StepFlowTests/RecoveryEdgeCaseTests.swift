import Foundation
import GRDB
import Synchronization
import Testing
@testable import StepFlow

/// Edge cases of recovery (S8, S9, S12) found in review: each was a defect, each test failed before
/// its fix.
@Suite(.serialized, .timeLimit(.minutes(1))) struct RecoveryEdgeCaseTests {
    func rec(_ id: StepID, _ function: String, _ status: StepStatus = .finished, args: [StepValue] = [],
             prerequisites: [StepID] = [], added: [StepID] = [], by: Inserter = .protocolSteps, wait: Bool = false,
             releasedBy: Inserter? = nil) -> StepRecord {
        var r = StepRecord(id: id, spec: StepSpec(function: function, args: args, wait: wait), prerequisites: prerequisites + added,
                           insertedBy: by, status: status, insertPrerequisiteCount: prerequisites.count)
        r.releasedBy = releasedBy
        if status != .new && status != .waiting { r.start = 1; r.attempts = 1 }
        return r
    }
    func spec(_ f: String, _ args: [StepValue] = [], retries: Int = 0, wait: Bool = false) -> StepSpec {
        StepSpec(function: f, args: args, retries: retries, wait: wait)
    }

    // ContinuePlan: a prerequisite added at run time that names a *changed* protocol step is
    //    treated as gone; the step that had it runs again without it, i.e. before it.
    @Test("close must still wait for a changed protocol step it was given as a prerequisite at run time")
    func addedPrerequisiteOnChangedProtocolStep() throws {
        let previous = [rec(1, "work", args: [1]), rec(2, "spawn"),
                        rec(3, "close", added: [1], wait: true, releasedBy: .step(2))]
        let current = [rec(1, "work", .new, args: [2]), rec(2, "spawn", .new), rec(3, "close", .waiting, wait: true)]
        let plan = try ContinuePlan(current: current, previous: previous)
        #expect(plan.records[0].status == .new, "work changed: it runs again")
        #expect(plan.records[2].prerequisites.contains(1), "close lost its prerequisite on step 1: \(plan.records[2].prerequisites)")
        var g = StepGraph(restoring: plan.records, unconfirmed: plan.unconfirmed)
        #expect(g.takeReady() == 1)
        #expect(g.takeReady() != 3, "close was handed out while its prerequisite (step 1) is still running")
    }

    // ContinuePlan: a run-time step whose insert-time prerequisite is a changed protocol step is
    //    not restored, although its inserter stays finished and will not insert it again: it is lost.
    @Test("a child of a finished inserter that depends on a changed protocol step runs again (it is not lost)")
    func childOfKeptInserterLost() throws {
        let previous = [rec(1, "config", args: [1]), rec(2, "spawn"),
                        rec(3, "child", args: ["a"], by: .step(2)),
                        rec(4, "child", args: ["b"], prerequisites: [1], by: .step(2)),
                        rec(5, "child", args: ["c"], by: .step(2))]
        let current = [rec(1, "config", .new, args: [2]), rec(2, "spawn", .new)]
        let plan = try ContinuePlan(current: current, previous: previous)
        #expect(plan.records[1].status == .finished, "spawn stays finished: it will not insert 'child b' again")
        #expect(plan.records.contains { $0.spec.args == ["b"] }, "'child b' depends on the changed step 1 and must run again; it vanished (dropped=\(plan.dropped))")
    }

    // The write-behind leaves protocol steps unwritten until they change; a protocol step that is
    //    written because it was skipped (or released) names prerequisites that were never written.
    //    A crash then makes --continue refuse the run as inconsistent.
    @Test("after a kill, --continue can read what the run database held (skip under --keep-going)")
    func skippedStepNamesUnwrittenPrerequisite() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 2, failurePolicy: .keepGoing))
        func insertAll(_ s: inout Scheduler) throws {
            let slow = try s.insert(spec("slow"), prerequisites: [], insertedBy: .protocolSteps)
            let bad = try s.insert(spec("bad"), prerequisites: [], insertedBy: .protocolSteps)
            let after = try s.insert(spec("after"), prerequisites: [slow], insertedBy: .protocolSteps)
            _ = try s.insert(spec("join"), prerequisites: [bad, after], insertedBy: .protocolSteps)
        }
        try insertAll(&s)
        _ = s.takeChanged()                      // Coordinator.run: notYetWritten
        var db: [StepID: StepRecord] = [:]
        func flush() { for id in s.takeChanged() { db[id] = s.graph.record(id) } }   // handOffChanged
        _ = s.nextAssignments()                  // slow (1) and bad (2) start
        flush()
        s.stepEnded(2, .failed(error: "boom"))   // join (4) is skipped and written; after (3) is not
        flush()
        // killed here
        var fresh = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 2))
        try insertAll(&fresh)
        let previous = db.values.sorted { $0.id < $1.id }
        #expect(throws: Never.self) { try ContinuePlan(current: fresh.graph.records, previous: previous) }
    }

    @Test("same with a release from the hook of a step whose prerequisite has not started")
    func releasedStepNamesUnwrittenPrerequisite() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 1))
        func insertAll(_ s: inout Scheduler) throws {
            let a = try s.insert(spec("a"), prerequisites: [], insertedBy: .protocolSteps)
            let b = try s.insert(spec("b"), prerequisites: [a], insertedBy: .protocolSteps)
            _ = try s.insert(spec("close", wait: true), prerequisites: [b], insertedBy: .protocolSteps)
        }
        try insertAll(&s)
        _ = s.takeChanged()
        var db: [StepID: StepRecord] = [:]
        func flush() { for id in s.takeChanged() { db[id] = s.graph.record(id) } }
        _ = s.nextAssignments()
        try s.release(3, by: .stepsCheck)
        flush()
        var fresh = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 1))
        try insertAll(&fresh)
        #expect(throws: Never.self) { try ContinuePlan(current: fresh.graph.records, previous: db.values.sorted { $0.id < $1.id }) }
    }

    // drop() deletes a step's row but leaves other steps naming it (releasedBy, insertedBy of a
    //    running child): the database then holds references to rows it does not hold.
    @Test("a dropped step that had released a step: the run's records can still be continued")
    func droppedReleaserDangles() throws {
        var g = StepGraph()
        let spawn = try g.insert(spec("spawn", retries: 1), prerequisites: [], insertedBy: .protocolSteps)
        let close = try g.insert(spec("close", wait: true), prerequisites: [], insertedBy: .protocolSteps)
        #expect(g.takeReady() == spawn)
        let child = try g.insert(spec("child", ["a"]), prerequisites: [], insertedBy: .step(spawn))
        #expect(g.takeReady() == child)
        try g.release(close, by: .step(child))
        g.finish(child)
        _ = g.fail(spawn, error: "transient")
        #expect(g.takeReady() == spawn)
        _ = try g.insert(spec("child", ["new-file"]), prerequisites: [], insertedBy: .step(spawn))  // differs: child dropped
        #expect(g.record(child).isDropped)
        let live = g.liveRecords
        let current = [rec(1, "spawn", .new), rec(2, "close", .waiting, wait: true)]
        #expect(throws: Never.self) { try ContinuePlan(current: current, previous: live) }
    }

    // A step recorded failed by the crash limit does not stop the run; its dependents can never
    //    run, the scheduler calls that 'stalled', and a protocol with a stepsCheck hook waits forever.
    @Test("crash limit + a stepsCheck hook: the continued run ends (failed) instead of waiting forever")
    func crashLimitWithHookHangs() throws {
        let previous = [rec(1, "killer", .running), rec(2, "after", .new, prerequisites: [1]), rec(3, "other", .new)]
        var p0 = previous[0]; p0.crashes = 2
        let plan = try ContinuePlan(current: [rec(1, "killer", .new), rec(2, "after", .new, prerequisites: [1]), rec(3, "other", .new)],
                                    previous: [p0, previous[1], previous[2]], crashLimit: 3)
        #expect(plan.records[0].status == .failed)
        let state = SchedulerState(SchedulerConfig(), restoring: plan.records, unconfirmed: plan.unconfirmed)
        let executor = StepExecutor(functions: ["killer": { _ in }, "after": { _ in }, "other": { _ in }])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("review-hook-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let transport = InMemoryRanks.start(ranks: 1, threads: 1, executor: executor, runDirectory: dir)
        let coordinator = Coordinator(state: state, transport: transport, functionNames: executor.functionNames,
                                      hook: { _ in /* a streaming hook that has nothing new */ }, hookInterval: .milliseconds(10))
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<RunOutcome?>(nil)
        Thread { let r = coordinator.run(); outcome.withLock { $0 = r.outcome }; done.signal() }.start()
        // Not a time limit: the run ends within milliseconds; 60 s only tells "never ends" from "ends".
        #expect(done.wait(timeout: .now() + 60) == .success, "the run never ended: only step 'after' is left, blocked behind a failed step")
        #expect(outcome.withLock { $0 } == .failed)
    }

    // A retried step's held inserts are never confirmed nor dropped when its last attempt fails.
    @Test("--keep-going, retries: a child inserted by a failed attempt is neither run nor dropped; the run stalls")
    func heldChildrenOfFinalFailure() throws {
        var g = StepGraph(skipDependentsOfFailures: true)
        let parent = try g.insert(spec("parent", retries: 1), prerequisites: [], insertedBy: .protocolSteps)
        #expect(g.takeReady() == parent)
        let child = try g.insert(spec("child"), prerequisites: [], insertedBy: .step(parent))
        _ = g.fail(parent, error: "attempt 1")
        #expect(g.takeReady() == parent)
        _ = g.fail(parent, error: "attempt 2, before inserting anything")
        #expect(g.status(parent) == .failed)
        // with retries: 0 the child would have run (it does not depend on its parent)
        #expect(g.isUnconfirmed(child) == false || g.record(child).isDropped,
                "child \(child) is \(g.status(child)) and unconfirmed forever: unfinished=\(g.unfinishedCount), ready=\(g.hasReady())")
    }

    // The ImportMovies shape: registers need a protocol 'calibrate' step; calibrate changes.
    @Test("calibrate changed: the registers that need it run again, and close waits for them")
    func registersLostAfterChangedCalibration() throws {
        let previous = [rec(1, "calibrate", args: [1]), rec(2, "download"),
                        rec(3, "close", prerequisites: [2], added: [4, 5], wait: true, releasedBy: .step(2)),
                        rec(4, "register", args: ["m1"], prerequisites: [1], by: .step(2)),
                        rec(5, "register", args: ["m2"], prerequisites: [1], by: .step(2))]
        let current = [rec(1, "calibrate", .new, args: [2]), rec(2, "download", .new),
                       rec(3, "close", .waiting, prerequisites: [2], wait: true)]
        let plan = try ContinuePlan(current: current, previous: previous)
        #expect(plan.records.filter { $0.spec.function == "register" }.count == 2, "registers depend on calibrate: they must run again, not vanish")
        var g = StepGraph(restoring: plan.records, unconfirmed: plan.unconfirmed)
        #expect(g.takeReady() == 1)
        #expect(g.takeReady() != 3, "close runs at once, beside calibrate, without any register")
    }

    @Test("a running child of a dropped step: the run's records can still be continued")
    func droppedInserterDangles() throws {
        var g = StepGraph()
        let spawn = try g.insert(spec("spawn", retries: 1), prerequisites: [], insertedBy: .protocolSteps)
        #expect(g.takeReady() == spawn)
        let child = try g.insert(spec("child", ["a"]), prerequisites: [], insertedBy: .step(spawn))
        #expect(g.takeReady() == child)
        let grandchild = try g.insert(spec("grandchild"), prerequisites: [], insertedBy: .step(child))
        g.finish(child)
        #expect(g.takeReady() == grandchild)     // running
        _ = g.fail(spawn, error: "transient")
        #expect(g.takeReady() == spawn)
        _ = try g.insert(spec("child", ["b"]), prerequisites: [], insertedBy: .step(spawn))
        #expect(g.record(child).isDropped && !g.record(grandchild).isDropped)
        g.finish(grandchild)
        #expect(throws: Never.self) { try ContinuePlan(current: [rec(1, "spawn", .new)], previous: g.liveRecords) }
    }

    /// A run database as schema 1 wrote it, holding `rows` (id, function, prerequisites, status, wait, inserter).
    static func v1Database(_ rows: [(Int, String, String, String, Int, Int?)]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("review-v1-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let q = try DatabaseQueue(path: RunStore.path(in: dir))
        let noArgs = Data(WireCodec.encode(arguments: []))
        try q.write { db in
            try db.execute(sql: """
                CREATE TABLE run (id INTEGER PRIMARY KEY CHECK (id = 1), protocol TEXT NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL,
                  threads INTEGER NOT NULL, mpi INTEGER NOT NULL, started REAL, ended REAL);
                CREATE TABLE step (id INTEGER PRIMARY KEY, function TEXT NOT NULL, args BLOB NOT NULL, prerequisites TEXT NOT NULL,
                  status TEXT NOT NULL, wait INTEGER NOT NULL, threads INTEGER NOT NULL, needs_gpu INTEGER NOT NULL,
                  retries INTEGER NOT NULL, inserter TEXT NOT NULL, inserted_by INTEGER, rank INTEGER, slot INTEGER,
                  attempts INTEGER NOT NULL, start REAL, "end" REAL, error TEXT, log TEXT);
                INSERT INTO run VALUES (1, 'P', '[]', 'running', 1, 1, 1, NULL);
                PRAGMA user_version = 1;
                """)
            for (id, f, pre, status, wait, by) in rows {
                try db.execute(sql: "INSERT INTO step VALUES (?, ?, ?, ?, ?, ?, 1, 0, 0, ?, ?, 0, 0, 1, 1, NULL, NULL, NULL)",
                               arguments: [id, f, noArgs, pre, status, wait, by == nil ? "protocol" : "step", by])
            }
        }
        try q.close()
        return dir
    }

    @Test("v1 run: close (its only prerequisite the finished download, released by it) is not released again")
    func v1ReleaseLost() throws {
        let dir = try Self.v1Database([(1, "download", "[]", "finished", 0, nil), (2, "close", "[1]", "aborted", 1, nil)])
        defer { try? FileManager.default.removeItem(at: dir) }
        let stored = try RunStore.read(runDirectory: dir)
        let plan = try ContinuePlan(current: [rec(1, "download", .new), rec(2, "close", .waiting, prerequisites: [1], wait: true)],
                                    previous: stored.steps, legacy: stored.schemaVersion < 2)
        #expect(plan.records[1].status == .new, "close was released in the recorded run by step 1, which stays finished: \(plan.records[1].status)")
    }

    @Test("v1 run: a protocol step with prerequisites added at run time counts as 'changed', loses them and runs before them")
    func v1AddedPrerequisitesCountAsChanged() throws {
        // download (finished) inserted register 3 (not run yet when the job died) and added it to merge.
        let dir = try Self.v1Database([(1, "download", "[]", "finished", 0, nil), (2, "merge", "[1,3]", "new", 0, nil),
                                  (3, "register", "[]", "new", 0, 1)])
        defer { try? FileManager.default.removeItem(at: dir) }
        let stored = try RunStore.read(runDirectory: dir)
        let plan = try ContinuePlan(current: [rec(1, "download", .new), rec(2, "merge", .new, prerequisites: [1])], previous: stored.steps,
                                    legacy: stored.schemaVersion < 2)
        #expect(plan.reasons[2] != .changed("prerequisites changed"), "merge did not change")
        var g = StepGraph(restoring: plan.records, unconfirmed: plan.unconfirmed)
        let first = g.takeReady()
        #expect(first == 3, "register (3) must run before merge (2), which depends on it; got \(String(describing: first))")
    }

    // --keep-going continue: restoring skips the dependents of a crash-limited step, but those
    //    changes are thrown away (openStore) and reopen writes the plan's 'new' instead.
    @Test("a step skipped while the continued graph is rebuilt is recorded skipped, not new")
    func skipAtRestoreNotRecorded() throws {
        var killer = rec(1, "killer", .running); killer.crashes = 2
        let plan = try ContinuePlan(current: [rec(1, "killer", .new), rec(2, "after", .new, prerequisites: [1])],
                                    previous: [killer, rec(2, "after", .new, prerequisites: [1])], crashLimit: 3)
        let state = SchedulerState(SchedulerConfig(failurePolicy: .keepGoing), restoring: plan.records, unconfirmed: plan.unconfirmed)
        // ProtocolRunner.openStore writes the graph as rebuilt.
        let written = state.withScheduler { s in
            _ = s.takeChanged()
            return s.graph.records
        }
        let shown = state.withScheduler { $0.graph.status(2) }
        #expect(written[1].status == shown, "database gets \(written[1].status), the run reports \(shown), and nothing writes it again")
    }

    // A released step whose only prerequisites were a retried inserter's children becomes ready
    //    the moment they are dropped, before the retry adds the new ones.
    @Test("close (released) does not run while its adder's retry is still re-inserting")
    func dropMakesReleasedStepReady() throws {
        var g = StepGraph()
        let spawn = try g.insert(spec("spawn", retries: 1), prerequisites: [], insertedBy: .protocolSteps)
        let close = try g.insert(spec("close", wait: true), prerequisites: [], insertedBy: .protocolSteps)
        try g.release(close, by: .stepsCheck)
        #expect(g.takeReady() == spawn)
        let a = try g.insert(spec("work", ["a"]), prerequisites: [], insertedBy: .step(spawn))
        try g.addPrerequisites(to: close, [a], by: .step(spawn))
        _ = g.fail(spawn, error: "transient")        // a is held for the retry
        #expect(g.takeReady() == spawn)
        let a2 = try g.insert(spec("work", ["a2"]), prerequisites: [], insertedBy: .step(spawn))   // a new file first: a dropped
        #expect(g.takeReady() != close, "close ran with none of its inputs; the retry's addPrerequisites(to: close, [\(a2)]) will now fail")
    }
}
