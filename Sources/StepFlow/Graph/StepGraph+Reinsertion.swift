import Collections

/// Idempotent re-insertion (S12). When an inserter runs again (a step re-run by `--continue`, a retry,
/// the `stepsCheck` hook after a restart), its k-th insert is matched against the k-th step it inserted
/// before: the same function, arguments and prerequisites mean the same step, which keeps its id and
/// status (a finished step stays finished). The first insert that differs ends the matching for that
/// inserter; what it inserted before from that position on is dropped from the run.
extension StepGraph {
    /// The step a re-run inserter inserted before at this position, when this insert is the same step;
    /// nil for a new step. A differing insert drops the inserter's previous inserts from here on.
    mutating func matchPrevious(_ spec: StepSpec, prerequisites: [StepID], by inserter: Inserter) -> StepID? {
        guard let sequence = sequences[inserter], sequence.cursor < sequence.children.count else { return nil }
        let candidate = sequence.children[sequence.cursor]
        let previous = records[candidate - 1]
        if previous.spec.function == spec.function && previous.spec.args == spec.args && previous.spec.wait == spec.wait
            && Self.sameSet(previous.insertPrerequisites, prerequisites)
        {
            sequences[inserter]!.cursor += 1
            // What it asks of the machine is not part of its identity: a step that has not started
            // takes the new request (a continue with fewer --threads, a retry that asks for a GPU).
            if previous.status == .new || previous.status == .waiting {
                records[candidate - 1].spec.threads = spec.threads
                records[candidate - 1].spec.needsGPU = spec.needsGPU
                records[candidate - 1].spec.retries = spec.retries
                markChanged(candidate)
            }
            confirm(candidate)
            return candidate
        }
        // While the inserter still runs, what lost one of its inserts waits for it to finish: it may
        // add the step that replaces it (S3).
        let blocker: StepID? = inserter.stepID.flatMap { records[$0 - 1].status == .running ? $0 : nil }
        dropUnmatchedRest(of: inserter, reason: .differs(inserter, function: spec.function, previous: candidate), blocker: blocker)
        return nil
    }

    /// A step failed for good: what an earlier attempt inserted and was held for the next attempt
    /// takes part in the run again.
    mutating func releaseHeldInserts(of id: StepID) {
        guard !unconfirmed.isEmpty, let sequence = sequences[.step(id)] else { return }
        for child in sequence.children where unconfirmed.contains(child) { confirm(child) }
    }

    /// Two prerequisite lists name the same steps (order and repeats aside).
    static func sameSet(_ a: ArraySlice<StepID>, _ b: [StepID]) -> Bool {
        if a.count == b.count && a.elementsEqual(b) { return true }
        return Set(a) == Set(b)
    }

    static func name(_ inserter: Inserter, _ records: [StepRecord]) -> String {
        switch inserter {
        case .protocolSteps: return "insertAllSteps"
        case .stepsCheck: return "the stepsCheck hook"
        case .step(let id): return "step \(id) ('\(records[id - 1].spec.function)')"
        }
    }

    /// A restored step was inserted again by its inserter: it takes part in the run. A finished one
    /// now counts for its dependents, and what it inserted is confirmed with it (it will not run again
    /// to insert it).
    mutating func confirm(_ id: StepID) {
        var work = [id]
        while let s = work.popLast() {
            guard unconfirmed.remove(s) != nil else { continue }
            if records[s - 1].status == .finished {
                if remaining[s - 1] == 0 { releaseDependents(of: s) }
                if let sequence = sequences[.step(s)] {
                    sequences[.step(s)]!.cursor = sequence.children.count
                    work.append(contentsOf: sequence.children)
                }
            } else {
                enqueueIfReady(s)
            }
        }
    }

    /// A step will run again (a retry): what it inserted and has not started waits until the next
    /// attempt inserts it again.
    mutating func holdInserts(of id: StepID) {
        guard let sequence = sequences[.step(id)] else { return }
        for child in sequence.children where records[child - 1].status == .new || records[child - 1].status == .waiting {
            unconfirmed.insert(child)
        }
    }

    /// Drops what `inserter` inserted before, from its current position on, unless it is running.
    /// Why steps are dropped, rendered only when steps are dropped (the check runs for every step).
    enum DropReason {
        case notInsertedAgain(StepID)
        case differs(Inserter, function: String, previous: StepID)

        func text(_ records: [StepRecord]) -> String {
            switch self {
            case .notInsertedAgain(let id):
                return "step \(id) ('\(records[id - 1].spec.function)') did not insert them again"
            case .differs(let inserter, let function, let previous):
                return "\(StepGraph.name(inserter, records)) inserted step '\(function)' where it had inserted step \(previous) ('\(records[previous - 1].spec.function)') before"
            }
        }
    }

    mutating func dropUnmatchedRest(of inserter: Inserter, reason: DropReason, blocker: StepID? = nil) {
        guard !sequences.isEmpty, let sequence = sequences[inserter], sequence.cursor < sequence.children.count else { return }
        let rest = Array(sequence.children[sequence.cursor...])
        let kept = rest.filter { records[$0 - 1].status == .running }
        sequences[inserter]!.children.removeSubrange(sequence.cursor...)
        // A running step stays in the run, out of the sequence: it started in this run and reports back.
        drop(rest.filter { records[$0 - 1].status != .running }, reason: reason.text(records), blocker: blocker)
        if !kept.isEmpty { dropNotes.append("\(kept.count) step(s) no longer inserted kept running: \(kept.map(String.init).joined(separator: ", "))") }
    }

    /// Drops steps from the run, with everything they inserted (S12). A step that depended on a
    /// dropped step loses that prerequisite and, if it had finished, runs again with every finished
    /// step that depends on it (S9). Running steps are never dropped.
    mutating func drop(_ ids: [StepID], reason: String, blocker: StepID? = nil) {
        var doomed = Set<StepID>()
        var work = ids
        while let id = work.popLast() {
            guard !records[id - 1].isDropped, records[id - 1].status != .running, doomed.insert(id).inserted else { continue }
            work.append(contentsOf: sequences[.step(id)]?.children ?? [])
        }
        guard !doomed.isEmpty else { return }
        // Drops are rare: one pass over the graph, then the indices are rebuilt (O(steps + edges)).
        var rerun: [StepID] = []
        var lostInputs: [StepID] = []
        for i in records.indices where !records[i].isDropped && !doomed.contains(i + 1) {
            guard records[i].prerequisites.contains(where: doomed.contains) else { continue }
            let lostAtInsert = records[i].insertPrerequisites.filter(doomed.contains).count
            records[i].prerequisites.removeAll(where: doomed.contains)
            records[i].insertPrerequisiteCount -= lostAtInsert
            if longPrerequisiteSets[i + 1] != nil { longPrerequisiteSets[i + 1] = Set(records[i].prerequisites) }
            markChanged(i + 1)
            if records[i].status == .finished { rerun.append(i + 1) }
            lostInputs.append(i + 1)
        }
        for id in doomed {
            countByStatus[records[id - 1].status.ordinal] -= 1
            records[id - 1].isDropped = true
            markChanged(id)
            unconfirmed.remove(id)
            sequences[.step(id)] = nil
        }
        for (inserter, sequence) in sequences where sequence.children.contains(where: doomed.contains) {
            let before = sequence.children.prefix(sequence.cursor).filter { !doomed.contains($0) }.count
            sequences[inserter]!.children.removeAll(where: doomed.contains)
            sequences[inserter]!.cursor = before
        }
        droppedCount += doomed.count
        var note = "dropped \(doomed.count) step(s): \(reason)"
        let again = runAgain(rerun)
        if again > 0 { note += "; \(again) finished step(s) that depended on them run again" }
        if let blocker {
            for id in lostInputs where id != blocker && (records[id - 1].status == .new || records[id - 1].status == .waiting)
                && !hasPrerequisite(id, blocker) && firstDependingOn(id, among: [blocker]) == nil {
                appendPrerequisite(id, blocker)
            }
        }
        dropNotes.append(note)
        rebuildIndices()
    }

    /// Makes finished steps run again, and every finished step that depends on them (S9). Returns how many.
    private mutating func runAgain(_ ids: [StepID]) -> Int {
        guard !ids.isEmpty else { return 0 }
        var dependentsOf: [StepID: [StepID]] = [:]
        for r in records where !r.isDropped && (r.status == .finished || r.status == .running) {
            for p in r.prerequisites { dependentsOf[p, default: []].append(r.id) }
        }
        var seen = Set<StepID>()
        var work = ids
        while let id = work.popLast() {
            if records[id - 1].status == .running { staleRuns.insert(id); continue }
            guard records[id - 1].status == .finished, seen.insert(id).inserted else { continue }
            work.append(contentsOf: dependentsOf[id] ?? [])
        }
        for id in seen.sorted() { resetToPending(id) }
        return seen.count
    }

    /// A finished step will run again: `new`, or `waiting` when its release may come again (S4).
    private mutating func resetToPending(_ id: StepID) {
        var r = records[id - 1]
        var status = StepStatus.new
        if r.spec.wait {
            // Kept released only when whoever released it will not run again to release it anew.
            let releaserDone: Bool
            switch r.releasedBy {
            case .protocolSteps?: releaserDone = true
            case .step(let s)?: releaserDone = records[s - 1].status == .finished && !isUnconfirmed(s)
            case .stepsCheck?, nil: releaserDone = false
            }
            if !releaserDone {
                status = .waiting
                r.releasedBy = nil
            }
        }
        r.attempts = 0
        if r.result != nil { resultCount -= 1 }
        r.result = nil
        r.start = nil
        r.end = nil
        r.rank = nil
        r.slot = nil
        r.error = nil
        records[id - 1] = r
        setStatus(id, status)
        // It will insert again: what it inserted waits for that (S12).
        if let sequence = sequences[.step(id)] {
            var work = sequence.children
            while let c = work.popLast() {
                guard records[c - 1].status != .running else { continue }
                if unconfirmed.insert(c).inserted, records[c - 1].status == .finished {
                    work.append(contentsOf: sequences[.step(c)]?.children ?? [])
                }
            }
        }
    }

    /// Recomputes the unfinished-prerequisite counts, the dependents lists and the ready queue from the
    /// records (after a restore or a drop). A finished step is counted too: it is done for its
    /// dependents only once everything it depends on is (see `isDone`).
    mutating func rebuildIndices() {
        let n = records.count
        remaining = Array(repeating: 0, count: n)
        dependents = Array(repeating: [], count: n)
        queued = Array(repeating: false, count: n)
        ready = ReadyQueue()
        // Done-ness of finished steps, prerequisites first (added prerequisites may point forward).
        var done = [Bool?](repeating: nil, count: n + 1)
        func isDone(_ id: StepID) -> Bool {
            var stack = [(id, false)]
            while let (s, expanded) = stack.popLast() {
                if done[s] != nil { continue }
                let r = records[s - 1]
                guard r.status == .finished, !r.isDropped, !isUnconfirmed(s) else { done[s] = false; continue }
                if !expanded {
                    stack.append((s, true))
                    for p in r.prerequisites where done[p] == nil { stack.append((p, false)) }
                } else {
                    done[s] = r.prerequisites.allSatisfy { done[$0] == true }
                }
            }
            return done[id] == true
        }
        var blocked: [StepID] = []
        for i in 0..<n where !records[i].isDropped {
            // A running step's prerequisites are behind it, but for one sent behind them (`sendBehind`).
            let s = records[i].status
            guard s == .new || s == .waiting || s == .finished || (s == .running && sentBehind.contains(i + 1)) else { continue }
            var failedPrerequisite = false
            for p in records[i].prerequisites {
                if isDone(p) { continue }
                let ps = records[p - 1].status
                if ps == .failed || ps == .skipped { failedPrerequisite = true }
                remaining[i] += 1
                dependents[p - 1].append(Int32(i + 1))
            }
            if failedPrerequisite && s != .finished { blocked.append(i + 1) }
        }
        for i in 0..<n where !records[i].isDropped && (records[i].status == .new || records[i].status == .waiting) {
            enqueueIfReady(i + 1)
        }
        if skipDependentsOfFailures { for id in blocked { skip(id) } }
    }
}
