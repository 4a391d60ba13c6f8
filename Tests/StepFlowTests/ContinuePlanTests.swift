import Foundation
import Testing
@testable import StepFlow

/// `--continue`'s plan as a pure function of the steps inserted now and the steps recorded (S9, S12).
@Suite struct ContinuePlanTests {
    func record(_ id: StepID, _ function: String = "f", _ status: StepStatus = .finished, args: [StepValue] = [],
                prerequisites: [StepID] = [], added: [StepID] = [], by: Inserter = .protocolSteps, wait: Bool = false,
                releasedBy: Inserter? = nil, started: Bool = true, crashes: Int = 0) -> StepRecord {
        var r = StepRecord(id: id, spec: StepSpec(function: function, args: args, wait: wait), prerequisites: prerequisites + added,
                           insertedBy: by, status: status, insertPrerequisiteCount: prerequisites.count)
        r.releasedBy = releasedBy
        r.crashes = crashes
        if started && status != .new && status != .waiting { r.start = 1 }
        return r
    }

    @Test("S9: a protocol that inserts more steps now: run-time steps are renumbered after them, links kept")
    func protocolGrew() throws {
        let previous = [record(1, "spawn"), record(2, "a"), record(3, "b"),
                        record(4, "child", by: .step(1)), record(5, "child", prerequisites: [4], by: .step(1))]
        let current = [record(1, "spawn", .new), record(2, "a", .new), record(3, "b", .new), record(4, "new-file", .new)]
        let plan = try ContinuePlan(current: current, previous: previous)
        #expect(plan.records.map(\.spec.function) == ["spawn", "a", "b", "new-file", "child", "child"])
        #expect(plan.records.map(\.status) == [.finished, .finished, .finished, .new, .finished, .finished])
        #expect(plan.records[5].prerequisites == [5], "old step 5 depends on old step 4, now step 5 — not on the new protocol step 4")
        #expect(plan.records[4].insertedBy == .step(1) && plan.restored == 2)
        #expect(plan.unconfirmed.isEmpty, "the spawner stays finished: what it inserted is confirmed with it")
        #expect(plan.reasons[4] == .newStep)
    }

    @Test("S9: a protocol that inserts fewer steps now: the old extra protocol steps are not brought back")
    func protocolShrank() throws {
        let previous = [record(1, "a"), record(2, "b"), record(3, "gone", .failed)]
        let plan = try ContinuePlan(current: [record(1, "a", .new), record(2, "b", .new)], previous: previous)
        #expect(plan.records.count == 2 && plan.keptFinished == 2 && plan.dropped == 1)
    }

    @Test("S9/S12: a changed step re-runs with what depends on it; what it inserted goes; independent steps stay")
    func changedStepAndDependents() throws {
        let previous = [record(1, "spawn", args: [1]), record(2, "after", prerequisites: [1]), record(3, "other"),
                        record(4, "child", by: .step(1))]
        let current = [record(1, "spawn", .new, args: [2]), record(2, "after", .new, prerequisites: [1]), record(3, "other", .new)]
        let plan = try ContinuePlan(current: current, previous: previous)
        #expect(plan.records.map(\.status) == [.new, .new, .finished])
        #expect(plan.records.count == 3, "the child of the changed spawner is not its child any more")
        #expect(plan.reasons[1] == .changed("arguments changed") && plan.reasons[2] == .prerequisiteRuns(1))
    }

    @Test("S4: a waiting step stays released only when whoever released it will not run again")
    func releases() throws {
        let skipped = try ContinuePlan(current: [record(1, "a", .new), record(2, "close", .waiting, wait: true)],
                                       previous: [record(1, "a", .failed), record(2, "close", .skipped, wait: true)])
        #expect(skipped.records[1].status == .waiting)
        let byFinishedStep = try ContinuePlan(
            current: [record(1, "a", .new), record(2, "close", .waiting, wait: true)],
            previous: [record(1, "a"), record(2, "close", .aborted, wait: true, releasedBy: .step(1))])
        #expect(byFinishedStep.records[1].status == .new && byFinishedStep.records[1].releasedBy == .step(1))
        let byRerunningStep = try ContinuePlan(
            current: [record(1, "a", .new), record(2, "close", .waiting, wait: true)],
            previous: [record(1, "a", .running), record(2, "close", .aborted, wait: true, releasedBy: .step(1))])
        #expect(byRerunningStep.records[1].status == .waiting, "step 1 runs again and will release it again")
        let byHook = try ContinuePlan(current: [record(1, "close", .waiting, wait: true)],
                                      previous: [record(1, "close", .aborted, wait: true, releasedBy: .stepsCheck)])
        #expect(byHook.records[0].status == .waiting, "the hook runs again and will release it again")
    }

    @Test("S12: killed while inserting: the inserter re-runs; its recorded inserts are restored, unconfirmed, finished ones stay finished")
    func killedMidInsert() throws {
        let previous = [record(1, "download", .running), record(2, "close", .waiting, wait: true),
                        record(3, "readXml", by: .step(1)),
                        record(4, "register", args: ["a"], prerequisites: [3], by: .step(1)),
                        record(5, "register", args: ["b"], prerequisites: [3], by: .step(1)),
                        record(6, "register", .running, args: ["c"], prerequisites: [3], by: .step(1)),
                        record(7, "register", .new, args: ["d"], prerequisites: [3], by: .step(1))]
        let current = [record(1, "download", .new), record(2, "close", .waiting, wait: true)]
        let plan = try ContinuePlan(current: current, previous: previous)
        #expect(plan.records.map(\.status) == [.new, .waiting, .finished, .finished, .finished, .new, .new])
        #expect(plan.unconfirmed == [3, 4, 5, 6, 7])
        #expect(plan.keptFinished == 3 && plan.restored == 5)
        #expect(plan.records[0].crashes == 1, "it was running when the job died")
        #expect(plan.reasons[1] == .neverFinished(.running) && plan.reasons[6] == .neverFinished(.running))
    }

    @Test("S12: steps the stepsCheck hook inserted are restored, unconfirmed until the hook inserts them again")
    func hookSteps() throws {
        let plan = try ContinuePlan(current: [record(1, "a", .new)],
                                    previous: [record(1, "a"), record(2, "from-hook", by: .stepsCheck),
                                               record(3, "child", .new, by: .step(2))])
        #expect(plan.records.map(\.status) == [.finished, .finished, .new])
        #expect(plan.unconfirmed == [2, 3], "the hook's step and, through it, what it inserted")
    }

    @Test("A finished streaming run (close released by the hook) continues to nothing")
    func finishedStreamingRun() throws {
        let previous = [record(1, "close", prerequisites: [], added: [2, 3], wait: true, releasedBy: .stepsCheck),
                        record(2, "work", by: .stepsCheck), record(3, "work", args: [1], by: .stepsCheck)]
        let plan = try ContinuePlan(current: [record(1, "close", .waiting, wait: true)], previous: previous)
        #expect(plan.keptFinished == 3 && plan.records.allSatisfy { $0.status == .finished })
        #expect(ProtocolRunner.continueNote(plan, previous: StoredRun(protocolName: "P", params: [], status: "finished", threads: 1, mpi: 1,
                                                                      launches: 1, steps: previous), runDirectory: URL(fileURLWithPath: "/r"))
            .contains("nothing left to run"))
    }

    @Test("Missing rows: a protocol step never written is the step at its position now; a run-time step a stored step depends on but the database lacks is refused")
    func missingRows() throws {
        let unreferenced = try ContinuePlan(current: [record(1, "a", .new), record(2, "b", .new)],
                                            previous: [record(1, "a")])
        #expect(unreferenced.records.map(\.status) == [.finished, .new])
        // Step 2 never started, so it was never written; the child that depends on it waits for it.
        let referenced = try ContinuePlan(current: [record(1, "a", .new), record(2, "b", .new)],
                                          previous: [record(1, "a", .running), record(3, "child", prerequisites: [2], by: .step(1))])
        #expect(referenced.records.count == 3 && referenced.records[2].prerequisites == [2])
        #expect {
            try ContinuePlan(current: [record(1, "a", .new)],
                             previous: [record(1, "a", .running), record(3, "child", by: .step(1)), record(4, "child", prerequisites: [5], by: .step(1))])
        } throws: { error in
            "\(error)".contains("depends on step 5, which the database does not hold") && "\(error)".contains("--restart")
        }
        // A step whose inserter was dropped from the run is not restored; it is not an error.
        let orphan = try ContinuePlan(current: [record(1, "a", .new)], previous: [record(1, "a"), record(3, "child", by: .step(2))])
        #expect(orphan.records.count == 1 && orphan.dropped == 1)
    }

    @Test("A step that was running when the job died counts it; at the crash limit it is recorded failed")
    func crashLimit() throws {
        let previous = [record(1, "killer", .running, crashes: 2), record(2, "after", .new, prerequisites: [1])]
        let current = [record(1, "killer", .new), record(2, "after", .new, prerequisites: [1])]
        let limited = try ContinuePlan(current: current, previous: previous, crashLimit: 3)
        #expect(limited.records[0].status == .failed && limited.records[0].crashes == 3)
        #expect(limited.records[0].error?.contains("died 3 times") == true)
        #expect(limited.reasons[1] == .crashLimit(3))
        let raised = try ContinuePlan(current: current, previous: previous, crashLimit: 5)
        #expect(raised.records[0].status == .new && raised.records[0].crashes == 3)
        let unstarted = try ContinuePlan(current: current, previous: [record(1, "killer", .running, started: false)])
        #expect(unstarted.records[0].crashes == 0, "a step sent ahead but not started did not die with the job")
    }

    @Test("Arguments keep their types through the run database (2.0 stays a double), so a continue keeps the step")
    func argumentTypes() throws {
        let args: [StepValue] = [.double(2.0), .int(2), .string("x"), .object(["k": [.null, true]])]
        #expect(try WireCodec.decode(arguments: WireCodec.encode(arguments: args)) == args)
        let dir = Executables.temporaryFolder("argtypes")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        store.record([record(1, "f", args: args)])
        #expect(store.finish(status: "finished") == nil)
        let stored = try RunStore.read(runDirectory: dir)
        #expect(stored.steps[0].spec.args == args)
        let plan = try ContinuePlan(current: [record(1, "f", .new, args: args)], previous: stored.steps)
        #expect(plan.keptFinished == 1)
    }

    @Test("S8: rows written with constant text (statuses, inserters, no arguments, no prerequisites) read back as written")
    func constantColumnsRoundTrip() throws {
        #expect(WireCodec.encode(arguments: []) == [0])
        let dir = Executables.temporaryFolder("constcols")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        let inserters: [Inserter] = [.protocolSteps, .stepsCheck, .step(1)]
        var written: [StepRecord] = []
        for (i, status) in StepStatus.allCases.enumerated() {
            let id = i + 1
            written.append(record(id, "f\(id)", status, args: i % 2 == 0 ? [] : [.string("a\"b"), .int(id)],
                                  prerequisites: i % 3 == 0 ? [] : Array(1..<id), by: id == 1 ? .protocolSteps : inserters[i % 3]))
        }
        store.record(written)
        #expect(store.finish(status: "finished") == nil)
        let stored = try RunStore.read(runDirectory: dir).steps
        #expect(stored.map(\.status) == written.map(\.status))
        #expect(stored.map(\.spec.args) == written.map(\.spec.args))
        #expect(stored.map(\.prerequisites) == written.map(\.prerequisites))
        #expect(stored.map(\.insertedBy) == written.map(\.insertedBy))
        #expect(stored.map(\.spec.function) == written.map(\.spec.function))
    }
}

/// Rank 0 keeps a record per step: its size is memory per step (issue 11 measured it at a million steps).
@Suite struct StepRecordSizeTests {
    @Test("A step record stays within 152 bytes (optional rank, slot and times stored without their flags)")
    func recordSize() {
        #expect(MemoryLayout<StepRecord>.stride <= 152, "StepRecord is \(MemoryLayout<StepRecord>.stride) bytes")
        var r = StepRecord(id: 1, spec: StepSpec(function: "f"), prerequisites: [], insertedBy: .protocolSteps, status: .new)
        #expect(r.rank == nil && r.slot == nil && r.start == nil && r.end == nil)
        r.rank = 3; r.slot = 0; r.start = 0; r.end = 1.5
        #expect(r.rank == 3 && r.slot == 0 && r.start == 0 && r.end == 1.5)
        r.rank = nil; r.start = nil
        #expect(r.rank == nil && r.start == nil)
    }
}
