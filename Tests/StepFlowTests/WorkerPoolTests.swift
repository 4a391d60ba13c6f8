import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// A rank's T slots on their own: slots never starve each other, steps start in order and as room
/// frees up, and the pool's calls (take back, stop, shutdown) do what they say. Every wait here has a
/// deadline, so a pool that cannot run its steps fails the test instead of hanging it.
@Suite struct WorkerPoolTests {
    /// Long enough that only a pool that cannot run a step fails; a failing case ends after it.
    static let deadline: Double = 60

    @Test("Short runs are counted per function: another function's runs in between neither reset nor borrow a function's count, and one long run starts it over")
    func shortRunsCountedPerFunction() {
        var counts = ShortRunCounts()
        for _ in 0..<8 { counts.record("a", short: true) }
        for _ in 0..<3 { counts.record("b", short: true) }
        #expect(counts.count(of: "a") == 8 && counts.count(of: "b") == 3 && counts.count(of: "c") == 0)
        counts.record("a", short: true)
        #expect(counts.count(of: "a") == 9 && counts.count(of: "b") == 3)
        counts.record("b", short: false)
        #expect(counts.count(of: "b") == 0 && counts.count(of: "a") == 9)
        counts.record("c", short: true)
        counts.record("a", short: false)
        counts.record("b", short: true)
        #expect(counts.count(of: "a") == 0 && counts.count(of: "b") == 1 && counts.count(of: "c") == 1)
        // A function named "" is a function like any other.
        counts.record("", short: true)
        #expect(counts.count(of: "") == 1 && counts.count(of: "c") == 1)
    }

    @Test("T steps that each wait until all T have started all finish: a blocked slot never starves another",
          arguments: [(pools: 1, threads: 4), (pools: 1, threads: 8),
                      // Past libdispatch's 255 overcommit threads, in one pool and across pools of a process.
                      (pools: 1, threads: 300), (pools: 3, threads: 100)])
    func blockedSlotsDoNotStarve(pools: Int, threads: Int) throws {
        let total = pools * threads
        let gate = Gate(parties: total)
        let recorders = (0..<pools).map { _ in Recorder() }
        let executor = StepExecutor(functions: ["meet": { _ in try gate.arriveAndWait(timeout: Self.deadline) }])
        let made = (0..<pools).map { rank in
            WorkerPool(rank: rank, threads: threads, executor: executor, runDirectory: Self.scratch(), channel: Self.noChannel,
                       report: recorders[rank].record)
        }
        for (rank, pool) in made.enumerated() {
            pool.submit((1...threads).map { Self.step(rank * threads + $0, "meet") })
        }
        for recorder in recorders { #expect(recorder.waitForEnded(threads, timeout: Self.deadline)) }
        gate.open()  // After a failure, lets the steps still waiting go, so the pools can shut down.
        made.forEach { $0.shutdown() }
        #expect(gate.arrived == total)
        for recorder in recorders {
            #expect(recorder.outcomes.allSatisfy { $0.report == .finished }, "\(recorder.outcomes.filter { $0.report != .finished })")
            #expect(recorder.outcomes.map(\.slot).sorted() == Array(0..<threads), "each step on a slot of its own")
        }
    }

    @Test("T steps that each ask rank 0 to insert a step, then wait for each other, all finish", arguments: [4, 8])
    func replyWaitsDoNotStarve(threads: Int) throws {
        let gate = Gate(parties: 2 * threads)
        var h = Harness(threads: threads, ranks: 2)
        h.functions = [
            "child": { _ in },
            "meet": { step in
                try step.insertFunctionStep("child", prerequisites: [])
                try gate.arriveAndWait(timeout: Self.deadline)
            },
        ]
        let report = try h.run { steps in
            for _ in 0..<(2 * threads) { try steps.insertFunctionStep("meet", prerequisites: []) }
        }
        #expect(report.outcome == .finished)
        #expect(report.records.count == 4 * threads)
    }

    @Test("Steps start in the order they came: a step that needs every slot waits for room and holds back the steps behind it")
    func wideStepHoldsBackTheQueue() throws {
        let recorder = Recorder()
        let release = Gate(parties: 1)
        let executor = StepExecutor(functions: [
            "hold": { _ in try release.waitUntilOpen(timeout: Self.deadline) },
            "quick": { _ in },
        ])
        let pool = WorkerPool(rank: 0, threads: 3, executor: executor, runDirectory: Self.scratch(), channel: Self.noChannel,
                              report: recorder.record)
        pool.submit([Self.step(1, "hold"), Self.step(2, "hold"), Self.step(3, "quick", threads: 3), Self.step(4, "quick")])
        #expect(recorder.waitForStarted(2, timeout: Self.deadline))
        Thread.sleep(forTimeInterval: 0.2)
        #expect(recorder.startedIDs.sorted() == [1, 2], "step 3 needs all 3 slots; step 4 fits but comes after it")
        release.open()
        pool.shutdown()
        #expect(recorder.startedIDs.suffix(2) == [3, 4])
        let ended = recorder.outcomes
        let three = try #require(ended.first { $0.id == 3 })
        #expect(ended.filter { [1, 2].contains($0.id) }.allSatisfy { $0.end! <= three.start! })
        #expect(recorder.outcomes.allSatisfy { $0.report == .finished })
    }

    @Test("Taking back the step that waits for room lets the step behind it start")
    func takeBackUnblocksTheQueue() throws {
        let recorder = Recorder()
        let release = Gate(parties: 1)
        let executor = StepExecutor(functions: [
            "hold": { _ in try release.waitUntilOpen(timeout: Self.deadline) },
            "quick": { _ in },
        ])
        let pool = WorkerPool(rank: 0, threads: 2, executor: executor, runDirectory: Self.scratch(), channel: Self.noChannel,
                              report: recorder.record)
        pool.submit([Self.step(1, "hold"), Self.step(2, "quick", threads: 2), Self.step(3, "quick")])
        #expect(recorder.waitForStarted(1, timeout: Self.deadline))
        Thread.sleep(forTimeInterval: 0.2)  // The other slot has settled to wait for room by now.
        pool.takeBack([2])
        #expect(recorder.waitForEnded(2, timeout: Self.deadline), "step 2 handed back, step 3 run")
        #expect(recorder.outcomes.first { $0.id == 2 }?.report == .notStarted)
        #expect(recorder.outcomes.first { $0.id == 3 }?.report == .finished)
        release.open()
        pool.shutdown()
        #expect(recorder.outcomes.count == 3)
    }

    @Test("takeBackUnstarted hands back the queue; shutdown waits for the running steps")
    func takeBackUnstartedAndShutdown() throws {
        let recorder = Recorder()
        let release = Gate(parties: 1)
        let executor = StepExecutor(functions: ["hold": { _ in try release.waitUntilOpen(timeout: Self.deadline) }])
        let pool = WorkerPool(rank: 0, threads: 2, executor: executor, runDirectory: Self.scratch(), channel: Self.noChannel,
                              report: recorder.record)
        pool.submit((1...5).map { Self.step($0, "hold") })
        #expect(recorder.waitForStarted(2, timeout: Self.deadline))
        pool.takeBackUnstarted()
        #expect(recorder.outcomes.map(\.id).sorted() == [3, 4, 5])
        #expect(recorder.outcomes.allSatisfy { $0.report == .notStarted && $0.slot == -1 })
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { release.open() }
        pool.shutdown()
        #expect(recorder.outcomes.filter { $0.report == .finished }.map(\.id).sorted() == [1, 2])
    }

    @Test("stopLaunching drops the queue and cancels the running steps without waiting for them")
    func stopLaunching() throws {
        let recorder = Recorder()
        let executor = StepExecutor(functions: ["untilCancelled": { step in
            let end = Date().addingTimeInterval(Self.deadline)
            while !step.cancellation.isCancelled {
                guard Date() < end else { throw Boom() }
                Thread.sleep(forTimeInterval: 0.005)
            }
        }])
        let pool = WorkerPool(rank: 0, threads: 2, executor: executor, runDirectory: Self.scratch(), channel: Self.noChannel,
                              report: recorder.record)
        pool.submit((1...4).map { Self.step($0, "untilCancelled") })
        #expect(recorder.waitForStarted(2, timeout: Self.deadline))
        pool.stopLaunching()
        #expect(recorder.waitForEnded(2, timeout: Self.deadline))
        pool.shutdown()
        #expect(recorder.startedIDs.sorted() == [1, 2], "steps 3 and 4 were dropped (1 and 2 start on two slots at once, in either order)")
        #expect(recorder.outcomes.map(\.id).sorted() == [1, 2])
        #expect(recorder.outcomes.allSatisfy { $0.report == .finished })
    }

    @Test("Steps run with the signal mask of the thread that made the pool (SIGINT and SIGTERM not blocked)")
    func stepsKeepTheCreatorsSignalMask() throws {
        let recorder = Recorder()
        let blocked = Mutex<[Bool]>([])
        let executor = StepExecutor(functions: ["mask": { _ in
            var current = sigset_t()
            pthread_sigmask(SIG_SETMASK, nil, &current)
            blocked.withLock { $0.append(sigismember(&current, SIGTERM) == 1 || sigismember(&current, SIGINT) == 1) }
        }])
        // Made on a thread of ours whose mask leaves both unblocked, as rank 0's main thread after
        // SignalWatch.install; the test's own thread may be a Dispatch worker, which blocks them.
        let made = Mutex<WorkerPool?>(nil)
        let ready = DispatchSemaphore(value: 0)
        Thread {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGINT)
            sigaddset(&set, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            made.withLock {
                $0 = WorkerPool(rank: 0, threads: 2, executor: executor, runDirectory: Self.scratch(), channel: Self.noChannel,
                                report: recorder.record)
            }
            ready.signal()
        }.start()
        #expect(ready.wait(timeout: .now() + Self.deadline) == .success)
        let pool = try #require(made.withLock { $0 })
        pool.submit((1...4).map { Self.step($0, "mask") })
        pool.shutdown()
        #expect(blocked.withLock { $0 } == [false, false, false, false])
    }

    // MARK: - Helpers

    @Test("A one-slot pool whose owner runs steps: once a function ran short inlineAfter times in a row, its next step waits for the owner's thread and runs there; one long run sends its steps back to a slot's thread")
    func shortStepsRunOnTheOwnersThread() throws {
        let recorder = Recorder()
        let ranOn = Mutex<[StepID: UInt]>([:])
        let longOnce = Mutex<StepID?>(nil)
        var executor = StepExecutor(functions: [
            "work": { step in
                ranOn.withLock { $0[step.id] = UInt(bitPattern: Int(bitPattern: pthread_self())) }
                if longOnce.withLock({ $0 == step.id }) { Thread.sleep(forTimeInterval: 0.4) }
            },
        ])
        // Short is under 0.2 s here: an empty step preempted on a loaded machine still counts as short.
        executor.inlineLimit = 0.2
        let pool = WorkerPool(rank: 1, threads: 1, executor: executor, runDirectory: Self.scratch(), inlineOwner: true,
                              channel: Self.noChannel, report: recorder.record)
        let owner = UInt(bitPattern: Int(bitPattern: pthread_self()))
        var id = 0
        /// Submits one step; returns whether it was left to this thread (and ran here).
        func submitOne() -> Bool {
            id += 1
            pool.submit([Self.step(id, "work")])
            let inline = pool.runInline()
            #expect(recorder.waitForEnded(id, timeout: Self.deadline))
            return inline
        }
        // Until the count is reached, every step runs on a slot's thread.
        var beforeInline = 0
        while !submitOne() {
            beforeInline += 1
            try #require(beforeInline < 100, "no step was left to the owner after \(beforeInline) short runs")
        }
        #expect(beforeInline >= WorkerPool.inlineAfter)
        #expect(ranOn.withLock { $0[id] } == owner, "the step left to the owner ran on the owner's thread")
        #expect((1..<id).allSatisfy { i in ranOn.withLock { $0[i] } != owner }, "steps before it ran on a slot's thread")

        // A step left to the owner and taken back before it runs is handed back, not run.
        id += 1
        pool.submit([Self.step(id, "work")])
        pool.takeBack([id])
        #expect(recorder.waitForEnded(id, timeout: Self.deadline))
        #expect(recorder.outcomes.last?.report == .notStarted)
        #expect(!pool.runInline(), "nothing is left to run")

        // One long run: the next step of the function goes to a slot's thread again.
        longOnce.withLock { $0 = id + 1 }
        #expect(submitOne(), "the long step was still left to the owner: its function had run short")
        #expect(!submitOne(), "after a long run the function's steps go to a slot's thread")
        #expect(ranOn.withLock { $0[id] } != owner)

        while !submitOne() {}
        // Several queued short steps: with no budget one runs; with one, the rest run back to back.
        pool.submit((1...5).map { Self.step(id + $0, "work") })
        #expect(pool.runInline())
        #expect(recorder.outcomes.count == id + 1, "one step for a look with no budget")
        #expect(pool.runInline(upTo: .seconds(30)))
        #expect(recorder.outcomes.count == id + 5, "the other four in one go")
        #expect((id + 1...id + 5).allSatisfy { i in ranOn.withLock { $0[i] } == owner })
        id += 5

        // Steps left to the owner when the pool shuts down run before it returns.
        pool.submit([Self.step(id + 1, "work"), Self.step(id + 2, "work")])
        pool.shutdown()
        #expect(recorder.outcomes.suffix(2).map(\.id) == [id + 1, id + 2])
        #expect(recorder.outcomes.suffix(2).allSatisfy { $0.report == .finished })
    }

    @Test("A slot's thread running a queue of short steps stops once their function counts as short: the rest wait for the owner's thread, where they run back to back")
    func aSlotHandsAQueueOfShortStepsToTheOwner() throws {
        let recorder = Recorder()
        let ranOn = Mutex<[StepID: UInt]>([:])
        var executor = StepExecutor(functions: [
            "work": { step in ranOn.withLock { $0[step.id] = UInt(bitPattern: Int(bitPattern: pthread_self())) } },
        ])
        executor.inlineLimit = 0.2
        let pool = WorkerPool(rank: 1, threads: 1, executor: executor, runDirectory: Self.scratch(), inlineOwner: true,
                              channel: Self.noChannel, report: recorder.record)
        let owner = UInt(bitPattern: Int(bitPattern: pthread_self()))
        let count = 3 * WorkerPool.inlineAfter
        // All at once, none yet known short: the first goes to a slot's thread, which takes the next
        // ones itself. Once the function ran short `inlineAfter` times, the slot leaves the queue:
        // kept, the whole run would go on that thread while the owner's loop ran beside it, two
        // threads on a rank meant to use one core (a Task Bench chain of 5 µs steps kept rank 0's
        // loop passing once a step, on its own core, beside the slot).
        pool.submit((1...count).map { Self.step($0, "work") })
        #expect(recorder.waitForEnded(WorkerPool.inlineAfter, timeout: Self.deadline))
        Thread.sleep(forTimeInterval: 0.05)
        #expect(recorder.outcomes.count == WorkerPool.inlineAfter, "the slot went on past the count")
        #expect(pool.runInline(upTo: .seconds(30)))
        #expect(recorder.outcomes.count == count, "the owner ran the rest in one go")
        #expect((1...WorkerPool.inlineAfter).allSatisfy { i in ranOn.withLock { $0[i] } != owner })
        #expect((WorkerPool.inlineAfter + 1...count).allSatisfy { i in ranOn.withLock { $0[i] } == owner })
        pool.shutdown()
    }

    @Test("A pool of several slots, or one whose owner does not run steps, never leaves a step waiting for runInline")
    func noInlineWithoutAnOwnerOfOneSlot() throws {
        for (threads, owner) in [(2, true), (1, false)] {
            let recorder = Recorder()
            let pool = WorkerPool(rank: 1, threads: threads, executor: StepExecutor(functions: ["work": { _ in }]),
                                  runDirectory: Self.scratch(), inlineOwner: owner, channel: Self.noChannel, report: recorder.record)
            for i in 1...(3 * WorkerPool.inlineAfter) {
                pool.submit([Self.step(i, "work")])
                #expect(recorder.waitForEnded(i, timeout: Self.deadline), "step \(i) of a \(threads)-slot pool ran without the owner")
                #expect(!pool.runInline())
            }
            pool.shutdown()
        }
    }

    static func step(_ id: StepID, _ function: String, threads: Int = 1) -> StepAssignment {
        StepAssignment(id: id, function: function, args: [], threads: threads, gpus: [], attempt: 1)
    }

    /// The steps here never ask rank 0 for anything.
    static let noChannel = TokenRequestChannel(replies: ReplyTable(), push: { _ in })

    static func scratch() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-pool-test-\(UUID().uuidString)")
    }
}
