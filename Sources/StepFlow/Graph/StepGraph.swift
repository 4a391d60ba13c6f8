import Collections

/// The step graph of a run: insertion rules S1–S4, indegree counts and the ready queue, and the
/// matching of re-inserted steps (S12, in StepGraph+Reinsertion.swift).
///
/// Work is O(1) amortized per step and per edge: a step becomes ready when its count of unfinished
/// prerequisites drops to zero; nothing rescans the graph (but for dropping steps, which is rare). The
/// graph knows nothing of ranks, threads, transports or storage.
package struct StepGraph: Sendable {
    /// Every step, index id-1. Dropped steps (S12) stay here with `isDropped` so ids stay indexes.
    package internal(set) var records: [StepRecord] = []
    /// Unfinished prerequisites of each step (index id-1).
    var remaining: [Int32] = []
    /// Steps waiting on each step (index id-1); emptied once the step is done for its dependents.
    var dependents: [[Int32]] = []
    /// Ready steps, lowest id first. Entries are checked when popped, because a queued step can
    /// gain a prerequisite (`addPrerequisites`) before it is dispatched.
    var ready = ReadyQueue()
    var queued: [Bool] = []
    var countByStatus = [Int](repeating: 0, count: StepStatus.allCases.count)
    /// Sets of prerequisites for steps that gained many at run time (a streaming close step), so
    /// adding one more costs O(1) instead of a scan.
    var longPrerequisiteSets: [StepID: Set<StepID>] = [:]
    /// Steps changed since the last `takeChanged()`, for the run database's write-behind: those from
    /// `changedShown` on are still to be shown.
    private var changed: [Int32] = []
    /// How many of `changed` a pull has shown: the list is emptied only once all are, since removing
    /// each chunk from its front moved the rest every time, a pull's cost growing with its square.
    private var changedShown = 0
    private var isChanged: [Bool] = []
    /// What each inserter other than `insertAllSteps` inserted, in order: what a re-run of it is
    /// matched against (S12).
    var sequences: [Inserter: InsertSequence] = [:]
    /// Restored steps their inserter has not inserted again yet (S12): they do not run, and a finished
    /// one does not count as finished for its dependents until it is confirmed.
    var unconfirmed: Set<StepID> = []
    /// Running steps one of whose inputs runs again (S9): when they end they run again.
    var staleRuns: Set<StepID> = []
    /// Running steps sent behind prerequisites that had not finished (`sendBehind`): until they leave
    /// `running`, a rebuild of the indices counts their prerequisites as it does a new step's.
    var sentBehind: Set<StepID> = []
    /// How many steps were dropped because their inserter no longer inserts them, and why.
    package internal(set) var dropNotes: [String] = []
    package internal(set) var droppedCount = 0
    /// Whether a failed or skipped prerequisite skips its dependents (`--keep-going`).
    package var skipDependentsOfFailures: Bool

    package init(skipDependentsOfFailures: Bool = false) {
        self.skipDependentsOfFailures = skipDependentsOfFailures
    }

    /// A graph rebuilt from records (continuing a run, S9, S12): statuses are taken as given (`finished`,
    /// `failed`, `waiting`; anything else becomes `new`). Steps in `unconfirmed` wait for their inserter
    /// to insert them again. Prerequisites may point at later ids (added at run time); every id must be
    /// in 1...records.count.
    package init(restoring restored: [StepRecord], unconfirmed: Set<StepID> = [], skipDependentsOfFailures: Bool = false) {
        self.skipDependentsOfFailures = skipDependentsOfFailures
        let n = restored.count
        records = restored
        remaining = Array(repeating: 0, count: n)
        dependents = Array(repeating: [], count: n)
        queued = Array(repeating: false, count: n)
        isChanged = Array(repeating: false, count: n)
        self.unconfirmed = unconfirmed
        for i in 0..<n {
            precondition(records[i].id == i + 1, "restored records must be numbered 1...n")
            switch records[i].status {
            case .finished, .failed, .waiting: break
            default: records[i].status = .new
            }
            // Only a finished step's result stands (S13).
            if records[i].status != .finished { records[i].result = nil }
            if records[i].result != nil { resultCount += 1 }
            countByStatus[records[i].status.ordinal] += 1
            markChanged(i + 1)
            if records[i].prerequisites.count > Self.shortList { longPrerequisiteSets[i + 1] = Set(records[i].prerequisites) }
            if records[i].insertedBy != .protocolSteps { sequences[records[i].insertedBy, default: InsertSequence()].children.append(i + 1) }
        }
        // A finished inserter will not run again: nothing of its sequence is left to match.
        for (inserter, sequence) in sequences {
            if let id = inserter.stepID, records[id - 1].status == .finished, !unconfirmed.contains(id) {
                sequences[inserter]!.cursor = sequence.children.count
            }
        }
        rebuildIndices()
    }

    /// Steps in the run (dropped ones excluded).
    package var count: Int { records.count - droppedCount }

    /// The highest id given out so far.
    package var lastID: StepID { records.count }

    /// Steps that are neither finished, failed, skipped nor aborted.
    package var unfinishedCount: Int {
        count(.new) + count(.waiting) + count(.running)
    }

    /// How many steps are in `status`.
    package func count(_ status: StepStatus) -> Int { countByStatus[status.ordinal] }

    package func record(_ id: StepID) -> StepRecord { records[id - 1] }
    package func status(_ id: StepID) -> StepStatus { records[id - 1].status }
    /// Whether `id` names a step of the run (not a dropped one).
    package func contains(_ id: StepID) -> Bool { id >= 1 && id <= records.count && !records[id - 1].isDropped }

    /// What a rank's report about step `id` is to rank 0: a step it gave that rank and still counts
    /// as running, a late report, or one that makes no sense.
    package func check(_ id: StepID, from rank: Int?) -> ReportCheck {
        guard id >= 1 && id <= records.count else { return .unknown }
        guard records[id - 1].status == .running else { return .late }
        if let rank, let assigned = records[id - 1].rank, rank != assigned { return .otherRank(assigned) }
        return .running
    }

    /// Whether a restored step still waits for its inserter to insert it again (S12).
    package func isUnconfirmed(_ id: StepID) -> Bool { !unconfirmed.isEmpty && unconfirmed.contains(id) }

    /// Whether a step counts as finished for the steps that depend on it: it finished, it is confirmed
    /// (S12), and so is everything it depends on (a restored finished step that depends on an
    /// unconfirmed one is provisional: if that one is dropped, it runs again).
    package func isDone(_ id: StepID) -> Bool {
        records[id - 1].status == .finished && remaining[id - 1] == 0 && !isUnconfirmed(id)
    }

    /// The steps of the run, dropped ones left out, in id order.
    package var liveRecords: [StepRecord] { droppedCount == 0 ? records : records.filter { !$0.isDropped } }

    /// Inserts a step after the given prerequisites (already resolved: the default prerequisite of
    /// S2 is the inserter's business). When the inserter runs again, an insert that matches its
    /// previous insert at the same position returns that step instead (S12). Throws when a
    /// prerequisite does not exist.
    @discardableResult
    package mutating func insert(_ spec: StepSpec, prerequisites: [StepID], insertedBy: Inserter,
                                at location: SourceLocation? = nil) throws(StepGraphError) -> StepID {
        var unique = try checkedPrerequisites(prerequisites, newID: records.count + 1, function: spec.function, at: location)
        if insertedBy != .protocolSteps {
            if let same = matchPrevious(spec, prerequisites: unique, by: insertedBy) { return same }
            // A mismatch drops the inserter's previous inserts, which the new one may have named.
            if droppedCount > 0 {
                unique = try checkedPrerequisites(unique, newID: records.count + 1, function: spec.function, at: location)
            }
        }
        let id = records.count + 1
        records.append(StepRecord(id: id, spec: spec, prerequisites: unique, insertedBy: insertedBy,
                                  status: spec.wait ? .waiting : .new))
        remaining.append(0)
        dependents.append([])
        queued.append(false)
        isChanged.append(false)
        markChanged(id)
        countByStatus[records[id - 1].status.ordinal] += 1
        if insertedBy != .protocolSteps { sequences[insertedBy, default: InsertSequence()].append(id) }
        var blocked = false
        for p in unique {
            noteReferenced(p, by: insertedBy)
            switch records[p - 1].status {
            case .finished where isDone(p): continue
            case .failed, .skipped: blocked = true
            default: break
            }
            remaining[id - 1] += 1
            dependents[p - 1].append(Int32(id))
        }
        if blocked && skipDependentsOfFailures {
            skip(id)
        } else {
            enqueueIfReady(id)
        }
        return id
    }

    /// The prerequisites without duplicates, each checked to exist.
    private func checkedPrerequisites(_ prerequisites: [StepID], newID id: StepID, function: String,
                                      at location: SourceLocation?) throws(StepGraphError) -> [StepID] {
        var unique: [StepID] = []
        unique.reserveCapacity(prerequisites.count)
        var seen = Set<StepID>()
        for p in prerequisites {
            if p == id { throw .selfPrerequisite(id, at: location) }
            guard contains(p) else { throw .unknownStep(p, context: "prerequisite of new step \(id) ('\(function)')", at: location) }
            // A linear scan for short lists; a set once a list is long (a merge step of 100k inputs).
            let duplicate = prerequisites.count <= Self.shortList ? unique.contains(p) : !seen.insert(p).inserted
            if !duplicate { unique.append(p) }
        }
        return unique
    }

    /// A protocol step that a step inserted at run time names is written to the run database with it:
    /// protocol steps are otherwise written only once they change, and a continued run must find
    /// every step a stored step refers to.
    private mutating func noteReferenced(_ p: StepID, by inserter: Inserter) {
        if inserter != .protocolSteps && records[p - 1].insertedBy == .protocolSteps { markChanged(p) }
    }

    /// Adds prerequisites to a step that has not started (S3, S4). Adding prerequisites the step
    /// already has does nothing, whatever its status (a re-run inserter repeats its edits, S12).
    package mutating func addPrerequisites(to target: StepID, _ prerequisites: [StepID], by inserter: Inserter = .protocolSteps,
                                          at location: SourceLocation? = nil) throws(StepGraphError) {
        guard contains(target) else { throw .unknownStep(target, context: "addPrerequisites(to:)", at: location) }
        for p in prerequisites {
            guard contains(p) else { throw .unknownStep(p, context: "prerequisite for step \(target)", at: location) }
            if p == target { throw .selfPrerequisite(target, at: location) }
        }
        let added = prerequisites.filter { !hasPrerequisite(target, $0) }
        guard !added.isEmpty else { return }
        let status = records[target - 1].status
        guard status == .new || status == .waiting || status == .skipped else {
            throw .alreadyStarted(target, status: status, at: location)
        }
        if let p = firstDependingOn(target, among: added) { throw .cycle(target: target, prerequisite: p, at: location) }
        markChanged(target)
        noteReferenced(target, by: inserter)
        for p in added where !hasPrerequisite(target, p) {
            appendPrerequisite(target, p)
            noteReferenced(p, by: inserter)
            let ps = records[p - 1].status
            if isDone(p) { continue }
            remaining[target - 1] += 1
            dependents[p - 1].append(Int32(target))
            if (ps == .failed || ps == .skipped) && skipDependentsOfFailures { skip(target) }
        }
    }

    /// Releases a waiting step (S4). Releasing a step twice, or one already ended, does nothing.
    package mutating func release(_ id: StepID, by inserter: Inserter = .protocolSteps, at location: SourceLocation? = nil) throws(StepGraphError) {
        guard contains(id) else { throw .unknownStep(id, context: "release", at: location) }
        guard records[id - 1].spec.wait else { throw .notWaiting(id, at: location) }
        guard records[id - 1].status == .waiting else { return }
        records[id - 1].releasedBy = inserter
        setStatus(id, .new)
        enqueueIfReady(id)
    }

    /// The lowest ready id, without taking it.
    package mutating func peekReady() -> StepID? {
        while let id = ready.min {
            if isReady(id) { return id }
            _ = ready.popMin()
            queued[id - 1] = false
        }
        return nil
    }

    /// Marks the lowest ready step running and returns it.
    package mutating func takeReady() -> StepID? {
        guard let id = peekReady() else { return nil }
        _ = ready.popMin()
        queued[id - 1] = false
        markRunning(id)
        return id
    }

    private mutating func markRunning(_ id: StepID) {
        setStatus(id, .running)
        records[id - 1].attempts += 1
        // This attempt's inserts are matched against what the step inserted before (S12).
        if !sequences.isEmpty && sequences[.step(id)] != nil { sequences[.step(id)]!.cursor = 0 }
    }

    /// The prerequisites `id` still waits for, when it may be sent behind them to `rank`: it is `new`,
    /// and each prerequisite that is not done runs on `rank` (sent there, maybe not started). Nil
    /// otherwise, and for steps with more than `behindLimit` prerequisites (a merge step: the scan
    /// would cost more than the round trip it saves).
    package func unfinishedPrerequisites(of id: StepID, allOn rank: Int) -> [StepID]? {
        guard records[id - 1].status == .new, remaining[id - 1] > 0, records[id - 1].prerequisites.count <= Self.behindLimit,
              unconfirmed.isEmpty, staleRuns.isEmpty else { return nil }
        var behind: [StepID] = []
        for p in records[id - 1].prerequisites where !isDone(p) {
            guard records[p - 1].status == .running, records[p - 1].rank == rank else { return nil }
            behind.append(p)
        }
        return behind.isEmpty ? nil : behind
    }

    /// The first prerequisite a `new` step still waits for, and the rank that runs it, if it runs.
    package func firstUnfinishedPrerequisite(of id: StepID) -> (StepID, rank: Int)? {
        guard records[id - 1].status == .new, remaining[id - 1] > 0,
              let first = records[id - 1].prerequisites.first(where: { !isDone($0) }),
              records[first - 1].status == .running, let rank = records[first - 1].rank else { return nil }
        return (first, rank)
    }

    /// How many of a step's prerequisites it still waits for.
    package func prerequisitesLeft(_ id: StepID) -> Int { Int(remaining[id - 1]) }

    /// Prerequisites past this many are not scanned for `unfinishedPrerequisites`.
    static let behindLimit = 32

    /// Marks a step running before it is ready: it was sent behind its unfinished prerequisites
    /// (`unfinishedPrerequisites`), to start on their rank once they finish there.
    package mutating func sendBehind(_ id: StepID) {
        precondition(records[id - 1].status == .new && remaining[id - 1] > 0, "step \(id) sent behind its prerequisites but was \(records[id - 1].status)")
        markRunning(id)
        sentBehind.insert(id)
    }

    /// The steps waiting on `id` (its dependents that have not seen it finish).
    package func waitingOn(_ id: StepID) -> [Int32] { dependents[id - 1] }

    /// Takes the lowest ready step out of the ready queue without starting it (the scheduler passes
    /// over it for now); `putBackReady` returns it.
    package mutating func setAsideReady(_ id: StepID) {
        guard ready.min == id else { return }
        _ = ready.popMin()
        queued[id - 1] = false
    }

    /// Returns steps set aside to the ready queue.
    package mutating func putBackReady(_ ids: [StepID]) {
        for id in ids { enqueueIfReady(id) }
    }

    /// Whether any step is ready to run.
    package mutating func hasReady() -> Bool { peekReady() != nil }

    /// Records where and when a running step ran.
    /// Steps whose record holds a result (S13): until one does, no assignment carries inputs.
    package internal(set) var resultCount = 0

    /// Keeps the result a running step set, before it is recorded finished.
    package mutating func noteResult(_ id: StepID, _ result: [UInt8]?) {
        if records[id - 1].result == nil, result != nil { resultCount += 1 }
        if records[id - 1].result != nil, result == nil { resultCount -= 1 }
        records[id - 1].result = result
    }

    /// What a step about to run is handed of its prerequisites' results: each prerequisite with its
    /// result (empty: it set none), or nil while no step of the run has set one (S13).
    /// - Parameter evenWithoutResults: the list even before any step set a result (for a step sent
    ///   behind its prerequisites: its rank fills in theirs).
    package func inputs(of id: StepID, evenWithoutResults: Bool = false) -> [StepInput]? {
        guard resultCount > 0 || evenWithoutResults else { return nil }
        let prerequisites = records[id - 1].prerequisites
        var inputs: [StepInput] = []
        inputs.reserveCapacity(prerequisites.count)
        for p in prerequisites {
            // Fields read in place: `records[p - 1].displayName` copied the whole record to call its
            // getter, ~330 instructions a prerequisite (callgrind, Task Bench stencil_1d at width 16:
            // a third of rank 0's dispatch).
            let name = StepRecord.displayName(function: records[p - 1].spec.function, args: records[p - 1].spec.args)
            // A prerequisite's file fingerprints are rank 0's business, not its dependents'.
            inputs.append(StepInput(id: p, name: name, result: StepOutcomeBlob.split(records[p - 1].result ?? []).result))
        }
        return inputs
    }

    package mutating func noteRun(_ id: StepID, rank: Int?, slot: Int?, gpus: [Int]? = nil,
                                 start: Double?, end: Double?, logPath: String?) {
        if let rank { records[id - 1].rank = rank }
        if let slot { records[id - 1].slot = slot }
        if let gpus { records[id - 1].gpus = gpus }
        if let start { records[id - 1].start = start }
        if let end { records[id - 1].end = end }
        if let logPath { records[id - 1].logPath = logPath }
        markChanged(id)
    }

    /// A running step finished: its dependents lose one unfinished prerequisite. What it inserted in an
    /// earlier attempt and did not insert again is dropped (S12).
    package mutating func finish(_ id: StepID) {
        precondition(records[id - 1].status == .running, "step \(id) finished but was \(records[id - 1].status)")
        if !staleRuns.isEmpty, staleRuns.remove(id) != nil {
            // An input changed while it ran (S9): what it made is stale, it runs again.
            noteResult(id, nil)
            setStatus(id, .new)
            records[id - 1].attempts -= 1
            rebuildIndices()
            return
        }
        setStatus(id, .finished)
        records[id - 1].error = nil
        // Deaths count while a step keeps dying with its job; once it finished, they are history.
        records[id - 1].crashes = 0
        // A prerequisite held since it started (its inserter runs again, S12) leaves it provisional.
        if !unconfirmed.isEmpty {
            for p in records[id - 1].prerequisites where !isDone(p) {
                remaining[id - 1] += 1
                dependents[p - 1].append(Int32(id))
            }
        }
        if remaining[id - 1] == 0 { releaseDependents(of: id) }
        dropUnmatchedRest(of: .step(id), reason: .notInsertedAgain(id))
    }

    /// Dependents of a step now done for them lose one unfinished prerequisite.
    mutating func releaseDependents(of id: StepID) {
        // The work list starts empty (no allocation): it only fills for provisional steps, and this
        // runs for every step that finishes.
        var next: StepID? = id
        var work: [StepID] = []
        while let done = next {
            let deps = dependents[done - 1]
            if !deps.isEmpty { dependents[done - 1] = [] }
            for d in deps {
                let d = Int(d)
                remaining[d - 1] -= 1
                // A provisional finished step whose last pending prerequisite is done is done too.
                if isDone(d) { work.append(d) } else { enqueueIfReady(d) }
            }
            next = work.popLast()
        }
    }

    /// A running step failed. It runs again while attempts remain (`retries`); otherwise it is
    /// `failed`, and with `skipDependentsOfFailures` every step that depends on it is `skipped`.
    /// Returns true when the step is now `failed`.
    @discardableResult
    package mutating func fail(_ id: StepID, error: String) -> Bool {
        precondition(records[id - 1].status == .running, "step \(id) failed but was \(records[id - 1].status)")
        records[id - 1].error = error
        if records[id - 1].attempts <= records[id - 1].spec.retries {
            records[id - 1].start = nil
            setStatus(id, .new)
            // The next attempt inserts again: what this one inserted and has not started waits for it (S12).
            holdInserts(of: id)
            enqueueIfReady(id)
            return false
        }
        setStatus(id, .failed)
        // No attempt is left to insert again what an earlier attempt inserted: those steps stand as
        // they are (as they would have with no retries at all).
        releaseHeldInserts(of: id)
        if skipDependentsOfFailures { skipDependents(of: id) }
        return true
    }

    /// A running step was handed back unstarted (the run stopped launching): it is `new` again.
    package mutating func unassign(_ id: StepID) {
        guard records[id - 1].status == .running else { return }
        records[id - 1].attempts -= 1
        setStatus(id, .new)
        // Sent behind a prerequisite that then failed: its failure passed it over while it counted as
        // running, so it is skipped now (`--keep-going`).
        if skipDependentsOfFailures, remaining[id - 1] > 0,
           records[id - 1].prerequisites.contains(where: { records[$0 - 1].status == .failed || records[$0 - 1].status == .skipped }) {
            skip(id)
            return
        }
        enqueueIfReady(id)
    }

    /// A running step was stopped by a signal.
    package mutating func abort(_ id: StepID) {
        guard records[id - 1].status == .running else { return }
        setStatus(id, .aborted)
    }

    /// Ids of steps that are still `waiting`.
    package var waitingSteps: [StepID] {
        records.lazy.filter { $0.status == .waiting && !$0.isDropped }.map(\.id)
    }

    /// Ids of steps that are `new` but will never become ready (a prerequisite never finishes).
    package var blockedSteps: [StepID] {
        records.lazy.filter { $0.status == .new && !$0.isDropped }.map(\.id)
    }

    /// The first of `steps` that depends on `ancestor`, directly or through other unfinished steps:
    /// one search over the ancestors of all of them.
    func firstDependingOn(_ ancestor: StepID, among steps: [StepID]) -> StepID? {
        var seen = Set<StepID>()
        for start in steps {
            var stack = [start]
            while let s = stack.popLast() {
                if s == ancestor { return start }
                // A finished step cannot depend on a step that has not started.
                if records[s - 1].status == .finished || !seen.insert(s).inserted { continue }
                stack.append(contentsOf: records[s - 1].prerequisites)
            }
        }
        return nil
    }

    /// Lists up to this long are searched; longer ones get a set (see `longPrerequisiteSets`).
    static let shortList = 32

    func hasPrerequisite(_ target: StepID, _ p: StepID) -> Bool {
        if let set = longPrerequisiteSets[target] { return set.contains(p) }
        return records[target - 1].prerequisites.contains(p)
    }

    mutating func appendPrerequisite(_ target: StepID, _ p: StepID) {
        records[target - 1].prerequisites.append(p)
        if longPrerequisiteSets[target] != nil {
            longPrerequisiteSets[target]!.insert(p)
        } else if records[target - 1].prerequisites.count > Self.shortList {
            longPrerequisiteSets[target] = Set(records[target - 1].prerequisites)
        }
    }

    func isReady(_ id: StepID) -> Bool {
        records[id - 1].status == .new && remaining[id - 1] == 0 && !isUnconfirmed(id)
    }

    mutating func enqueueIfReady(_ id: StepID) {
        guard isReady(id), !queued[id - 1] else { return }
        queued[id - 1] = true
        ready.insert(id)
    }

    mutating func skip(_ id: StepID) {
        let s = records[id - 1].status
        guard s == .new || s == .waiting else { return }
        setStatus(id, .skipped)
        skipDependents(of: id)
    }

    /// Skips what depends on a failed or skipped step (`--keep-going`), and what a skipped step had
    /// inserted in an earlier attempt and would have inserted again (S12): it will not run to do so.
    private mutating func skipDependents(of id: StepID) {
        var work = dependents[id - 1].map(Int.init) + heldInserts(of: id)
        dependents[id - 1] = []
        while let d = work.popLast() {
            let s = records[d - 1].status
            guard s == .new || s == .waiting else { continue }
            setStatus(d, .skipped)
            unconfirmed.remove(d)
            work.append(contentsOf: dependents[d - 1].map(Int.init))
            work.append(contentsOf: heldInserts(of: d))
            dependents[d - 1] = []
        }
    }

    /// What `id` inserted that still waits for it to insert it again.
    private func heldInserts(of id: StepID) -> [StepID] {
        guard !unconfirmed.isEmpty, let sequence = sequences[.step(id)] else { return [] }
        return sequence.children.filter { unconfirmed.contains($0) }
    }

    /// The steps changed since the last call, each once, in the order they first changed.
    package mutating func takeChanged() -> [StepID] {
        guard changedShown < changed.count else { return [] }
        let ids = changed[changedShown...].map { Int($0) }
        for id in ids { isChanged[id - 1] = false }
        changed.removeAll(keepingCapacity: true)
        changedShown = 0
        return ids
    }

    /// Shows `visit` the record of at most `limit` of the steps changed since the last `takeChanged`
    /// or `visitChanged`, in place, those that changed first (a step sent moments ago may end before
    /// its turn, and is then written once), and forgets them; returns whether changed steps are left.
    /// The pointer is valid only during the call. A step that changes again after it was shown is
    /// shown again by a later call, so calls repeated until none is left have shown every step as it
    /// is at the end of the last call, whatever changed between them.
    package mutating func visitChanged(upTo limit: Int, _ visit: (UnsafePointer<StepRecord>) -> Void) -> Bool {
        let shown = changedShown..<changedShown + min(max(limit, 0), changed.count - changedShown)
        records.withUnsafeBufferPointer { records in
            guard let first = records.baseAddress else { return }
            for i in shown { visit(first + Int(changed[i]) - 1) }
        }
        for i in shown { isChanged[Int(changed[i]) - 1] = false }
        changedShown = shown.upperBound
        guard changedShown == changed.count else { return true }
        changed.removeAll(keepingCapacity: true)
        changedShown = 0
        return false
    }

    mutating func markChanged(_ id: StepID) {
        guard !isChanged[id - 1] else { return }
        isChanged[id - 1] = true
        changed.append(Int32(id))
    }

    mutating func setStatus(_ id: StepID, _ status: StepStatus) {
        markChanged(id)
        if !sentBehind.isEmpty && records[id - 1].status == .running { sentBehind.remove(id) }
        countByStatus[records[id - 1].status.ordinal] -= 1
        records[id - 1].status = status
        countByStatus[status.ordinal] += 1
    }
}

/// What one inserter (a step, or the `stepsCheck` hook) inserted, in order, and how far its current
/// attempt got in inserting the same steps again (S12).
struct InsertSequence: Sendable {
    var children: [StepID] = []
    /// The position of the current attempt's next insert; before it, every insert matched or was new.
    var cursor = 0

    mutating func append(_ id: StepID) {
        children.append(id)
        cursor = children.count
    }
}

/// What a rank's report about a step is to rank 0 (see `StepGraph.check`).
package enum ReportCheck: Sendable, Equatable {
    case running
    /// The step is no longer running: a report that arrived after a signal or a take-back.
    case late
    /// Rank 0 never created it.
    case unknown
    /// Rank 0 gave it to this other rank.
    case otherRank(Int)
}
