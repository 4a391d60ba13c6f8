/// How `--continue` rebuilds a run (S9, S12) from the steps `insertAllSteps` inserts now and the steps
/// the database recorded. Pure: records in, records out.
///
/// - The protocol's own steps are matched by position (their id): the i-th step `insertAllSteps`
///   inserts now is the i-th it inserted before when it runs the same function with the same
///   arguments after the same prerequisites. Each is matched on its own (S9), so changing one step
///   re-runs that step and what depends on it, nothing else.
/// - Every step inserted at run time (by a step or by the `stepsCheck` hook) is restored when its
///   inserter is restored and its prerequisites are. When its inserter will run again (it did not
///   finish, or it is the hook), the step is *unconfirmed*: it keeps its record, but does not run,
///   and does not count as finished for its dependents, until the inserter inserts it again at the
///   same position (S12). A finished inserter will not run again, so its inserts are confirmed with it.
/// - A finished step that declared files stays finished only if `fileProblems` finds none: every
///   input as it was when the step started, every output still there as the step left it.
/// - A step stays finished only if every prerequisite stays finished: a step that runs again makes
///   every step that depends on it run again. A prerequisite added at run time to a step whose own
///   record is kept is restored too.
/// - A waiting step stays released only when whoever released it will not run again to release it anew.
/// - A step that was running when a launch died counts that death; at `crashLimit` deaths it is
///   recorded failed instead of running again.
/// Restored steps are numbered after the protocol's steps, in their old order.
package struct ContinuePlan: Sendable {
    package let records: [StepRecord]
    /// Restored steps that wait for their inserter to insert them again.
    package let unconfirmed: Set<StepID>
    /// How many steps keep their `finished` status.
    package let keptFinished: Int
    /// How many steps inserted at run time were restored.
    package let restored: Int
    /// How many recorded steps are left out (their inserter changed, or the protocol no longer inserts them).
    package let dropped: Int
    /// Why each step that is not kept finished runs again (or is recorded failed).
    package let reasons: [StepID: RerunReason]
    /// The new id of each recorded step that is part of the continued run.
    package let newIDs: [StepID: StepID]

    /// - Parameters:
    ///   - legacy: the records come from a version 1 database, which kept neither which prerequisites
    ///     were added at run time nor who released a step: both are inferred as that version did.
    /// - Throws: `ContinuePlanError.inconsistent` when a recorded step depends on a step the database
    ///   does not hold (and that is not one of the protocol's, never written because it never
    ///   changed): continuing could run steps before their prerequisites.
    ///   - fileProblems: why a recorded finished step's declared files no longer hold (each in
    ///     words; empty when they hold). `StepFiles.problems` reads the files; tests give their own.
    package init(current: [StepRecord], previous: [StepRecord], crashLimit: Int = 3, legacy: Bool = false,
                 fileProblems: (StepRecord) -> [String] = ContinuePlan.recordedFileProblems) throws(ContinuePlanError) {
        var old: [StepID: StepRecord] = [:]
        for o in previous {
            guard old.updateValue(o, forKey: o.id) == nil else { throw .inconsistent("step \(o.id) is recorded twice") }
        }
        let n = current.count
        // The recorded run's own protocol steps have the lowest ids: every id below its first run-time
        // step is a protocol step, recorded or not (a protocol step is written once it changes).
        let firstRunTime = previous.lazy.filter { $0.insertedBy != .protocolSteps }.map(\.id).min() ?? Int.max
        try Self.checkReferences(previous, old, protocolBelow: firstRunTime)

        // The protocol's steps: position by position.
        var matched = [Bool](repeating: false, count: n + 1)
        var changes: [StepID: String] = [:]
        var oldAdded: [StepID: [StepID]] = [:]
        for r in current {
            guard let o = old[r.id], o.insertedBy == .protocolSteps else { continue }
            var differs: [String] = []
            if o.spec.function != r.spec.function { differs.append("function '\(o.spec.function)' → '\(r.spec.function)'") }
            if o.spec.args != r.spec.args { differs.append("arguments") }
            let now = Set(r.insertPrerequisites)
            if legacy {
                // Version 1 kept one list: the step is the same if it holds what it is inserted with now.
                if !now.isSubset(of: Set(o.prerequisites)) { differs.append("prerequisites") }
                oldAdded[r.id] = o.prerequisites.filter { !now.contains($0) }
            } else {
                if now != Set(o.insertPrerequisites) { differs.append("prerequisites") }
                oldAdded[r.id] = Array(o.prerequisites.dropFirst(o.insertPrerequisiteCount))
            }
            if differs.isEmpty { matched[r.id] = true } else { changes[r.id] = differs.joined(separator: ", ") + " changed" }
        }

        // Recorded steps that stay part of the run, and their new ids. A protocol position keeps its id
        // whether or not its step changed: what depended on it depends on the step there now (and
        // runs again if that one does). What a changed step inserted is not restored: it was inserted
        // by another step.
        var newID: [StepID: StepID] = [:]
        func isProtocolPosition(_ id: StepID) -> Bool { old[id].map { $0.insertedBy == .protocolSteps } ?? (id < firstRunTime) }
        func mapped(_ id: StepID) -> StepID? { isProtocolPosition(id) ? (id <= n ? id : nil) : newID[id] }
        var restoredOld: [StepRecord] = []
        for o in previous.sorted(by: { $0.id < $1.id }) where o.insertedBy != .protocolSteps {
            let inserterKept: Bool
            switch o.insertedBy {
            case .stepsCheck: inserterKept = true
            case .step(let s): inserterKept = isProtocolPosition(s) ? (s <= n && matched[s]) : newID[s] != nil
            case .protocolSteps: inserterKept = false
            }
            // A step whose inserter or an insert-time prerequisite is gone is no longer the same step.
            guard inserterKept, o.insertPrerequisites.allSatisfy({ mapped($0) != nil }) else { continue }
            newID[o.id] = n + restoredOld.count + 1
            restoredOld.append(o)
            oldAdded[n + restoredOld.count] = Array(o.prerequisites.dropFirst(o.insertPrerequisiteCount))
        }
        let total = n + restoredOld.count
        func oldRecord(_ node: StepID) -> StepRecord? {
            node <= n ? (matched[node] ? old[node] : nil) : restoredOld[node - n - 1]
        }

        // Records with their prerequisites in the new numbering.
        var out: [StepRecord] = []
        out.reserveCapacity(total)
        var lostPrerequisite = [Bool](repeating: false, count: total + 1)
        for node in 1..<(total + 1) {
            var r: StepRecord
            if node <= n {
                r = current[node - 1]
            } else {
                let o = restoredOld[node - n - 1]
                r = StepRecord(id: node, spec: o.spec, prerequisites: o.insertPrerequisites.map { mapped($0)! },
                               insertedBy: o.insertedBy, status: .new, insertPrerequisiteCount: o.insertPrerequisiteCount)
                if case .step(let s) = o.insertedBy { r.insertedBy = .step(mapped(s)!) }
            }
            if oldRecord(node) != nil || node <= n {
                var present = Set(r.prerequisites)
                for p in oldAdded[node] ?? [] {
                    guard let q = mapped(p) else { lostPrerequisite[node] = true; continue }
                    if q != node, present.insert(q).inserted { r.prerequisites.append(q) }
                }
            }
            out.append(r)
        }

        // Finished steps whose declared files changed.
        var filesChanged: [StepID: [String]] = [:]
        for node in 1..<(total + 1) {
            guard let o = oldRecord(node), o.status == .finished, o.result != nil else { continue }
            let problems = fileProblems(o)
            if !problems.isEmpty { filesChanged[node] = problems }
        }

        // Which steps keep `finished`: depth first over prerequisites (added ones may point forward).
        var kept = [Bool?](repeating: nil, count: total + 1)
        var firstRerunPrerequisite: [StepID: StepID] = [:]
        for start in 1..<(total + 1) where kept[start] == nil {
            var stack: [(StepID, Bool)] = [(start, false)]
            var onPath = Set<StepID>()
            while let (node, expanded) = stack.popLast() {
                if kept[node] != nil { continue }
                let prereqs = out[node - 1].prerequisites
                if !expanded {
                    onPath.insert(node)
                    stack.append((node, true))
                    for p in prereqs where kept[p] == nil && !onPath.contains(p) { stack.append((p, false)) }
                    continue
                }
                onPath.remove(node)
                let rerunning = prereqs.first { kept[$0] != true }
                if let rerunning { firstRerunPrerequisite[node] = rerunning }
                kept[node] = oldRecord(node)?.status == .finished && !lostPrerequisite[node] && rerunning == nil && filesChanged[node] == nil
            }
        }

        // Statuses, confirmation and reasons.
        var unconfirmed = Set<StepID>()
        var reasons: [StepID: RerunReason] = [:]
        var failedForGood = Set<StepID>()
        // Version 1 kept no releaser: a release stands when no step that inserted steps runs again.
        let everyInserterKept = restoredOld.allSatisfy { o in
            guard case .step(let s) = o.insertedBy, let inserter = mapped(s) else { return true }
            return kept[inserter] == true
        } && previous.allSatisfy { o in
            guard case .step(let s) = o.insertedBy else { return true }
            return mapped(s).map { kept[$0] == true } ?? true
        }
        for node in 1..<(total + 1) {
            var r = out[node - 1]
            let o = oldRecord(node)
            if node > n {
                let inserterReruns: Bool
                switch r.insertedBy {
                // An inserter recorded failed by the crash limit does not run again either.
                case .step(let s): inserterReruns = (kept[s] != true && !failedForGood.contains(s)) || unconfirmed.contains(s)
                default: inserterReruns = true
                }
                if inserterReruns { unconfirmed.insert(node) }
            }
            r.crashes = o?.crashes ?? 0
            if kept[node] == true, let o {
                r.status = .finished
                r.rank = o.rank
                r.slot = o.slot
                r.gpus = o.gpus
                r.attempts = o.attempts
                r.start = o.start
                r.end = o.end
                r.logPath = o.logPath
                r.result = o.result
                r.releasedBy = Self.renumbered(o.releasedBy, newID)
                out[node - 1] = r
                continue
            }
            if let o, o.status == .running, o.start != nil { r.crashes += 1 }
            if let o, o.status != .finished, r.crashes >= crashLimit {
                r.status = .failed
                r.attempts = o.attempts
                r.logPath = o.logPath
                r.error = "was running when the job died \(r.crashes) times (crash limit \(crashLimit)); see its log. Continue with a higher --crash-limit to run it again."
                reasons[node] = .crashLimit(r.crashes)
                failedForGood.insert(node)
                out[node - 1] = r
                continue
            }
            if r.spec.wait {
                var released = node <= n && r.status != .waiting
                if !released, let o {
                    switch o.releasedBy {
                    case .step(let s)?:
                        if let releaser = mapped(s) {
                            if kept[releaser] == true { released = true; r.releasedBy = .step(releaser) }
                        } else if old[s] == nil {
                            // Its releaser was dropped from the run: it will not release it again.
                            released = true
                            r.releasedBy = .protocolSteps
                        }
                    case nil where legacy && o.status != .waiting && o.status != .skipped:
                        released = everyInserterKept
                    default:
                        break
                    }
                }
                r.status = released ? .new : .waiting
                if !released { r.releasedBy = nil }
            } else {
                r.status = .new
            }
            if node <= n && old[node]?.insertedBy != .protocolSteps {
                reasons[node] = .newStep
            } else if let change = changes[node] {
                reasons[node] = .changed(change)
            } else if let o, o.status != .finished {
                reasons[node] = .neverFinished(o.status)
            } else if let problems = filesChanged[node] {
                reasons[node] = .files(problems)
            } else if lostPrerequisite[node] {
                reasons[node] = .prerequisiteDropped
            } else {
                reasons[node] = .prerequisiteRuns(firstRerunPrerequisite[node] ?? 0)
            }
            out[node - 1] = r
        }
        records = out
        self.unconfirmed = unconfirmed
        keptFinished = out.lazy.filter { $0.status == .finished }.count
        restored = restoredOld.count
        // Recorded protocol steps past the protocol's end now, and run-time steps not restored; a
        // changed protocol step is not dropped, its position runs the new step.
        dropped = previous.filter { $0.insertedBy == .protocolSteps ? $0.id > n : newID[$0.id] == nil }.count
        self.reasons = reasons
        var ids = newID
        for id in 1..<(n + 1) where matched[id] { ids[id] = id }
        newIDs = ids
    }

    /// The problems of the files a recorded step declared, as they are on disk now.
    package static func recordedFileProblems(_ record: StepRecord) -> [String] {
        guard let blob = record.result, let files = StepOutcomeBlob.split(blob).files else { return [] }
        return files.problems()
    }

    private static func renumbered(_ inserter: Inserter?, _ newID: [StepID: StepID]) -> Inserter? {
        guard case .step(let s)? = inserter else { return inserter }
        return .step(newID[s] ?? s)
    }

    /// Every step a recorded step depends on must be recorded too, but for the protocol's own steps
    /// (ids below the first run-time step), which are written only once they change. An inserter or
    /// a releaser the database does not hold was dropped from the run (S12): that is not an error.
    private static func checkReferences(_ previous: [StepRecord], _ old: [StepID: StepRecord], protocolBelow firstRunTime: StepID) throws(ContinuePlanError) {
        for o in previous {
            guard o.insertPrerequisiteCount >= 0 && o.insertPrerequisiteCount <= o.prerequisites.count else {
                throw .inconsistent("step \(o.id) records \(o.insertPrerequisiteCount) insert-time prerequisites but lists \(o.prerequisites.count)")
            }
            for p in o.prerequisites where old[p] == nil && p >= firstRunTime {
                throw .inconsistent("step \(o.id) ('\(o.spec.function)') depends on step \(p), which the database does not hold")
            }
        }
    }
}

/// Why a step of a continued run runs again, for `--continue --dry-run`.
package enum RerunReason: Sendable, Equatable, CustomStringConvertible {
    /// No recorded step at its place: `insertAllSteps` inserts more now, or it never started before.
    case newStep
    /// The protocol's step at this place has another function, arguments or prerequisites now.
    case changed(String)
    /// It never finished (it was new, waiting, running, failed, aborted or skipped).
    case neverFinished(StepStatus)
    /// A declared input changed or an output is gone or changed (S9 with files): each in words.
    case files([String])
    /// A prerequisite runs again (S9).
    case prerequisiteRuns(StepID)
    /// A prerequisite added to it at run time is no longer part of the run.
    case prerequisiteDropped
    /// It was running when the job died this many times: recorded failed instead of run again.
    case crashLimit(Int)

    package var description: String {
        switch self {
        case .newStep: return "not in the recorded run (new, or it had not started and was never written)"
        case .changed(let what): return "changed since the recorded run: \(what)"
        case .neverFinished(let status): return "never finished (was \(status.rawValue))"
        case .files(let problems): return problems.joined(separator: "; ")
        case .prerequisiteRuns(let id): return "its prerequisite step \(id) runs again"
        case .prerequisiteDropped: return "a prerequisite it had is no longer part of the run"
        case .crashLimit(let deaths): return "recorded failed: it was running when the job died \(deaths) times"
        }
    }
}

/// Why a run cannot be continued.
package enum ContinuePlanError: Error, CustomStringConvertible, Sendable, Equatable {
    case inconsistent(String)

    package var description: String {
        switch self {
        case .inconsistent(let why):
            return "the run database is inconsistent: \(why). Continuing could run a step before its prerequisites, so it is refused; start over with --restart (the old run is set aside, not deleted)."
        }
    }
}
