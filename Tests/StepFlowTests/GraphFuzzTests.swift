import Foundation
import Testing
@testable import StepFlow

/// Random retries, re-insertions, edits and continues over StepGraph, checking its bookkeeping after
/// every event: counts, dependents, the ready queue, the continue plan's id mapping, and that nothing
/// is left waiting for an inserter that will not run again.
@Suite struct GraphFuzzTests {
    enum Pre: Hashable { case none, last, proto(Int) }
    struct Child: Hashable { var arg: Int; var pre: Pre; var wait: Bool }

    struct World {
        var g: StepGraph
        var rng: SeededRandom
        var running: [StepID] = []
        var plans: [StepID: [Child]] = [:]
        var inserted: [StepID: Int] = [:]
        var last: [StepID: StepID] = [:]
        var protocolCount = 0
        var waitSteps: [StepID] = []
        var problems: [String] = []
        var keepGoing: Bool

        mutating func check(_ what: String) {
            let g = self.g
            var counts = [Int](repeating: 0, count: StepStatus.allCases.count)
            for r in g.records where !r.isDropped {
                counts[r.status.ordinal] += 1
                // A running step's prerequisites finished; one that may be taken back later (held for
                // its inserter's re-run) makes it run again then, through staleRuns.
                if r.status == .running {
                    for p in r.prerequisites where g.status(p) != .finished && !g.staleRuns.contains(r.id) {
                        problems.append("\(what): step \(r.id) runs while its prerequisite \(p) is \(g.status(p))")
                    }
                }
                guard r.status == .new || r.status == .waiting || r.status == .finished else { continue }
                for p in r.prerequisites where !g.contains(p) { problems.append("\(what): step \(r.id) names dropped step \(p)") }
                let expected = r.prerequisites.filter { g.contains($0) && !g.isDone($0) }
                if Int(g.remaining[r.id - 1]) != expected.count {
                    problems.append("\(what): step \(r.id) remaining \(g.remaining[r.id - 1]) but \(expected.count) unfinished prerequisites \(expected)")
                }
                for p in expected where !g.dependents[p - 1].contains(Int32(r.id)) {
                    problems.append("\(what): step \(r.id) waits on \(p) but is not among its dependents")
                }
                if g.isReady(r.id) && !g.queued[r.id - 1] { problems.append("\(what): step \(r.id) ready but not queued") }
            }
            for s in StepStatus.allCases where counts[s.ordinal] != g.count(s) {
                problems.append("\(what): count(\(s)) \(g.count(s)) but \(counts[s.ordinal])")
            }
        }

        mutating func take() {
            guard let id = g.takeReady() else { return }
            for p in g.record(id).prerequisites where !(g.status(p) == .finished && !g.isUnconfirmed(p)) {
                problems.append("step \(id) started before prerequisite \(p) (\(g.status(p)), unconfirmed \(g.isUnconfirmed(p)))")
            }
            running.append(id)
            inserted[id] = 0
            last[id] = nil
            if plans[id] == nil {
                let depth = depthOf(id)
                let n = depth >= 2 || g.records.count > 150 ? 0 : Int.random(in: 0...4, using: &rng)
                plans[id] = (0..<n).map { _ in
                    Child(arg: Int.random(in: 0...2, using: &rng),
                          pre: [Pre.none, .last, .proto(Int.random(in: 1...protocolCount, using: &rng))].randomElement(using: &rng)!,
                          wait: Int.random(in: 0..<8, using: &rng) == 0)
                }
            } else if Int.random(in: 0..<3, using: &rng) == 0, var plan = plans[id], !plan.isEmpty {
                // This attempt inserts something else from some position on.
                let k = Int.random(in: 0..<plan.count, using: &rng)
                if Bool.random(using: &rng) { plan[k].arg += 10 } else { plan.removeSubrange(k...) }
                plans[id] = plan
            }
        }

        func depthOf(_ id: StepID) -> Int {
            var d = 0, s = id
            while case .step(let p) = g.record(s).insertedBy { d += 1; s = p }
            return d
        }

        mutating func insertNext(_ s: StepID) {
            guard let plan = plans[s], let k = inserted[s], k < plan.count else { return }
            let c = plan[k]
            let pre: [StepID]
            switch c.pre {
            case .none: pre = []
            case .last: pre = last[s].map { [$0] } ?? []
            case .proto(let p): pre = [p]
            }
            do {
                let id = try g.insert(StepSpec(function: "c\(k)", args: [.int(c.arg)], retries: Int.random(in: 0...1, using: &rng), wait: c.wait),
                                      prerequisites: pre, insertedBy: .step(s))
                last[s] = id
                inserted[s] = k + 1
                if c.wait { waitSteps.append(id) }
            } catch {
                problems.append("insert by \(s) refused: \(error)")
                inserted[s] = plan.count
            }
        }

        mutating func step() {
            let op = Int.random(in: 0..<10, using: &rng)
            // FUZZ_TRACE=1 FUZZ_SEED=n: every operation and the graph after it, to follow one seed.
            if ProcessInfo.processInfo.environment["FUZZ_TRACE"] != nil { print("OP", op, "running", running, g.records.map { "\($0.id):\($0.status)\($0.isDropped ? "D" : "")\(g.isUnconfirmed($0.id) ? "U" : "")<\($0.prerequisites)" }) }
            switch op {
            case 0...2: take()
            case 3...5:
                guard let s = running.randomElement(using: &rng) else { take(); return }
                insertNext(s)
            case 6:
                guard let i = running.indices.randomElement(using: &rng) else { return }
                let s = running.remove(at: i)
                // A step finishes after its inserts (most of the time).
                while Int.random(in: 0..<5, using: &rng) != 0, let k = inserted[s], k < (plans[s]?.count ?? 0) { insertNext(s) }
                g.finish(s)
            case 7:
                guard let i = running.indices.randomElement(using: &rng) else { return }
                _ = g.fail(running.remove(at: i), error: "x")
            case 8:
                guard let s = running.randomElement(using: &rng), let w = waitSteps.randomElement(using: &rng), g.contains(w),
                      let child = last[s], g.contains(child), child != w else { return }
                try? g.addPrerequisites(to: w, [child], by: .step(s))
            default:
                guard let w = waitSteps.randomElement(using: &rng), g.contains(w), g.status(w) == .waiting else { return }
                let by: Inserter = running.randomElement(using: &rng).map { .step($0) } ?? .stepsCheck
                try? g.release(w, by: by)
            }
        }
    }

    func protocolSteps(_ g: inout StepGraph, _ rng: inout SeededRandom, count: Int) throws -> [StepID] {
        var waits: [StepID] = []
        var r2 = rng
        for i in 1...count {
            let pre = i > 1 && Bool.random(using: &r2) ? [Int.random(in: 1..<i, using: &r2)] : []
            let wait = Int.random(in: 0..<4, using: &r2) == 0
            let id = try g.insert(StepSpec(function: "p", args: [.int(i)], retries: 1, wait: wait), prerequisites: pre, insertedBy: .protocolSteps)
            if wait { waits.append(id) }
        }
        return waits
    }

    @Test("Graph bookkeeping stays consistent through retries, re-insertions, drops and continues", arguments: Array(UInt64(1)...3000))
    func fuzz(seed: UInt64) throws {
        if let only = ProcessInfo.processInfo.environment["FUZZ_SEED"], only != String(seed) { return }
        var rng = SeededRandom(seed: seed)
        let keepGoing = seed % 2 == 0
        var g0 = StepGraph(skipDependentsOfFailures: keepGoing)
        let n = Int.random(in: 3...8, using: &rng)
        var protoRNG = rng
        let waits = try protocolSteps(&g0, &protoRNG, count: n)
        var w = World(g: g0, rng: rng, protocolCount: n, waitSteps: waits, keepGoing: keepGoing)
        w.check("start")
        var continues = 0
        for op in 0..<3000 {
            w.step()
            w.check("op \(op)")
            if !w.problems.isEmpty { break }
            // Release every protocol wait step now and then, as a hook would.
            if op % 50 == 49 { for id in w.waitSteps where w.g.contains(id) && w.g.status(id) == .waiting { try? w.g.release(id, by: .stepsCheck) } }
            if continues < 3 && Int.random(in: 0..<120, using: &w.rng) == 0 {
                // The job dies: every step recorded as it is now; --continue.
                continues += 1
                var previous = w.g.liveRecords
                for i in previous.indices where previous[i].status == .running { previous[i].start = 1 }
                var fresh = StepGraph(skipDependentsOfFailures: keepGoing)
                var pr = rng
                _ = try protocolSteps(&fresh, &pr, count: n)
                let plan: ContinuePlan
                do { plan = try ContinuePlan(current: fresh.records, previous: previous, crashLimit: 100) } catch {
                    w.problems.append("continue refused: \(error)")
                    break
                }
                let oldByID = Dictionary(uniqueKeysWithValues: previous.map { ($0.id, $0) })
                for (old, new) in plan.newIDs {
                    let o = oldByID[old]!, r = plan.records[new - 1]
                    if o.spec.function != r.spec.function || o.spec.args != r.spec.args { w.problems.append("plan: old \(old) -> \(new) is another step") }
                    for p in o.prerequisites { if let q = plan.newIDs[p], !r.prerequisites.contains(q) { w.problems.append("plan: \(new) lost prerequisite \(q) (old \(p))") } }
                    if case .step(let s) = o.insertedBy, plan.newIDs[s].map({ Inserter.step($0) }) != r.insertedBy { w.problems.append("plan: \(new) inserter \(r.insertedBy) for old \(s)") }
                    if r.status == .finished { for q in r.prerequisites where plan.records[q - 1].status != .finished { w.problems.append("plan: \(new) kept finished, prerequisite \(q) not") } }
                }
                var plans: [StepID: [Child]] = [:]
                for (old, new) in plan.newIDs { if let p = w.plans[old] { plans[new] = p } }
                w.g = StepGraph(restoring: plan.records, unconfirmed: plan.unconfirmed, skipDependentsOfFailures: keepGoing)
                w.plans = plans
                w.running = []
                w.inserted = [:]
                w.last = [:]
                w.waitSteps = plan.records.filter { $0.spec.wait }.map(\.id)
                w.check("after continue \(continues)")
            }
            if w.running.isEmpty && !w.g.hasReady() {
                for id in w.waitSteps where w.g.contains(id) && w.g.status(id) == .waiting { try? w.g.release(id, by: .stepsCheck) }
                if !w.g.hasReady() { break }
            }
        }
        // Nothing left to run: every step left over must be blocked by something that can still happen.
        if w.problems.isEmpty && w.running.isEmpty && !w.g.hasReady() {
            for r in w.g.liveRecords where r.status == .new && w.g.isUnconfirmed(r.id) {
                if case .step(let s) = r.insertedBy, w.g.status(s) != .new, w.g.status(s) != .waiting, !w.g.isUnconfirmed(s) {
                    w.problems.append("step \(r.id) waits for its inserter \(s) to insert it again, but \(s) is \(w.g.status(s)) and will not run again")
                }
            }
        }
        #expect(w.problems.isEmpty, "seed \(seed) keepGoing \(keepGoing): \(w.problems.prefix(3))")
    }
}
