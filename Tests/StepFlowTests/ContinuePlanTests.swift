import Foundation
import Testing
@testable import StepFlow

/// `--continue`'s plan as a pure function of the steps inserted now and the steps recorded (S9).
@Suite struct ContinuePlanTests {
    func record(_ id: StepID, _ function: String = "f", _ status: StepStatus = .finished, args: [StepValue] = [],
                prerequisites: [StepID] = [], by: Inserter = .protocolSteps, wait: Bool = false) -> StepRecord {
        StepRecord(id: id, spec: StepSpec(function: function, args: args, wait: wait), prerequisites: prerequisites,
                   insertedBy: by, status: status)
    }

    @Test("A protocol that inserts more steps now: run-time steps are renumbered after them, links kept")
    func protocolGrew() {
        let previous = [record(1, "spawn"), record(2, "a"), record(3, "b"),
                        record(4, "child", by: .step(1)), record(5, "child", prerequisites: [4], by: .step(1))]
        let current = [record(1, "spawn", .new), record(2, "a", .new), record(3, "b", .new), record(4, "new-file", .new)]
        let plan = ContinuePlan(current: current, previous: previous)
        #expect(plan.records.map(\.spec.function) == ["spawn", "a", "b", "new-file", "child", "child"])
        #expect(plan.records.map(\.status) == [.finished, .finished, .finished, .new, .finished, .finished])
        #expect(plan.records[5].prerequisites == [5], "old step 5 depends on old step 4, now step 5 — not on the new protocol step 4")
        #expect(plan.records[4].insertedBy == .step(1) && plan.restored == 2)
    }

    @Test("A protocol that inserts fewer steps now: the old extra protocol steps are not brought back")
    func protocolShrank() {
        let previous = [record(1, "a"), record(2, "b"), record(3, "gone", .failed)]
        let plan = ContinuePlan(current: [record(1, "a", .new), record(2, "b", .new)], previous: previous)
        #expect(plan.records.count == 2 && plan.keptFinished == 2)
    }

    @Test("A changed step re-runs with everything after it; its inserted steps go, to be inserted again")
    func changedStepAndDependents() {
        let previous = [record(1, "spawn", args: [1]), record(2, "after", prerequisites: [1]), record(3, "other"),
                        record(4, "child", by: .step(1))]
        let current = [record(1, "spawn", .new, args: [2]), record(2, "after", .new, prerequisites: [1]), record(3, "other", .new)]
        let plan = ContinuePlan(current: current, previous: previous)
        #expect(plan.records.map(\.status) == [.new, .new, .finished])
        #expect(plan.records.count == 3, "the child of the re-running spawner is not restored")
    }

    @Test("A waiting step skipped under --keep-going is not taken as released; one released before is")
    func releases() {
        let skipped = ContinuePlan(current: [record(1, "a", .new), record(2, "close", .waiting, wait: true)],
                                   previous: [record(1, "a", .failed), record(2, "close", .skipped, wait: true)])
        #expect(skipped.records[1].status == .waiting)
        let released = ContinuePlan(current: [record(1, "a", .new), record(2, "close", .waiting, wait: true)],
                                    previous: [record(1, "a"), record(2, "close", .aborted, wait: true)])
        #expect(released.records[1].status == .new)
    }

    @Test("A released waiting step waits again when a step that inserted steps runs again")
    func releaseUndoneWhenInserterReruns() {
        let previous = [record(1, "spawn", .aborted), record(2, "close", .new, prerequisites: [3], wait: true),
                        record(3, "child", by: .step(1))]
        let plan = ContinuePlan(current: [record(1, "spawn", .new), record(2, "close", .waiting, wait: true)], previous: previous)
        #expect(plan.records.count == 2 && plan.records[1].status == .waiting)
    }

    @Test("Steps the stepsCheck hook inserted are left to the hook, not restored")
    func hookSteps() {
        let plan = ContinuePlan(current: [record(1, "a", .new)], previous: [record(1, "a"), record(2, "from-hook", by: .stepsCheck)])
        #expect(plan.records.count == 1)
    }

    @Test("Arguments keep their types through the run database (2.0 stays a double), so a continue keeps the step")
    func argumentTypes() throws {
        let args: [StepValue] = [.double(2.0), .int(2), .string("x"), .object(["k": [.null, true]])]
        #expect(try WireCodec.decode(arguments: WireCodec.encode(arguments: args)) == args)
        let dir = Executables.temporaryFolder("argtypes")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let (store, _) = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        store.record([record(1, "f", args: args)])
        store.finish(status: "finished")
        let stored = try RunStore.read(runDirectory: dir)
        #expect(stored.steps[0].spec.args == args)
        let plan = ContinuePlan(current: [record(1, "f", .new, args: args)], previous: stored.steps)
        #expect(plan.keptFinished == 1)
    }
}
