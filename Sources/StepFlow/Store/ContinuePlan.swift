/// How `--continue` rebuilds a run (S9) from the steps `insertAllSteps` inserts now and the steps the
/// database recorded. Pure: records in, records out.
///
/// - A protocol step keeps `finished` when the record with its id ran the same function with the same
///   arguments and finished.
/// - A step inserted at run time is restored from the record when the step that inserted it stays
///   finished (it will not run again to insert it); otherwise the inserter runs again and inserts anew.
/// - A step stays finished only if every prerequisite stays finished: a step that runs again makes every
///   step that depends on it run again.
/// - Prerequisites added at run time and releases of waiting steps are restored from the records.
/// Restored steps are numbered after the protocol's steps, in their old order.
public struct ContinuePlan: Sendable {
    public let records: [StepRecord]
    /// How many steps keep their `finished` status.
    public let keptFinished: Int
    /// How many steps inserted at run time were restored.
    public let restored: Int

    public init(current: [StepRecord], previous: [StepRecord]) {
        let n = current.count
        let old = Dictionary(uniqueKeysWithValues: previous.map { ($0.id, $0) })
        // Protocol steps keep their ids; the same step is the same function with the same arguments.
        let same: [Bool] = current.map { r in
            guard let o = old[r.id] else { return false }
            return o.spec.function == r.spec.function && o.spec.args == r.spec.args
        }
        var included = Set(1...max(n, 1)).filter { $0 <= n }
        var kept: [StepID: Bool] = [:]

        func prerequisites(_ id: StepID) -> [StepID] {
            var p = id <= n ? current[id - 1].prerequisites : []
            if let o = old[id], id > n || same[id - 1] { p += o.prerequisites }
            return p
        }
        func finishedBefore(_ id: StepID) -> Bool {
            guard let o = old[id], o.status == .finished else { return false }
            return id > n || same[id - 1]
        }
        func computeKept() {
            kept = [:]
            for start in included.sorted() {
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
        // Including restored steps can only let more steps stay finished, so this converges.
        while true {
            computeKept()
            let more = previous.filter { o in
                guard o.id > n, !included.contains(o.id) else { return false }
                switch o.insertedBy {
                case .step(let by): return included.contains(by) && kept[by] == true
                case .stepsCheck, .protocolSteps: return true
                }
            }
            if more.isEmpty { break }
            for o in more { included.insert(o.id) }
        }

        let restoredIDs = included.filter { $0 > n }.sorted()
        var newID: [StepID: StepID] = [:]
        for id in 1...max(n, 1) where id <= n { newID[id] = id }
        for (i, id) in restoredIDs.enumerated() { newID[id] = n + i + 1 }

        var out: [StepRecord] = []
        out.reserveCapacity(n + restoredIDs.count)
        for id in (1...max(n, 1)).filter({ $0 <= n }) + restoredIDs {
            var r = id <= n ? current[id - 1] : old[id]!
            r = StepRecord(id: newID[id]!, spec: r.spec, prerequisites: [], insertedBy: r.insertedBy, status: r.status)
            var prereqs: [StepID] = []
            for p in prerequisites(id) { if let q = newID[p], !prereqs.contains(q) { prereqs.append(q) } }
            r.prerequisites = prereqs
            if case .step(let by) = r.insertedBy { r.insertedBy = .step(newID[by] ?? by) }
            let o = old[id]
            if kept[id] == true, let o {
                r.status = .finished
                r.rank = o.rank
                r.slot = o.slot
                r.attempts = o.attempts
                r.start = o.start
                r.end = o.end
                r.logPath = o.logPath
            } else {
                // A waiting step that was released before stays released.
                let released = o.map { $0.status != .waiting && (id > n || same[id - 1]) } ?? false
                r.status = r.spec.wait && !released ? .waiting : .new
            }
            out.append(r)
        }
        records = out
        keptFinished = out.lazy.filter { $0.status == .finished }.count
        restored = restoredIDs.count
    }
}
