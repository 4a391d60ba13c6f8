import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// What the test itself meant each step to depend on and to do, kept apart from the engine's records.
final class GraphPlan: Sendable {
    let intended = Mutex<[StepID: Set<StepID>]>([:])
    let failing = Mutex<Set<StepID>>([])
    let runs = Mutex<[StepID: Int]>([:])

    func note(_ id: StepID, prerequisites: [StepID], fails: Bool) {
        intended.withLock { $0[id] = Set(prerequisites) }
        if fails { failing.withLock { _ = $0.insert(id) } }
    }
}

/// Random DAGs with run-time inserts, on T = 1...4 (and two simulated ranks): every step runs exactly
/// once, never before its prerequisites finished, and every status is accounted for.
@Suite struct RandomGraphTests {
    /// Inserts one random step on behalf of `inserter` and notes what it should depend on.
    static func insertRandom(_ inserter: some StepInserting, plan: GraphPlan, rng: inout SeededRandom,
                             candidates: [StepID], lastOwn: StepID?, spawnBudget: Int, failRate: Double) throws -> StepID {
        let fails = Double.random(in: 0..<1, using: &rng) < failRate
        let spawn = spawnBudget > 0 && Int.random(in: 0..<8, using: &rng) == 0 ? Int.random(in: 1...6, using: &rng) : 0
        let args: [StepValue] = [.int(Int(rng.next() >> 1)), .bool(fails), .int(spawn)]
        let id: StepID
        let prereqs: [StepID]
        if Int.random(in: 0..<4, using: &rng) == 0 {
            id = try inserter.insertFunctionStep("node", arguments: args)  // default prerequisite (S2)
            prereqs = lastOwn.map { [$0] } ?? []
        } else {
            let k = candidates.isEmpty ? 0 : Int.random(in: 0...min(3, candidates.count), using: &rng)
            prereqs = (0..<k).map { _ in candidates.randomElement(using: &rng)! }
            id = try inserter.insertFunctionStep("node", arguments: args, prerequisites: prereqs)
        }
        plan.note(id, prerequisites: prereqs, fails: fails)
        return id
    }

    static func run(seed: UInt64, threads: Int, ranks: Int, keepGoing: Bool) throws -> (RunReport, GraphPlan, Intervals) {
        let plan = GraphPlan()
        let iv = Intervals()
        let failRate = keepGoing ? 0.04 : 0
        var h = Harness(threads: threads, ranks: ranks, policy: keepGoing ? .keepGoing : .stop)
        h.functions = ["node": { step in
            plan.runs.withLock { $0[step.id, default: 0] += 1 }
            try iv.record(step) {
                var rng = SeededRandom(seed: UInt64(step.args[0].intValue!))
                if Int.random(in: 0..<3, using: &rng) == 0 { Thread.sleep(forTimeInterval: Double.random(in: 0..<0.0003, using: &rng)) }
                var own: [StepID] = []
                for _ in 0..<(step.args[2].intValue ?? 0) {
                    // A child may depend on its running parent, on its older siblings, or on older steps.
                    let candidates = own + [step.id] + (1..<step.id).shuffled(using: &rng).prefix(2)
                    own.append(try insertRandom(step, plan: plan, rng: &rng, candidates: candidates,
                                                lastOwn: own.last, spawnBudget: 1, failRate: failRate))
                }
                if step.args[1] == .bool(true) { throw Boom() }
            }
        }]
        var rng = SeededRandom(seed: seed)
        let report = try h.run { steps in
            var last: StepID?
            for _ in 0..<200 {
                last = try insertRandom(steps, plan: plan, rng: &rng, candidates: last.map { Array(1...$0) } ?? [],
                                        lastOwn: last, spawnBudget: 1, failRate: failRate)
            }
        }
        return (report, plan, iv)
    }

    @Test("Random DAGs: each step runs once, after its prerequisites", arguments: [
        (1, 1, UInt64(11)), (2, 1, 12), (3, 1, 13), (4, 1, 14), (2, 2, 15), (4, 2, 16),
    ])
    func randomGraphs(threads: Int, ranks: Int, seed: UInt64) throws {
        let (report, plan, iv) = try Self.run(seed: seed, threads: threads, ranks: ranks, keepGoing: false)
        #expect(report.outcome == .finished, "seed \(seed)")
        #expect(report.records.count > 200, "running steps inserted steps")
        let runs = plan.runs.withLock { $0 }
        let intended = plan.intended.withLock { $0 }
        #expect(intended.count == report.records.count)
        for r in report.records {
            #expect(runs[r.id] == 1, "step \(r.id) ran \(runs[r.id] ?? 0) times (seed \(seed))")
            #expect(Set(r.prerequisites) == intended[r.id], "step \(r.id) prerequisites")
            let start = try #require(iv.of(r.id)).start
            for p in intended[r.id] ?? [] {
                let end = try #require(iv.of(p)).end
                #expect(end <= start, "step \(r.id) started before its prerequisite \(p) ended (seed \(seed))")
            }
        }
    }

    @Test("Random DAGs with failures under --keep-going: failed, skipped and finished exactly where they should be",
          arguments: [(1, UInt64(21)), (3, 22), (4, 23)])
    func randomFailures(threads: Int, seed: UInt64) throws {
        let (report, plan, _) = try Self.run(seed: seed, threads: threads, ranks: 1, keepGoing: true)
        let failing = plan.failing.withLock { $0 }
        let runs = plan.runs.withLock { $0 }
        #expect(!failing.isEmpty)
        // Expected status from the plan alone: failed if it throws and ran; skipped if an ancestor failed.
        var expected: [StepID: StepStatus] = [:]
        for r in report.records {
            let blocked = r.prerequisites.contains { [.failed, .skipped].contains(expected[$0]) }
            expected[r.id] = blocked ? .skipped : failing.contains(r.id) ? .failed : .finished
        }
        for r in report.records {
            #expect(r.status == expected[r.id], "step \(r.id): \(r.status) (seed \(seed))")
            #expect((runs[r.id] ?? 0) == (r.status == .skipped ? 0 : 1))
        }
        #expect(report.outcome == .failed)
        #expect(report.records.allSatisfy { $0.status.isTerminal })
    }
}
