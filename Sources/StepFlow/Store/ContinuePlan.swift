/// How `--continue` rebuilds a run (S9) from the steps `insertAllSteps` inserts now and the steps the
/// database recorded. Pure: records in, records out.
///
/// - The protocol's steps are matched by position: the i-th step `insertAllSteps` inserts now is the
///   i-th it inserted before. It keeps `finished` when it runs the same function with the same
///   arguments and finished.
/// - A step a running step inserted is restored from its record when that step stays finished (it
///   will not run again to insert it); otherwise the inserter runs again and inserts anew. Steps the
///   `stepsCheck` hook inserted are not restored: the hook runs again and inserts what it needs.
/// - A step stays finished only if every prerequisite stays finished: a step that runs again makes
///   every step that depends on it run again.
/// - Prerequisites added at run time are restored. A waiting step stays released only when no step
///   that inserted steps at run time runs again (one that does will release it again, after adding
///   what it inserts as prerequisites).
/// Restored steps are numbered after the protocol's steps, in their old order.
public struct ContinuePlan: Sendable {
    public let records: [StepRecord]
    /// How many steps keep their `finished` status.
    public let keptFinished: Int
    /// How many steps inserted at run time were restored.
    public let restored: Int

    public init(current: [StepRecord], previous: [StepRecord]) {
        let n = current.count
        // Nodes: 1...n are the protocol's steps now; n + j is the old run-time step j.
        var old: [Int: StepRecord] = [:]
        for o in previous { old[o.id] = o }
        let oldProtocol = { (id: StepID) -> StepRecord? in
            guard let o = old[id], o.insertedBy == .protocolSteps else { return nil }
            return o
        }
        func nodeOfOld(_ id: StepID) -> Int? {
            guard let o = old[id] else { return nil }
            if o.insertedBy == .protocolSteps { return id <= n ? id : nil }
            return n + id
        }
        func oldRecord(_ node: Int) -> StepRecord? { node <= n ? oldProtocol(node) : old[node - n] }
        let same: [Bool] = current.map { r in
            guard let o = oldProtocol(r.id) else { return false }
            return o.spec.function == r.spec.function && o.spec.args == r.spec.args
        }
        func prerequisites(_ node: Int) -> [Int] {
            var p: [Int] = node <= n ? current[node - 1].prerequisites : []
            if let o = oldRecord(node), node > n || same[node - 1] { p += o.prerequisites.compactMap { nodeOfOld($0) } }
            return p
        }
        func finishedBefore(_ node: Int) -> Bool {
            guard let o = oldRecord(node), o.status == .finished else { return false }
            return node > n || same[node - 1]
        }

        var included = Set(1...max(n, 1)).filter { $0 <= n }
        var kept: [Int: Bool] = [:]
        func settleKept() {
            // Depth-first over prerequisites; a node is decided once all of its prerequisites are.
            for start in included where kept[start] == nil {
                var stack = [(start, false)]
                while let (id, expanded) = stack.popLast() {
                    if kept[id] != nil { continue }
                    let prereqs = prerequisites(id)
                    if !expanded {
                        stack.append((id, true))
                        for p in prereqs where included.contains(p) && kept[p] == nil { stack.append((p, false)) }
                        continue
                    }
                    kept[id] = finishedBefore(id) && prereqs.allSatisfy { included.contains($0) && kept[$0] == true }
                }
            }
        }
        // Restoring a step can only let more steps stay finished, so this converges; `kept` of a
        // step that was not kept may change when a missing prerequisite is restored, so it is redone.
        let runTime = previous.filter { $0.insertedBy.stepID != nil }
        while true {
            settleKept()
            let more = runTime.filter { o in
                guard !included.contains(n + o.id), let by = o.insertedBy.stepID, let inserter = nodeOfOld(by) else { return false }
                return included.contains(inserter) && kept[inserter] == true
            }
            if more.isEmpty { break }
            for o in more { included.insert(n + o.id) }
            kept = kept.filter { $0.value }
        }
        let everyInserterKept = runTime.allSatisfy { included.contains(n + $0.id) }

        let restoredNodes = included.filter { $0 > n }.sorted()
        var newID: [Int: StepID] = [:]
        for id in 1...max(n, 1) where id <= n { newID[id] = id }
        for (i, node) in restoredNodes.enumerated() { newID[node] = n + i + 1 }

        var out: [StepRecord] = []
        out.reserveCapacity(n + restoredNodes.count)
        for node in (1...max(n, 1)).filter({ $0 <= n }) + restoredNodes {
            let base = node <= n ? current[node - 1] : old[node - n]!
            var r = StepRecord(id: newID[node]!, spec: base.spec, prerequisites: [], insertedBy: base.insertedBy, status: .new)
            var seen = Set<StepID>()
            r.prerequisites = prerequisites(node).compactMap { newID[$0] }.filter { seen.insert($0).inserted }
            if let by = base.insertedBy.stepID { r.insertedBy = .step(nodeOfOld(by).flatMap { newID[$0] } ?? by) }
            let o = oldRecord(node)
            if kept[node] == true, let o {
                r.status = .finished
                r.rank = o.rank
                r.slot = o.slot
                r.attempts = o.attempts
                r.start = o.start
                r.end = o.end
                r.logPath = o.logPath
            } else if r.spec.wait {
                let wasReleased = o.map { ![.waiting, .skipped].contains($0.status) && (node > n || same[node - 1]) } ?? false
                r.status = wasReleased && everyInserterKept ? .new : .waiting
            }
            out.append(r)
        }
        records = out
        keptFinished = out.lazy.filter { $0.status == .finished }.count
        restored = restoredNodes.count
    }
}
