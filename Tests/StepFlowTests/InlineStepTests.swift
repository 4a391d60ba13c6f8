import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// A one-thread rank runs short steps on its message loop's own thread (`WorkerPool.runInline`): rank 0
/// on the coordinator's, the others on their `WorkerRuntime` loop. Such a step may still edit the
/// graph: while it waits for rank 0's answer, it serves the loop that would take the answer in.
@Suite struct InlineStepTests {
    /// Whether a step of `rank` runs on its rank's loop: rank 0's is the coordinator's thread (the
    /// one that called `Harness.run`), the others' the threads `InMemoryRanks` names.
    static func onLoop(rank: Int, coordinator: pthread_t) -> Bool {
        rank == 0 ? pthread_equal(pthread_self(), coordinator) != 0 : Thread.current.name == "stepflow-r\(rank)-loop"
    }

    @Test("S2/S3 with steps run inline: 600 short steps in chains, each inserting the next held, adding it a prerequisite and releasing it, all finish on 1 and 3 one-thread ranks, rank 0's inline",
          arguments: [1, 3])
    func inlineStepsEditTheGraph(ranks: Int) throws {
        let total = 600
        let inserted = Atomic<Int>(4 * ranks)
        let inlineByRank = Mutex<[Int: Int]>([:])
        let coordinator = pthread_self()
        var h = Harness()
        h.ranks = ranks
        h.threads = 1
        // Each step waits for three answers from rank 0: in a debug build that can pass a millisecond.
        h.inlineLimit = 0.05
        h.functions = [
            "grow": { step in
                if Self.onLoop(rank: step.rank, coordinator: coordinator) { inlineByRank.withLock { $0[step.rank, default: 0] += 1 } }
                guard inserted.wrappingAdd(1, ordering: .relaxed).newValue <= total else { return }
                // Three answers to wait for a step: an insert held back, an addPrerequisites to it (S3: a
                // step that has not started takes a new prerequisite), its release (S4).
                let next = try step.insertFunctionStep("grow", prerequisites: [], wait: true)
                let leaf = try step.insertFunctionStep("leaf", prerequisites: [])
                try step.addPrerequisites(to: next, [leaf])
                try step.release(next)
            },
            "leaf": { _ in },
        ]
        // Chains side by side, so every rank gets some.
        let chains = 4 * ranks
        let report = try h.run { steps in
            for _ in 0..<chains { try steps.insertFunctionStep("grow", prerequisites: []) }
        }
        #expect(report.outcome == .finished, "\(report.hookError ?? "") \(report.records.compactMap(\.error))")
        #expect(report.count(.finished) == report.records.count)
        #expect(report.records.filter { $0.spec.function == "grow" }.count == total)
        for record in report.records where record.spec.function == "grow" && record.id > 4 * ranks {
            #expect(record.prerequisites.count == 1, "step \(record.id) got its added prerequisite")
        }
        let inline = inlineByRank.withLock { $0 }
        // Rank 0 runs most steps of a chain (it answers itself without a message); the other ranks'
        // loops are shown by `editWhileInlineServesTheLoop`, and their speed by Task Bench.
        #expect(inlineByRank.withLock { $0[0, default: 0] } > 0, "rank 0 ran steps inline: \(inlineByRank.withLock { $0 })")
    }

    @Test("A step run inline that edits the graph serves its owner's loop while it waits, on the owner's thread, until the answer comes; once the run stopped, the edit fails saying so")
    func editWhileInlineServesTheLoop() throws {
        let replies = ReplyTable()
        let requests = Mutex<[(UInt32, StepRequest)]>([])
        let served = Mutex<(count: Int, offThread: Int)>((0, 0))
        let stopped = Atomic<Bool>(false)
        let owner = pthread_self()
        let answers = Mutex<[String]>([])
        // The owner's loop: answers every request it finds (as rank 0 would) with the id 1000 + token.
        let serve: @Sendable () -> Bool = {
            served.withLock { $0.count += 1; if pthread_equal(pthread_self(), owner) == 0 { $0.offThread += 1 } }
            if stopped.load(ordering: .relaxed) { return false }
            for (token, _) in requests.withLock({ r in defer { r.removeAll() }; return r }) {
                replies.fill(token, with: .success(1000 + Int(token)))
            }
            return true
        }
        let channel = TokenRequestChannel(replies: replies, push: { event in
            if case .request(let token, let request) = event { requests.withLock { $0.append((token, request)) } }
        })
        let ended = Mutex<[StepOutcome]>([])
        let pool = WorkerPool(rank: 1, threads: 1,
                              executor: StepExecutor(functions: ["edit": { step in
                                  do {
                                      let id = try step.insertFunctionStep("edit", prerequisites: [])
                                      answers.withLock { $0.append("inserted \(id)") }
                                  } catch {
                                      answers.withLock { $0.append("\(error)") }
                                  }
                              }]),
                              runDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-inline-\(UUID().uuidString)"),
                              inlineOwner: true, serveOwnerLoop: serve, channel: channel,
                              report: { if case .ended(let o) = $0 { ended.withLock { $0.append(o) } } })
        // On a slot's thread first (their answers come from this test's loop below), until the
        // function counts as short and a step is left to this thread.
        var id = 0
        var inlineRan = false
        while !inlineRan && id < 200 {
            id += 1
            pool.submit([StepAssignment(id: id, function: "edit", args: [], threads: 1, gpus: [], attempt: 1)])
            inlineRan = pool.runInline()
            let deadline = Date().addingTimeInterval(30)
            while ended.withLock({ $0.count }) < id && Date() < deadline { _ = serve() ; usleep(100) }
        }
        #expect(inlineRan, "a step was left to the owner's thread")
        #expect(answers.withLock { $0.last } == "inserted \(1000 + id)", "the inline step got its answer: \(answers.withLock { $0.last ?? "" })")
        #expect(served.withLock { $0.offThread } == 0, "the loop was served on the owner's thread only")

        // The run stops while the next inline step waits: its edit fails, and the step ends.
        stopped.store(true, ordering: .relaxed)
        pool.submit([StepAssignment(id: id + 1, function: "edit", args: [], threads: 1, gpus: [], attempt: 1)])
        #expect(pool.runInline())
        #expect(answers.withLock { $0.last }?.contains("the run stopped before rank 0 answered step \(id + 1)") == true,
                "\(answers.withLock { $0.last ?? "" })")
        pool.shutdown()
    }

    @Test("A step run on its rank's loop reports its start only if it edits the graph, once, before its first request; otherwise its end alone says when it started, failed or not. A step on a slot's thread reports its start as it starts")
    func inlineStartHeldUntilAnEdit() throws {
        let log = Mutex<[String]>([])
        let replies = ReplyTable()
        let tokens = Mutex<[UInt32]>([])
        let serve: @Sendable () -> Bool = {
            for token in tokens.withLock({ t in defer { t.removeAll() }; return t }) { replies.fill(token, with: .success(1000 + Int(token))) }
            return true
        }
        let channel = TokenRequestChannel(replies: replies, push: { event in
            guard case .request(let token, let request) = event else { return }
            log.withLock { $0.append("request \(request.from)") }
            tokens.withLock { $0.append(token) }
        })
        let pool = WorkerPool(rank: 1, threads: 1,
                              executor: StepExecutor(functions: [
                                  "quiet": { _ in },
                                  "fail": { _ in throw GraphEditError("failed on purpose") },
                                  "edit": { step in
                                      _ = try step.insertFunctionStep("quiet", prerequisites: [])
                                      _ = try step.insertFunctionStep("quiet", prerequisites: [])
                                  },
                              ]),
                              runDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-inline-\(UUID().uuidString)"),
                              inlineOwner: true, serveOwnerLoop: serve, channel: channel,
                              report: { report in
                                  switch report {
                                  case .started(let s): log.withLock { $0.append("started \(s.id)") }
                                  case .ended(let o): log.withLock { $0.append("ended \(o.id) \(o.report) start \(o.start != nil)") }
                                  default: break
                                  }
                              })
        defer { pool.shutdown() }
        var id = 0
        /// Runs one step of `function`; returns its id if it ran on this thread (the pool's loop).
        func runUntilInline(_ function: String) -> Int? {
            while id < 300 {
                id += 1
                pool.submit([StepAssignment(id: id, function: function, args: [], threads: 1, gpus: [], attempt: 1)])
                let inline = pool.runInline()
                let deadline = Date().addingTimeInterval(30)
                while !log.withLock({ $0.contains { $0.hasPrefix("ended \(id) ") } }) && Date() < deadline { _ = serve(); usleep(100) }
                if inline { return id }
            }
            return nil
        }
        let quiet = try #require(runUntilInline("quiet"), "a quiet step ran on the loop")
        let failed = try #require(runUntilInline("fail"), "a failing step ran on the loop")
        let edit = try #require(runUntilInline("edit"), "an editing step ran on the loop")
        let lines = log.withLock { $0 }
        // The first step ran on a slot's thread: its start came first.
        let firstStart = try #require(lines.firstIndex(of: "started 1"), "\(lines.prefix(4))")
        let firstEnd = try #require(lines.firstIndex(of: "ended 1 finished start true"), "\(lines.prefix(4))")
        #expect(firstStart < firstEnd)
        #expect(!lines.contains("started \(failed)"), "no start for \(failed): \(lines.suffix(8))")
        #expect(lines.contains { $0.hasPrefix("ended \(failed) failed") && $0.hasSuffix("start true") }, "\(lines.suffix(8))")
        #expect(!lines.contains("started \(quiet)"), "no start for \(quiet): \(lines.suffix(8))")
        #expect(lines.contains("ended \(quiet) finished start true"), "\(lines.suffix(8))")
        let started = try #require(lines.firstIndex(of: "started \(edit)"), "\(lines.suffix(8))")
        let request = try #require(lines.firstIndex(of: "request \(edit)"), "\(lines.suffix(8))")
        let ended = try #require(lines.firstIndex(of: "ended \(edit) finished start true"), "\(lines.suffix(8))")
        #expect(started < request && request < ended, "\(lines.suffix(8))")
        #expect(lines.filter { $0 == "started \(edit)" }.count == 1, "one start for two edits: \(lines.suffix(8))")
        #expect(lines.filter { $0 == "request \(edit)" }.count == 2, "\(lines.suffix(8))")
    }
}
