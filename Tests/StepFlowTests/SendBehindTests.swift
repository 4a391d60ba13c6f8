import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// Steps sent behind their prerequisites (S6): a step whose unfinished prerequisites all run on one
/// rank goes there before it is ready, starts there once they finished, with their results, and goes
/// back to rank 0 unstarted when one of them does not finish. The scheduler's decisions, a pool's
/// handling, and whole runs over in-memory ranks.
@Suite struct SendBehindTests {
    func spec(_ f: String = "f", threads: Int = 1, gpu: Bool = false, retries: Int = 0) -> StepSpec {
        StepSpec(function: f, threads: threads, needsGPU: gpu, retries: retries)
    }

    func scheduler(ranks: Int = 2, threads: Int = 1, prefetch: Int = 2, gpus: Int = 0, policy: FailurePolicy = .stop,
                   sendBehind: Bool = true) -> Scheduler {
        var config = SchedulerConfig(ranks: ranks, threadsPerRank: threads, gpusPerRank: gpus, prefetch: prefetch, failurePolicy: policy)
        config.sendBehind = sendBehind
        return Scheduler(config: config)
    }

    /// Inserts a chain of `n` steps; returns their ids.
    func chain(_ s: inout Scheduler, _ n: Int, after first: StepID? = nil, _ f: String = "f") throws -> [StepID] {
        var ids: [StepID] = []
        var previous = first
        for _ in 0..<n {
            let id = try s.insert(spec(f), prerequisites: previous.map { [$0] } ?? [], insertedBy: .protocolSteps)
            ids.append(id)
            previous = id
        }
        return ids
    }

    @Test("S6: a chain's next links go behind the link that runs, to its rank, up to the room kept for steps sent ahead")
    func chainGoesBehind() throws {
        var s = scheduler(prefetch: 2)
        let c = try chain(&s, 5)
        let first = s.nextAssignments()
        #expect(first.map(\.step) == [1, 2, 3], "T 1 + 2 sent ahead: the ready step and two behind it")
        #expect(Set(first.map(\.rank)).count == 1, "all on the rank of the first link: \(first)")
        #expect(first.map(\.behind) == [[], [1], [2]])
        #expect(s.graph.status(c[1]) == .running && s.graph.status(c[2]) == .running)
        #expect(s.nextAssignments().isEmpty, "no room left on that rank")
        s.stepEnded(1, .finished)
        let next = s.nextAssignments()
        #expect(next.map(\.step) == [4] && next[0].behind == [3] && next[0].rank == first[0].rank,
                "room freed: the next link goes behind the last one sent, though that one has not started: \(next)")
        s.stepEnded(2, .finished)
        s.stepEnded(3, .finished)
        #expect(s.nextAssignments().map(\.behind) == [[4]])
        s.stepEnded(4, .finished)
        s.stepEnded(5, .finished)
        #expect(s.outcome() == .finished)
    }

    @Test("S6: a step whose prerequisites run on two ranks waits until it is ready; off, nothing goes behind")
    func onlyWhenOneRankRunsThemAll() throws {
        var s = scheduler(prefetch: 2)
        let a = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let b = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let c = try s.insert(spec(), prerequisites: [a, b], insertedBy: .protocolSteps)
        let sent = s.nextAssignments()
        #expect(sent.map(\.step) == [a, b] && sent[0].rank != sent[1].rank)
        #expect(s.graph.status(c) == .new)
        s.stepEnded(a, .finished)
        // b still runs, on the other rank: c could go behind it there.
        let behind = s.nextAssignments()
        #expect(behind.map(\.step) == [c] && behind[0].behind == [b] && behind[0].rank == sent[1].rank, "\(behind)")

        var off = scheduler(prefetch: 2, sendBehind: false)
        _ = try chain(&off, 3)
        #expect(off.nextAssignments().map(\.step) == [1])
        var noRoom = scheduler(prefetch: 0)
        _ = try chain(&noRoom, 3)
        #expect(noRoom.nextAssignments().map(\.step) == [1], "without room for steps sent ahead, a step sent behind would hold a slot")
    }

    @Test("S6: of a fan-out, one dependent goes behind, only while its rank has nothing else, and asks for the end first; the rest go where there is room once ready")
    func fanOutSendsOneBehind() throws {
        var s = scheduler(prefetch: 4)
        let root = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let leaves = try (0..<4).map { _ in try s.insert(spec(), prerequisites: [root], insertedBy: .protocolSteps) }
        let first = s.nextAssignments()
        #expect(first.map(\.step) == [root, leaves[0]] && first[1].behind == [root] && first[1].sendEndsFirst, "\(first)")
        s.stepEnded(root, .finished)
        s.stepEnded(leaves[0], .finished)
        let rest = s.nextAssignments()
        #expect(rest.map(\.step) == Array(leaves.dropFirst()) && rest.allSatisfy(\.behind.isEmpty))
        #expect(Set(rest.map(\.rank)).count == 2, "spread over both ranks: \(rest)")

        // A rank that already has a step queued takes no fan-out step behind.
        var busy = scheduler(ranks: 1, prefetch: 4)
        let r = try busy.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        _ = try busy.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        _ = try (0..<2).map { _ in try busy.insert(spec(), prerequisites: [r], insertedBy: .protocolSteps) }
        #expect(busy.nextAssignments().map(\.step) == [1, 2])
        // A chain link does not ask for its prerequisite's end first.
        var c = scheduler(prefetch: 2)
        _ = try chain(&c, 2)
        #expect(c.nextAssignments().map(\.sendEndsFirst) == [false, false])
    }

    @Test("S6: ready steps go first, in id order; steps go behind only when none waits, and never GPU steps")
    func readyStepsFirst() throws {
        var s = scheduler(ranks: 1, prefetch: 1, gpus: 1)
        let a = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        _ = try s.insert(spec(), prerequisites: [a], insertedBy: .protocolSteps)
        let x = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let y = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        #expect(s.nextAssignments().map(\.step) == [a, x], "room for two: the ready ones")
        s.stepEnded(x, .finished)
        #expect(s.nextAssignments().map(\.step) == [y], "y is ready and waits: it goes before the step behind a")
        s.stepEnded(y, .finished)
        #expect(s.nextAssignments().isEmpty, "step 2 was passed over while ready steps waited; it goes once ready")
        s.stepEnded(a, .finished)
        let last = s.nextAssignments()
        #expect(last.map(\.step) == [2] && last[0].behind.isEmpty)

        var g = scheduler(ranks: 1, prefetch: 2, gpus: 1)
        let p = try g.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        _ = try g.insert(spec(gpu: true), prerequisites: [p], insertedBy: .protocolSteps)
        #expect(g.nextAssignments().map(\.step) == [p])

        var d = scheduler(prefetch: 2)
        _ = try chain(&d, 3)
        d.setLaunchDeadline(Date().timeIntervalSince1970 + 3600)
        #expect(d.nextAssignments(now: Date().timeIntervalSince1970).map(\.step) == [1], "with a launch deadline the rank checks when each step starts")
    }

    @Test("S7: a step behind one that fails comes back unstarted: under stop it stays new, under --keep-going it is skipped, with retries it goes behind the next attempt")
    func failureInFront() throws {
        for policy in [FailurePolicy.stop, .keepGoing] {
            var s = scheduler(prefetch: 2, policy: policy)
            _ = try chain(&s, 3)
            _ = s.nextAssignments()
            s.stepEnded(1, .failed(error: "boom"))
            // The rank hands back what waited behind it, after the failure.
            s.stepEnded(2, .notStarted)
            s.stepEnded(3, .notStarted)
            _ = s.nextAssignments()
            #expect(s.outcome() == .failed, "\(policy)")
            #expect([2, 3].map { s.graph.status($0) } == (policy == .stop ? [.new, .new] : [.skipped, .skipped]), "\(policy)")
        }
        var r = scheduler(prefetch: 2)
        _ = try r.insert(spec(retries: 1), prerequisites: [], insertedBy: .protocolSteps)
        _ = try r.insert(spec(), prerequisites: [1], insertedBy: .protocolSteps)
        #expect(r.nextAssignments().map(\.step) == [1, 2])
        r.stepEnded(1, .failed(error: "once"))
        r.stepEnded(2, .notStarted)
        let again = r.nextAssignments()
        #expect(again.map(\.step) == [1, 2] && again[1].behind == [1], "the retry, and its dependent behind it: \(again)")
        #expect(r.graph.record(2).attempts == 1, "a step handed back unstarted did not use an attempt")
        r.stepEnded(1, .finished)
        r.stepEnded(2, .finished)
        #expect(r.outcome() == .finished)
    }

    @Test("A step sent behind keeps its count of unfinished prerequisites through a rebuild of the graph's indices (a drop, a stale run): its prerequisite's failure still skips it")
    func rebuildKeepsTheCount() throws {
        var g = StepGraph(skipDependentsOfFailures: true)
        let p = try g.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let d = try g.insert(spec(), prerequisites: [p], insertedBy: .protocolSteps)
        #expect(g.takeReady() == p)
        g.sendBehind(d)
        g.rebuildIndices()
        #expect(g.prerequisitesLeft(d) == 1 && g.waitingOn(p) == [Int32(d)])
        g.fail(p, error: "boom")
        g.unassign(d)
        #expect(g.status(d) == .skipped)
        let anyReady = g.hasReady()
        #expect(!anyReady)
    }

    // MARK: A rank's pool

    static let deadline: Double = 60

    static func pool(_ functions: [String: StepExecutor.Body], threads: Int = 1, recorder: Recorder) -> WorkerPool {
        WorkerPool(rank: 1, threads: threads, executor: StepExecutor(functions: functions), runDirectory: WorkerPoolTests.scratch(),
                   channel: WorkerPoolTests.noChannel, report: recorder.record)
    }

    static func step(_ id: StepID, _ function: String, behind: [StepID] = [], inputs: [StepInput]? = nil,
                     onlyForBehind: Bool = false) -> StepAssignment {
        StepAssignment(id: id, function: function, args: [], threads: 1, gpus: [], attempt: 1, inputs: inputs, behind: behind,
                       inputsOnlyForBehind: onlyForBehind)
    }

    @Test("A step sent behind starts only after its prerequisite ended here, whose end is reported first, and reads its result", arguments: [1, 2])
    func poolWaitsAndHandsTheResult(threads: Int) throws {
        let recorder = Recorder()
        let gate = Gate(parties: 1)
        let read = Mutex<[String]>([])
        let pool = Self.pool([
            "first": { step in
                try gate.waitUntilOpen(timeout: Self.deadline)
                try step.setResult(.string("from \(step.id)"))
            },
            "second": { step in
                let got = try step.result(of: 1)?.value?.stringValue ?? "nil"
                let other = try step.result(of: 2)?.value?.stringValue ?? "nil"
                read.withLock { $0.append("\(got) \(other)") }
            },
            "quick": { _ in },
        ], threads: threads, recorder: recorder)
        let inputs = [StepInput(id: 1, name: "first", result: []), StepInput(id: 2, name: "quick", result: [])]
        // Step 2 first: on one slot, step 1 holds it until the gate opens.
        pool.submit([Self.step(2, "quick"), Self.step(1, "first"), Self.step(3, "second", behind: [1], inputs: inputs)])
        #expect(recorder.waitForEnded(1, timeout: Self.deadline), "step 2 needs no one")
        #expect(recorder.waitForStarted(2, timeout: Self.deadline))
        Thread.sleep(forTimeInterval: 0.1)
        #expect(!recorder.startedIDs.contains(3), "step 3 waits for step 1")
        gate.open()
        #expect(recorder.waitForEnded(3, timeout: Self.deadline))
        // Sent behind step 1 after it finished here (its end was on its way to rank 0): it starts at once.
        pool.submit([Self.step(4, "second", behind: [1], inputs: inputs)])
        pool.shutdown()
        let order = recorder.order
        let ended1 = try #require(order.firstIndex(of: "e1")), started3 = try #require(order.firstIndex(of: "s3"))
        #expect(ended1 < started3, "\(order)")
        #expect(read.withLock { $0 } == ["from 1 nil", "from 1 nil"])
        #expect(recorder.outcomes.allSatisfy { $0.report == .finished })
    }

    @Test("A step sent behind one that fails, is taken back, or ended before it came goes back unstarted, with what was behind it")
    func poolHandsBack() throws {
        let recorder = Recorder()
        let gate = Gate(parties: 1)
        let pool = Self.pool([
            "fail": { _ in
                try gate.waitUntilOpen(timeout: Self.deadline)
                throw GateTimeout()
            },
            "quick": { _ in },
        ], recorder: recorder)
        // 2 behind 1, 3 behind 2: 1 fails, so neither runs.
        pool.submit([Self.step(1, "fail"), Self.step(2, "quick", behind: [1]), Self.step(3, "quick", behind: [2])])
        #expect(recorder.waitForStarted(1, timeout: Self.deadline))
        // 5 behind 4, which is queued behind 1's slot: taking 4 back takes 5 with it.
        pool.submit([Self.step(4, "quick"), Self.step(5, "quick", behind: [4])])
        pool.takeBack([4])
        gate.open()
        #expect(recorder.waitForEnded(5, timeout: Self.deadline))
        // 6 behind 1, which has ended: it goes back at once.
        pool.submit([Self.step(6, "quick", behind: [1])])
        pool.shutdown()
        let outcomes = recorder.outcomes
        #expect(outcomes.first { $0.id == 1 }?.report != .finished)
        for id in [2, 3, 4, 5, 6] {
            #expect(outcomes.first { $0.id == id }?.report == .notStarted, "step \(id): \(outcomes)")
        }
        #expect(!recorder.startedIDs.contains { [2, 3, 4, 5, 6].contains($0) })
        let order = recorder.order
        #expect(order.firstIndex(of: "e1")! < order.firstIndex(of: "e2")!, "the failure comes first: \(order)")

        let held = Recorder()
        let blocked = Gate(parties: 1)
        let other = Self.pool(["hold": { _ in try blocked.waitUntilOpen(timeout: Self.deadline) }, "quick": { _ in }], recorder: held)
        other.submit([Self.step(1, "hold"), Self.step(2, "quick", behind: [1]), Self.step(3, "quick")])
        #expect(held.waitForStarted(1, timeout: Self.deadline))
        other.takeBackUnstarted()
        blocked.open()
        other.shutdown()
        #expect(held.outcomes.filter { $0.report == .notStarted }.map(\.id).sorted() == [2, 3])
        #expect(held.startedIDs == [1])
    }

    @Test("A step handed back and sent again waits for all its prerequisites once more; one sent behind a step that runs again waits for the new run")
    func sentAgain() throws {
        let recorder = Recorder()
        let gates = [Gate(parties: 1), Gate(parties: 1), Gate(parties: 1)]
        let pool = Self.pool([
            "wait": { step in try gates[step.args.first?.intValue ?? 0].waitUntilOpen(timeout: Self.deadline) },
            "quick": { _ in },
        ], threads: 3, recorder: recorder)
        func waiting(_ id: StepID, gate: Int) -> StepAssignment {
            StepAssignment(id: id, function: "wait", args: [.int(gate)], threads: 1, gpus: [], attempt: 1)
        }
        // 3 behind 1 and 2; taken back, then sent again behind both.
        pool.submit([waiting(1, gate: 0), waiting(2, gate: 1), Self.step(3, "quick", behind: [1, 2])])
        #expect(recorder.waitForStarted(2, timeout: Self.deadline))
        pool.takeBack([3])
        pool.submit([Self.step(3, "quick", behind: [1, 2])])
        gates[0].open()
        #expect(recorder.waitForEnded(2, timeout: Self.deadline), "step 1 and the first step 3 (handed back)")
        Thread.sleep(forTimeInterval: 0.1)
        #expect(!recorder.startedIDs.contains(3), "step 3 still waits for step 2: \(recorder.order)")
        gates[1].open()
        #expect(recorder.waitForEnded(4, timeout: Self.deadline))
        // Step 1 finished here; sent again (a stale run), a step sent behind it waits for the new run.
        pool.submit([waiting(1, gate: 2), Self.step(5, "quick", behind: [1])])
        Thread.sleep(forTimeInterval: 0.1)
        #expect(!recorder.startedIDs.contains(5), "step 5 waits for step 1's new run: \(recorder.order)")
        gates[2].open()
        pool.shutdown()
        let order = recorder.order
        #expect(order.lastIndex(of: "e1")! < order.firstIndex(of: "s5")!, "\(order)")
        #expect(recorder.outcomes.filter { $0.id == 3 }.map(\.report) == [.notStarted, .finished])
    }

    @Test("Inputs sent only for the rank to fill in are dropped again when the prerequisite set no result")
    func inputsOnlyForBehind() throws {
        let recorder = Recorder()
        let saw = Mutex<[String]>([])
        let pool = Self.pool([
            "none": { _ in },
            "set": { step in try step.setResult([7]) },
            "read": { step in
                // Not a prerequisite: nil while no step set a result, an error once inputs came.
                let stranger: String
                do { stranger = try step.result(of: 99) == nil ? "nil" : "set" } catch { stranger = "error" }
                let bytes = try step.result(of: step.id - 1)?.bytes ?? []
                saw.withLock { $0.append("\(step.id): \(bytes) \(stranger)") }
            },
        ], recorder: recorder)
        pool.submit([Self.step(1, "none"), Self.step(2, "read", behind: [1], inputs: [StepInput(id: 1, name: "none", result: [])], onlyForBehind: true),
                     Self.step(3, "set"), Self.step(4, "read", behind: [3], inputs: [StepInput(id: 3, name: "set", result: [])], onlyForBehind: true)])
        pool.shutdown()
        #expect(saw.withLock { $0 } == ["2: [] nil", "4: [7] error"])
    }

    @Test("On the owner's loop, a step that lets a step sent behind it go ends the batch when that step asks for its end first (another rank waits for it); otherwise the batch goes on")
    func inlineBatchEndsAtFollowers() throws {
        let recorder = Recorder()
        let pool = WorkerPool(rank: 1, threads: 1, executor: StepExecutor(functions: ["quick": { _ in }]), runDirectory: WorkerPoolTests.scratch(),
                              inlineOwner: true, channel: WorkerPoolTests.noChannel, report: recorder.record)
        // The first runs are on the slot's thread; after `inlineAfter` short ones, steps wait for the owner.
        for id in 1...WorkerPool.inlineAfter {
            pool.submit([Self.step(id, "quick")])
            #expect(recorder.waitForEnded(id, timeout: Self.deadline))
        }
        func chain(from first: StepID, endsFirst: Bool) -> [StepAssignment] {
            [Self.step(first, "quick")] + (1...2).map {
                var a = Self.step(first + $0, "quick", behind: [first + $0 - 1])
                a.sendEndsFirst = endsFirst
                return a
            }
        }
        let n = WorkerPool.inlineAfter
        pool.submit(chain(from: 100, endsFirst: true))
        #expect(pool.runInline(upTo: .seconds(10)))
        #expect(recorder.outcomes.count == n + 1, "only step 100 ran: \(recorder.order.suffix(4))")
        #expect(pool.runInline(upTo: .seconds(10)) && pool.runInline(upTo: .seconds(10)))
        #expect(recorder.outcomes.count == n + 3)
        pool.submit(chain(from: 200, endsFirst: false))
        #expect(pool.runInline(upTo: .seconds(10)))
        #expect(recorder.outcomes.count == n + 6, "the whole chain in one batch: \(recorder.order.suffix(4))")
        pool.shutdown()
        #expect(recorder.outcomes.allSatisfy { $0.report == .finished })
    }

    // MARK: Whole runs

    @Test("Chains with results over in-memory ranks: every link reads the link before it, on and off", arguments: [(1, 1), (3, 1), (2, 3)])
    func chainsPassResults(ranks: Int, threads: Int) throws {
        for sendBehind in [true, false] {
            let wrong = Mutex<[String]>([])
            var h = Harness(threads: threads, ranks: ranks)
            h.sendBehind = sendBehind
            h.functions = [
                "start": { step in try step.setResult(.int(0)) },
                "link": { step in
                    let p = step.args.first?.intValue ?? 0
                    let got = try step.result(of: p)?.value?.intValue
                    let want = step.args.last?.intValue
                    if got != want { wrong.withLock { $0.append("step \(step.id) read \(String(describing: got)), wanted \(String(describing: want))") } }
                    try step.setResult(.int((got ?? -1000) + 1))
                },
            ]
            let report = try h.run { steps in
                for _ in 0..<6 {
                    var previous = try steps.insertFunctionStep("start", prerequisites: [])
                    for n in 0..<60 { previous = try steps.insertFunctionStep("link", .int(previous), .int(n), prerequisites: [previous]) }
                }
            }
            #expect(report.outcome == .finished, "send behind \(sendBehind)")
            #expect(wrong.withLock { $0 }.isEmpty, "\(wrong.withLock { $0 }.prefix(3))")
            #expect(report.records.count == 6 * 61)
            #expect(sendBehind ? report.sentBehind > 0 : report.sentBehind == 0, "\(report.sentBehind) sent behind")
        }
    }

    @Test("S3 over in-memory ranks: a running step adds a prerequisite to a step sent behind on its rank; rank 0 takes it back first, and it runs after both",
          arguments: [(1, 1), (2, 1), (1, 2), (2, 2)])
    func editTakesBackAStepSentBehind(ranks: Int, threads: Int) throws {
        let times = Mutex<[StepID: (start: Double, end: Double)]>([:])
        @Sendable func timed(_ step: StepContext, _ body: () throws -> Void) rethrows {
            let start = Date().timeIntervalSince1970
            try body()
            times.withLock { $0[step.id] = (start, Date().timeIntervalSince1970) }
        }
        var h = Harness(threads: threads, ranks: ranks)
        h.functions = [
            "edit": { step in
                try timed(step) {
                    // Step 3 (behind step 2, behind this one) gains a prerequisite that takes a while.
                    let slow = try step.insertFunctionStep("slow", prerequisites: [])
                    try step.addPrerequisites(to: 3, [slow])
                }
            },
            "slow": { step in try timed(step) { Thread.sleep(forTimeInterval: 0.05) } },
            "quick": { step in timed(step) {} },
        ]
        let report = try h.run { steps in
            let first = try steps.insertFunctionStep("edit", prerequisites: [])
            let second = try steps.insertFunctionStep("quick", prerequisites: [first])
            _ = try steps.insertFunctionStep("quick", prerequisites: [second])
        }
        #expect(report.outcome == .finished, "\(report.records.map { ($0.id, $0.status, $0.error ?? "") })")
        #expect(report.sentBehind >= 2, "steps 2 and 3 went behind step 1: \(report.sentBehind)")
        #expect(report.record(3)?.prerequisites == [2, 4])
        let t = times.withLock { $0 }
        let three = try #require(t[3]), four = try #require(t[4])
        #expect(three.start >= four.end, "step 3 ran after the prerequisite added to it")
    }

    @Test("S7 over in-memory ranks: a link that fails ends its chain; under --keep-going the rest finishes and its dependents are skipped", arguments: [FailurePolicy.stop, .keepGoing])
    func failureInAChain(policy: FailurePolicy) throws {
        var h = Harness(threads: 1, ranks: 2)
        h.policy = policy
        h.functions = [
            "ok": { _ in },
            "bad": { _ in throw GateTimeout() },
        ]
        var badID: StepID = 0
        let report = try h.run { steps in
            for chain in 0..<4 {
                var previous = try steps.insertFunctionStep("ok", prerequisites: [])
                for n in 0..<40 {
                    previous = try steps.insertFunctionStep(chain == 2 && n == 20 ? "bad" : "ok", prerequisites: [previous])
                    if chain == 2 && n == 20 { badID = previous }
                }
            }
        }
        #expect(report.outcome == .failed)
        #expect(report.record(badID)?.status == .failed)
        let after = (badID + 1)...(badID + 19)
        if policy == .keepGoing {
            #expect(after.allSatisfy { report.record($0)?.status == .skipped })
            #expect(report.count(.finished) == 4 * 41 - 20)
        } else {
            #expect(after.allSatisfy { report.record($0)?.status == .new }, "\(after.map { report.record($0)?.status })")
        }
        #expect(report.count(.running) == 0)
        #expect(report.sentBehind > 0)
    }
}
