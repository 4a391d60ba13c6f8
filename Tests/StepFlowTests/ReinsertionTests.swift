import Testing
@testable import StepFlow

/// Idempotent re-insertion (S12) in the graph, driven one event at a time: retries, re-run inserters
/// that insert the same steps or different ones, and the edits they repeat.
@Suite struct ReinsertionTests {
    func spec(_ f: String, _ args: [StepValue] = [], retries: Int = 0, wait: Bool = false) -> StepSpec {
        StepSpec(function: f, args: args, retries: retries, wait: wait)
    }

    @Test("S12: a retry that inserts the same steps gets the same ids; nothing is inserted twice")
    func retryInsertsAgain() throws {
        var g = StepGraph()
        let parent = try g.insert(spec("parent", retries: 1), prerequisites: [], insertedBy: .protocolSteps)
        #expect(g.takeReady() == parent)
        let a = try g.insert(spec("child", ["a"]), prerequisites: [], insertedBy: .step(parent))
        let b = try g.insert(spec("child", ["b"]), prerequisites: [a], insertedBy: .step(parent))
        #expect(g.takeReady() == a)
        g.finish(a)
        let failedForGood = g.fail(parent, error: "boom")
        #expect(!failedForGood, "a retry is left")
        #expect(g.isUnconfirmed(b), "what the failed attempt inserted and did not start waits for the next attempt")
        #expect(g.takeReady() == parent, "b does not run before the retry inserts it again")
        #expect(try g.insert(spec("child", ["a"]), prerequisites: [], insertedBy: .step(parent)) == a)
        #expect(try g.insert(spec("child", ["b"]), prerequisites: [a], insertedBy: .step(parent)) == b)
        #expect(!g.isUnconfirmed(b) && g.takeReady() == b)
        #expect(g.count == 3 && g.record(a).attempts == 1, "a finished once and stays finished")
        g.finish(b)
        g.finish(parent)
        #expect(g.unfinishedCount == 0 && g.droppedCount == 0)
    }

    @Test("S12: a re-run inserter that differs in the middle: matching ends there, the rest of its old inserts are dropped")
    func differsInTheMiddle() throws {
        // The recorded run: 1 spawner (killed while running), 2 close (waiting, got the children as
        // prerequisites), 3..5 its children (3, 4 finished, 5 new), 6 a hook step that ran after 4.
        var records = [
            StepRecord(id: 1, spec: spec("spawn"), prerequisites: [], insertedBy: .protocolSteps, status: .new),
            StepRecord(id: 2, spec: spec("close", wait: true), prerequisites: [3, 4, 5], insertedBy: .protocolSteps,
                       status: .waiting, insertPrerequisiteCount: 0),
            StepRecord(id: 3, spec: spec("child", ["a"]), prerequisites: [], insertedBy: .step(1), status: .finished),
            StepRecord(id: 4, spec: spec("child", ["b"]), prerequisites: [], insertedBy: .step(1), status: .finished),
            StepRecord(id: 5, spec: spec("child", ["c"]), prerequisites: [], insertedBy: .step(1), status: .new),
            StepRecord(id: 6, spec: spec("after-b"), prerequisites: [4], insertedBy: .stepsCheck, status: .finished),
        ]
        records[2].attempts = 1
        records[3].attempts = 1
        var g = StepGraph(restoring: records, unconfirmed: [3, 4, 5, 6])
        #expect(g.takeReady() == 1, "only the spawner can run: its old inserts wait for it")
        #expect(g.peekReady() == nil)
        #expect(try g.insert(spec("child", ["a"]), prerequisites: [], insertedBy: .step(1)) == 3)
        // A new file appeared before "b": the sequence differs here.
        let fresh = try g.insert(spec("child", ["a2"]), prerequisites: [], insertedBy: .step(1))
        #expect(fresh == 7)
        #expect(g.record(4).isDropped && g.record(5).isDropped && !g.contains(4))
        #expect(g.record(2).prerequisites == [3, 1], "the close step lost the dropped prerequisites and waits for the spawner, which may replace them")
        #expect(g.record(6).prerequisites == [1] && g.status(6) == .new && g.isUnconfirmed(6),
                "it lost a prerequisite: it runs again, once the hook inserts it again and the spawner finished")
        #expect(g.count == 5 && g.droppedCount == 2)
        #expect(g.dropNotes.last?.contains("dropped 2 step(s)") == true)
        #expect(try g.insert(spec("child", ["b"]), prerequisites: [], insertedBy: .step(1)) == 8, "from here on steps are new")
        #expect(g.takeReady() == fresh)
    }

    @Test("S9: a finished step that depended on a dropped step runs again, with what finished after it")
    func dependentOfDroppedRunsAgain() throws {
        let records = [
            StepRecord(id: 1, spec: spec("spawn"), prerequisites: [], insertedBy: .protocolSteps, status: .new),
            StepRecord(id: 2, spec: spec("child", ["a"]), prerequisites: [], insertedBy: .step(1), status: .finished),
            StepRecord(id: 3, spec: spec("merge"), prerequisites: [], insertedBy: .protocolSteps, status: .finished, insertPrerequisiteCount: 0),
            StepRecord(id: 4, spec: spec("report"), prerequisites: [3], insertedBy: .protocolSteps, status: .finished),
        ]
        var withAdded = records
        withAdded[2].prerequisites = [2]
        var g = StepGraph(restoring: withAdded, unconfirmed: [2])
        #expect(g.takeReady() == 1)
        _ = try g.insert(spec("child", ["other"]), prerequisites: [], insertedBy: .step(1))
        #expect(g.record(2).isDropped)
        #expect(g.status(3) == .new && g.status(4) == .new, "merge lost an input: it and its dependent run again")
        #expect(g.record(3).prerequisites == [1], "it waits for the spawner, which may insert the input's replacement")
        #expect(g.takeReady() == 5)
        g.finish(5)
        g.finish(1)
        #expect(g.takeReady() == 3)
    }

    @Test("S12: a step the re-run inserter no longer inserts at all is dropped when the inserter finishes")
    func fewerInsertsDropTheRest() throws {
        let records = [
            StepRecord(id: 1, spec: spec("spawn"), prerequisites: [], insertedBy: .protocolSteps, status: .new),
            StepRecord(id: 2, spec: spec("child", ["a"]), prerequisites: [], insertedBy: .step(1), status: .finished),
            StepRecord(id: 3, spec: spec("child", ["b"]), prerequisites: [], insertedBy: .step(1), status: .new),
        ]
        var g = StepGraph(restoring: records, unconfirmed: [2, 3])
        #expect(g.takeReady() == 1)
        #expect(try g.insert(spec("child", ["a"]), prerequisites: [], insertedBy: .step(1)) == 2)
        g.finish(1)
        #expect(g.record(3).isDropped && g.unfinishedCount == 0 && g.count == 2)
    }

    @Test("S12: edits a re-run inserter repeats are no-ops, even on steps that already ran")
    func repeatedEdits() throws {
        var g = StepGraph()
        let close = try g.insert(spec("close", wait: true), prerequisites: [], insertedBy: .protocolSteps)
        let work = try g.insert(spec("work"), prerequisites: [], insertedBy: .protocolSteps)
        try g.addPrerequisites(to: close, [work], by: .step(99))
        try g.release(close, by: .stepsCheck)
        #expect(g.record(close).releasedBy == .stepsCheck)
        #expect(g.takeReady() == work)
        g.finish(work)
        #expect(g.takeReady() == close)
        g.finish(close)
        try g.addPrerequisites(to: close, [work])
        try g.release(close)
        #expect(throws: StepGraphError.self) {
            let other = try g.insert(spec("other"), prerequisites: [], insertedBy: .protocolSteps)
            try g.addPrerequisites(to: close, [other])
        }
    }

    @Test("S12: an unconfirmed finished step does not count for its dependents until its inserter confirms it")
    func unconfirmedHoldsDependents() throws {
        let records = [
            StepRecord(id: 1, spec: spec("spawn"), prerequisites: [], insertedBy: .protocolSteps, status: .new),
            StepRecord(id: 2, spec: spec("close"), prerequisites: [3], insertedBy: .protocolSteps, status: .new, insertPrerequisiteCount: 0),
            StepRecord(id: 3, spec: spec("child"), prerequisites: [], insertedBy: .step(1), status: .finished),
        ]
        var g = StepGraph(restoring: records, unconfirmed: [3])
        #expect(g.takeReady() == 1)
        #expect(g.peekReady() == nil, "close waits: its prerequisite is not confirmed")
        #expect(try g.insert(spec("child"), prerequisites: [], insertedBy: .step(1)) == 3)
        #expect(g.takeReady() == 2)
    }
}
