import Testing
@testable import StepFlow

/// The scheduler as a pure state machine: events in, decisions out, driven one step at a time.
@Suite struct SchedulerTests {
    func spec(_ f: String = "f", threads: Int = 1, gpu: Bool = false, retries: Int = 0, wait: Bool = false) -> StepSpec {
        StepSpec(function: f, threads: threads, needsGPU: gpu, retries: retries, wait: wait)
    }

    @Test("S1: ids are 1-based, in insertion order")
    func idsInInsertionOrder() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 2))
        let ids = try (0..<5).map { _ in try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        #expect(ids == [1, 2, 3, 4, 5])
        #expect(s.graph.record(3).insertedBy == .protocolSteps)
    }

    @Test("S6: ready steps go out in ascending id order, only as slots free up")
    func dispatchInIdOrder() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 2))
        for _ in 0..<5 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        #expect(s.nextAssignments().map(\.step) == [1, 2])
        #expect(s.nextAssignments().isEmpty)
        s.stepEnded(2, .finished)
        #expect(s.nextAssignments().map(\.step) == [3])
        s.stepEnded(1, .finished)
        s.stepEnded(3, .finished)
        #expect(s.nextAssignments().map(\.step) == [4, 5])
    }

    @Test("S6: steps spread over ranks, least loaded first")
    func spreadOverRanks() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 3, threadsPerRank: 2))
        for _ in 0..<6 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        let a = s.nextAssignments()
        #expect(a.map(\.step) == [1, 2, 3, 4, 5, 6])
        #expect(a.map(\.rank) == [0, 1, 2, 0, 1, 2])
    }

    @Test("S6: among equally loaded ranks, the rank that reported last gets the next step (a chain stays on a polling rank)")
    func warmWorkerRankFirst() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 4, threadsPerRank: 1))
        var previous = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        for _ in 0..<5 { previous = try s.insert(spec(), prerequisites: [previous], insertedBy: .protocolSteps) }
        var ranks: [Int] = []
        while let a = s.nextAssignments().first {
            ranks.append(a.rank)
            s.stepEnded(a.step, .finished)
        }
        #expect(ranks.count == 6 && ranks.allSatisfy { $0 == ranks[0] }, "\(ranks)")
    }

    @Test("S6: a prefetch credit sends steps ahead beyond the T slots")
    func prefetchCredit() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 1, prefetch: 2))
        for _ in 0..<10 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        #expect(s.nextAssignments().count == 6)
    }

    @Test("S6: short steps are sent further ahead (under 20 µs: 0.5 ms of work a slot, 32 to 512 steps); steps of 80 ms or more are not sent ahead at all")
    func prefetchFollowsStepTime() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 1, prefetch: 2))
        for _ in 0..<200 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        s.adaptPrefetch(meanStepSeconds: 0.000_01)
        // Under 20 µs, 0.5 ms of work a slot: 50 steps of 10 µs, at least 32, at most 512.
        #expect(s.nextAssignments().count == 2 * (1 + 50))
        for (mean, ahead) in [(0.000_001, 500), (0.000_000_1, 512), (0.000_019, 32)] {
            var v = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 1, prefetch: 2))
            for _ in 0..<2_000 { try v.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
            v.adaptPrefetch(meanStepSeconds: mean)
            #expect(v.nextAssignments().count == 2 * (1 + ahead), "mean \(mean) s")
        }
        var w = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 4, prefetch: 2))
        for _ in 0..<2_000 { try w.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        w.adaptPrefetch(meanStepSeconds: 0.000_01)
        #expect(w.nextAssignments().count == 2 * (4 + 200), "4 slots drain 4 times faster: 4 × 50 ahead")
        var t = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 1, prefetch: 2))
        for _ in 0..<100 { try t.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        t.adaptPrefetch(meanStepSeconds: 0.02)
        #expect(t.nextAssignments().count == 2 * (1 + 2))
        var u = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 1, prefetch: 2))
        for _ in 0..<100 { try u.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        u.adaptPrefetch(meanStepSeconds: 0.2)
        #expect(u.nextAssignments().count == 2, "one step per slot, none queued behind a long one")
    }

    @Test("S8: a pull taken in chunks while the run goes on between them ends with every step as it is after the last chunk")
    func chunkedPullIsOneMoment() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 1, prefetch: 2))
        for _ in 0..<10 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        _ = s.takeChanged()
        #expect(s.nextAssignments().map(\.step) == [1, 2, 3, 4, 5, 6])
        var written: [StepID: StepRecord] = [:]
        var visits: [StepID] = []
        func pull(_ limit: Int) -> Bool {
            s.visitChanged(upTo: limit) { p in
                written[p.pointee.id] = p.pointee
                visits.append(p.pointee.id)
            }
        }
        #expect(pull(2), "4 of the 6 changed steps are left")
        #expect(visits == [1, 2], "those that changed first")
        // The run goes on between chunks: step 1, already written as running, ends; step 7 is sent.
        s.stepEnded(1, .finished)
        #expect(s.nextAssignments().map(\.step) == [7])
        while pull(2) {}
        #expect(visits.filter { $0 == 1 }.count == 2, "step 1 is taken again after it changed: \(visits)")
        #expect(Set(written.keys) == Set(1...7))
        for (id, record) in written {
            let now = s.graph.record(id)
            #expect(record.status == now.status && record.rank == now.rank && record.attempts == now.attempts
                     && record.start == now.start && record.end == now.end, "step \(id) as it is now")
        }
        #expect(written[1]?.status == .finished && written[7]?.status == .running && written[6]?.status == .running)
        #expect(!pull(2) && visits.count == 8, "nothing is left")
    }

    @Test("S2/S4: a step becomes ready when its last prerequisite finishes, and a waiting one only once released")
    func readiness() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 4))
        let a = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let b = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let c = try s.insert(spec(wait: true), prerequisites: [a, b], insertedBy: .protocolSteps)
        #expect(s.graph.status(c) == .waiting)
        #expect(s.nextAssignments().map(\.step) == [a, b])
        s.stepEnded(a, .finished)
        s.stepEnded(b, .finished)
        #expect(s.nextAssignments().isEmpty)
        #expect(s.outcome() == .stalled(waiting: [c], blocked: []))
        try s.release(c)
        #expect(s.nextAssignments().map(\.step) == [c])
        s.stepEnded(c, .finished)
        #expect(s.outcome() == .finished)
    }

    @Test("S3: a prerequisite added to a queued step takes it out of the ready queue")
    func addPrerequisiteToQueuedStep() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 1))
        let a = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let b = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let c = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        #expect(s.nextAssignments().map(\.step) == [a])
        try s.addPrerequisites(to: b, [c])
        s.stepEnded(a, .finished)
        #expect(s.nextAssignments().map(\.step) == [c])
        s.stepEnded(c, .finished)
        #expect(s.nextAssignments().map(\.step) == [b])
    }

    @Test("Graph edits that make no sense are refused with a message naming the step")
    func refusedEdits() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 2))
        let a = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let b = try s.insert(spec(), prerequisites: [a], insertedBy: .protocolSteps)
        #expect(throws: StepGraphError.unknownStep(9, context: "prerequisite of new step 3 ('f')", at: nil)) {
            try s.insert(spec(), prerequisites: [9], insertedBy: .protocolSteps)
        }
        #expect(throws: StepGraphError.selfPrerequisite(3, at: nil)) {
            try s.insert(spec(), prerequisites: [3], insertedBy: .protocolSteps)
        }
        #expect(throws: StepGraphError.cycle(target: a, prerequisite: b, at: nil)) {
            try s.addPrerequisites(to: a, [b])
        }
        #expect(throws: StepGraphError.notWaiting(a, at: nil)) { try s.release(a) }
        _ = s.nextAssignments()
        #expect(throws: StepGraphError.alreadyStarted(a, status: .running, at: nil)) {
            try s.addPrerequisites(to: a, [b])
        }
        #expect(s.graph.count == 2, "a refused insert leaves no step behind")
        let message = StepGraphError.cycle(target: a, prerequisite: b, at: SourceLocation(file: "P/main.swift", line: 12)).description
        #expect(message.contains("P/main.swift:12") && message.contains("step 2") && message.contains("step 1"))
    }

    @Test("Arguments nested deeper than the wire allows are refused at insertion, naming the step and the argument")
    func nestingLimit() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 1))
        var deep: StepValue = 1
        for _ in 0..<WireCodec.maximumNesting { deep = [deep] }
        try s.insert(StepSpec(function: "ok", args: ["flat", deep]), prerequisites: [], insertedBy: .protocolSteps)
        #expect(throws: StepGraphError.nestedTooDeep(function: "deep", argument: 2, depth: WireCodec.maximumNesting + 1,
                                                     limit: WireCodec.maximumNesting, at: nil)) {
            try s.insert(StepSpec(function: "deep", args: ["flat", [deep]]), prerequisites: [], insertedBy: .protocolSteps)
        }
    }

    @Test("S5: a resource request that can never be met is refused at insertion")
    func impossibleRequests() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 2))
        #expect(throws: StepGraphError.threadsOutOfRange(function: "big", threads: 3, available: 2, at: nil)) {
            try s.insert(spec("big", threads: 3), prerequisites: [], insertedBy: .protocolSteps)
        }
        #expect(throws: StepGraphError.threadsOutOfRange(function: "zero", threads: 0, available: 2, at: nil)) {
            try s.insert(spec("zero", threads: 0), prerequisites: [], insertedBy: .protocolSteps)
        }
        #expect(throws: StepGraphError.noGPU(function: "gpu", at: nil)) {
            try s.insert(spec("gpu", gpu: true), prerequisites: [], insertedBy: .protocolSteps)
        }
        #expect(s.graph.count == 0)
    }

    @Test("S5: a multi-thread step takes k slots; GPUs are handed out and returned")
    func slotsAndGPUs() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 4, gpusPerRank: 1))
        let wide = try s.insert(spec(threads: 3), prerequisites: [], insertedBy: .protocolSteps)
        let g1 = try s.insert(spec(gpu: true), prerequisites: [], insertedBy: .protocolSteps)
        let g2 = try s.insert(spec(gpu: true), prerequisites: [], insertedBy: .protocolSteps)
        let a = s.nextAssignments()
        #expect(a.map(\.step) == [wide, g1])
        #expect(a[1].gpus == [0])
        s.stepEnded(g1, .finished)
        let b = s.nextAssignments()
        #expect(b.map(\.step) == [g2] && b[0].gpus == [0])
    }

    @Test("Launch deadline: a step expected to outlast it is left while shorter ones start; after it nothing starts; stopped for the time limit with work left the run ends as SIGTERM would, with none left it finished")
    func launchDeadline() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 2))
        let long = try s.insert(StepSpec(function: "long", expectedSeconds: 600), prerequisites: [], insertedBy: .protocolSteps)
        let short = try s.insert(StepSpec(function: "short", expectedSeconds: 5), prerequisites: [], insertedBy: .protocolSteps)
        let unknown = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let late = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        s.setLaunchDeadline(1000)
        #expect(s.nextAssignments(now: 900).map(\.step) == [short, unknown], "600 s do not fit in the 100 s left")
        #expect(s.heldForTimeLimit == 1)
        s.stepEnded(short, .finished)
        #expect(s.nextAssignments(now: 1000).isEmpty && s.graph.status(late) == .new, "at the deadline nothing starts, though a slot is free")
        s.stopForTimeLimit()
        #expect(s.outcome() == nil, "a running step finishes first")
        s.stepEnded(unknown, .finished)
        #expect(s.outcome() == .stoppedForTimeLimit && s.graph.status(long) == .new, "work is left: stopped, for a continue")
        // Without a deadline the long step would have gone first.
        var t = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 1))
        let only = try t.insert(StepSpec(function: "long", expectedSeconds: 600), prerequisites: [], insertedBy: .protocolSteps)
        #expect(t.nextAssignments(now: 900).map(\.step) == [only])
        t.setLaunchDeadline(2000)
        t.stopForTimeLimit()
        t.stepEnded(only, .finished)
        #expect(t.outcome() == .finished, "nothing was left: the run finished")
    }

    @Test("S5: serial mode runs one step at a time, in id order")
    func serialMode() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 4, mode: .serial))
        for _ in 0..<3 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        for id in 1...3 {
            #expect(s.nextAssignments().map(\.step) == [id])
            #expect(s.nextAssignments().isEmpty)
            s.stepEnded(id, .finished)
        }
        #expect(s.outcome() == .finished)
    }

    @Test("S7: after a failure the default policy launches nothing new")
    func stopPolicy() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 2))
        for _ in 0..<4 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        _ = s.nextAssignments()
        #expect(s.stepEnded(1, .failed(error: "boom")) == true)
        #expect(s.nextAssignments().isEmpty)
        #expect(s.outcome() == nil, "step 2 still runs")
        s.stepEnded(2, .finished)
        #expect(s.outcome() == .failed)
        #expect(s.graph.status(1) == .failed && s.graph.status(2) == .finished && s.graph.status(3) == .new)
    }

    @Test("S7: keep-going skips the failed step's dependents, transitively, and runs the rest")
    func keepGoing() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 1, failurePolicy: .keepGoing))
        let a = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        let b = try s.insert(spec(), prerequisites: [a], insertedBy: .protocolSteps)
        let c = try s.insert(spec(wait: true), prerequisites: [b], insertedBy: .protocolSteps)
        let d = try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps)
        _ = s.nextAssignments()
        #expect(s.stepEnded(a, .failed(error: "x")) == false)
        #expect(s.graph.status(b) == .skipped && s.graph.status(c) == .skipped)
        #expect(s.nextAssignments().map(\.step) == [d])
        s.stepEnded(d, .finished)
        let late = try s.insert(spec(), prerequisites: [b], insertedBy: .step(d))
        #expect(s.graph.status(late) == .skipped, "a step inserted after a failed prerequisite is skipped at once")
        #expect(s.outcome() == .failed)
    }

    @Test("S7: a step with retries runs again until it succeeds or runs out")
    func retries() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 1))
        let a = try s.insert(spec(retries: 2), prerequisites: [], insertedBy: .protocolSteps)
        for attempt in 1...2 {
            let x = s.nextAssignments()
            #expect(x.map(\.attempt) == [attempt])
            s.stepEnded(a, .failed(error: "try \(attempt)"))
        }
        #expect(s.nextAssignments().map(\.attempt) == [3])
        s.stepEnded(a, .finished)
        #expect(s.graph.record(a).status == .finished && s.graph.record(a).attempts == 3)
    }

    @Test("Steps handed back unstarted become ready again, in order")
    func handedBack() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 2))
        for _ in 0..<2 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        _ = s.nextAssignments()
        s.stepEnded(2, .notStarted)
        #expect(s.graph.status(2) == .new && s.graph.record(2).attempts == 0)
        #expect(s.nextAssignments().map(\.step) == [2])
    }

    @Test("S10: a signal aborts the steps that started; steps sent ahead but not started are new again")
    func abortOnSignal() throws {
        var s = Scheduler(config: SchedulerConfig(threadsPerRank: 1, prefetch: 1))
        for _ in 0..<3 { try s.insert(spec(), prerequisites: [], insertedBy: .protocolSteps) }
        #expect(s.nextAssignments().map(\.step) == [1, 2])
        s.noteRun(1, slot: 0, start: 100, end: nil, logPath: nil)
        s.abort(signal: 15)
        #expect(s.graph.records.map(\.status) == [.aborted, .new, .new])
        #expect(s.outcome() == .aborted(signal: 15))
        s.stepEnded(1, .finished)
        #expect(s.graph.status(1) == .aborted, "a report after the abort is ignored")
    }
}

/// The ready queue gives the lowest id first whatever order ids arrive in (S5: ready steps run in id order).
@Suite struct ReadyQueueTests {
    @Test("ReadyQueue pops the lowest id first for ascending, descending and random arrivals", arguments: 0..<20)
    func lowestFirst(_ seed: Int) {
        var rng = SeededRandom(seed: UInt64(seed) + 1)
        var queue = ReadyQueue()
        var reference: [Int] = []
        var next = 1
        for _ in 0..<2_000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:
                // Mostly ascending, as steps become ready in a run.
                queue.insert(next)
                reference.append(next)
                next += Int.random(in: 1...3, using: &rng)
            case 4..<6:
                let id = Int.random(in: 1...max(next, 1), using: &rng)
                queue.insert(id)
                reference.append(id)
            default:
                reference.sort()
                #expect(queue.min == reference.first)
                #expect(queue.popMin() == (reference.isEmpty ? nil : reference.removeFirst()))
            }
            #expect(queue.count == reference.count)
        }
        reference.sort()
        var drained: [Int] = []
        while let id = queue.popMin() { drained.append(id) }
        #expect(drained == reference && queue.isEmpty)
    }
}
