import Foundation
import Synchronization

/// Rank 0's scheduler, shared by the coordinator loop, `insertAllSteps` and the `stepsCheck` hook.
package final class SchedulerState: Sendable {
    let scheduler: Mutex<Scheduler>

    package init(_ config: SchedulerConfig) { scheduler = Mutex(Scheduler(config: config)) }

    /// A scheduler over a graph rebuilt from the run database (S9, S12).
    package init(_ config: SchedulerConfig, restoring records: [StepRecord], unconfirmed: Set<StepID> = []) {
        scheduler = Mutex(Scheduler(config: config, restoring: records, unconfirmed: unconfirmed))
    }

    package func withScheduler<T>(_ body: (inout Scheduler) throws -> T) rethrows -> T {
        try scheduler.withLock { try body(&$0) }
    }

    /// An editor that applies edits straight to this scheduler.
    package var editor: any GraphEditor { DirectEditor(state: self) }

    private struct DirectEditor: GraphEditor {
        let state: SchedulerState
        func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
            try state.scheduler.withLock { s throws(StepGraphError) in try s.apply(edit, by: inserter) }
        }
    }
}

/// How a run ended, with every step's record: what a launcher returns on rank 0.
public struct RunReport: Sendable {
    /// How the run ended.
    public let outcome: RunOutcome
    /// The steps of the run in id order (steps dropped by S12 left out).
    public let records: [StepRecord]
    package let config: SchedulerConfig
    /// How long this launch ran, in seconds.
    public let wallSeconds: Double
    /// When the coordinator started, in seconds since the epoch.
    public let started: Double
    /// Why the run stopped early besides a step's failure: the `stepsCheck` hook threw, or a rank sent
    /// something rank 0 could not use.
    public let hookError: String?
    /// What went wrong with the run database, if anything: the database may not hold the end of the run.
    public private(set) var databaseError: String?
    /// The run ended because a rank stopped answering or sent nonsense: the other ranks cannot be
    /// waited for (MPI is not finalized).
    package var ranksAbandoned = false
    /// Ranks this launch lost: silent past `--rank-timeout`, or that did not answer after a signal
    /// (the launcher was ending the job because they died). Their steps were left as they were.
    package var lostRanks: [Int] = []
    /// Why a rank ended the run, when one did.
    package var rankFailure: RankFailure?
    /// How many times a step was sent behind its prerequisites (`SchedulerConfig.sendBehind`).
    package var sentBehind = 0

    package init(outcome: RunOutcome, records: [StepRecord], config: SchedulerConfig, wallSeconds: Double, started: Double,
                hookError: String?, databaseError: String? = nil) {
        self.outcome = outcome
        self.records = records
        self.config = config
        self.wallSeconds = wallSeconds
        self.started = started
        self.hookError = hookError
        self.databaseError = databaseError
    }

    /// 128+signal when stopped by one (whatever else went wrong: a resubmission continues it); 0 when
    /// every step finished and everything was recorded; 1 otherwise.
    public var exitCode: Int32 {
        if case .aborted(let signal) = outcome { return 128 + signal }
        if outcome == .stoppedForTimeLimit { return 128 + SIGTERM }
        if hookError != nil || databaseError != nil { return 1 }
        switch outcome {
        case .finished: return 0
        case .failed, .stalled, .aborted, .stoppedForTimeLimit: return 1
        }
    }

    /// The status recorded for the run: always the one the exit code tells.
    public var statusName: String {
        if case .aborted = outcome { return "aborted" }
        if outcome == .stoppedForTimeLimit { return outcome.statusName }
        if (hookError != nil || databaseError != nil), outcome == .finished { return "failed" }
        return outcome.statusName
    }

    /// How many steps ended in `status`.
    public func count(_ status: StepStatus) -> Int { records.lazy.filter { $0.status == status }.count }

    /// The record of step `id`, if it is part of the run.
    public func record(_ id: StepID) -> StepRecord? {
        if id >= 1 && id <= records.count && records[id - 1].id == id { return records[id - 1] }
        var low = 0, high = records.count
        while low < high {
            let mid = (low + high) / 2
            if records[mid].id < id { low = mid + 1 } else { high = mid }
        }
        return low < records.count && records[low].id == id ? records[low] : nil
    }

    func addingDatabaseError(_ failure: String) -> RunReport {
        var copy = self
        copy.databaseError = copy.databaseError.map { $0 + "; " + failure } ?? failure
        return copy
    }
}

/// A rank that ended the run.
package enum RankFailure: Sendable, Equatable {
    /// Sent nothing for longer than `--rank-timeout`: stopped, hung or unreachable.
    case silent(rank: Int)
    /// Sent what rank 0 cannot use: the ranks do not run the same build.
    case nonsense(rank: Int?)
}

/// Rank 0's loop: hands ready steps to ranks, applies what comes back, calls the `stepsCheck` hook,
/// and decides when the run is over (S4, S6, S7).
package final class Coordinator: Sendable {
    private let state: SchedulerState
    private let transport: any CoordinatorTransport
    private let hook: (@Sendable (StepsCheck) throws -> Void)?
    private let hookInterval: Duration
    private let functionNames: Set<String>
    private let progress: (@Sendable (ProgressSnapshot) -> Void)?
    private let stepTime = StepTimeAverage()
    private let journal: (any RunJournal)?
    /// Where a stop signal comes from: SIGINT/SIGTERM when the command line watches them, or a test's.
    private let signalSource: (@Sendable () -> Int32?)?
    /// A rank silent for longer than this (no message, no heartbeat) ends the run; nil: wait forever.
    private let rankTimeout: Duration?
    /// Seconds since the epoch after which no step starts (`--stop-before`), and why.
    private let launchDeadline: (time: Double, why: String)?
    private let notes: (@Sendable (String) -> Void)?

    /// The loop's state, shared with the hook's editor, which runs on the same thread (the hook is
    /// called from the loop).
    // @unchecked: only the coordinator's thread touches it (the loop, and the hook it calls).
    private final class LoopBox: @unchecked Sendable {
        var state = LoopState()
    }

    /// The `stepsCheck` hook's edits: applied at once, but an `addPrerequisites` to a step sent ahead
    /// to a rank first takes the step back (S3), answering the ranks meanwhile.
    private struct HookEditor: GraphEditor {
        let coordinator: Coordinator
        let box: LoopBox

        func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
            if case .addPrerequisites(let target, let prerequisites, _) = edit {
                coordinator.takeBackForHook(target, prerequisites, box)
            }
            return try coordinator.state.editor.apply(edit, by: inserter)
        }
    }

    /// Takes `target` back from the rank it was sent to, if it was sent ahead and has not started
    /// and the hook adds it a prerequisite it lacks; returns once it is back or started.
    private func takeBackForHook(_ target: StepID, _ prerequisites: [StepID], _ box: LoopBox) {
        func sentAhead() -> Int? {
            state.withScheduler { s -> Int? in
                guard s.graph.contains(target) else { return nil }
                let r = s.graph.records[target - 1]
                guard r.status == .running, r.start == nil, let rank = r.rank,
                      prerequisites.contains(where: { !s.graph.hasPrerequisite(target, $0) }) else { return nil }
                return rank
            }
        }
        guard let rank = sentAhead() else { return }
        transport.takeBack([target], from: rank)
        // A rank answers within milliseconds; one that does not is dead, and the edit is refused.
        let deadline = ContinuousClock.now + .seconds(30)
        while sentAhead() != nil, box.state.broken == nil, ContinuousClock.now < deadline {
            for event in transport.nextEvents(timeout: .milliseconds(1)) { apply(event, &box.state) }
        }
    }

    /// What the loop keeps between events; only the coordinator's thread touches it.
    private struct LoopState {
        /// `addPrerequisites` requests for steps sent ahead to a rank but not started: they wait until
        /// the rank hands the step back (then they apply) or starts it (then they are refused), S3.
        var waitingForTakeBack: [StepID: [(StepRequest, ReplyAddress)]] = [:]
        /// Set when a rank sent something that makes no sense here: the run ends failed with it.
        var broken: String?
        /// After a signal: the worker ranks with started steps that have not yet shown they are alive.
        var silentRanks: (signal: Int32, ranks: Set<Int>, deadline: ContinuousClock.Instant)?
        /// Running steps a rank said started (steps sent ahead that wait on a rank are running to the
        /// scheduler, but not to a person reading the progress line).
        var started = 0
        /// Why a rank ended the run (with `broken`).
        var rankFailure: RankFailure?
        /// Ranks that did not answer after a signal, once the run was stopped.
        var lostAfterSignal: Set<Int> = []
    }
    /// How often changed steps go to the journal (S8: batched, never per step). The last hand-off is
    /// waited for when the run ends: at 100 ms it held up to 100,000 steps of a fast run, ~5 ms to
    /// write; at 25 ms a quarter (the store's cost measured ~2 points lower on mpi=2).
    static let journalInterval: Duration = .milliseconds(25)
    /// How often progress is reported; the journal is synced first, so what is shown is committed.
    static let progressInterval: Duration = .milliseconds(500)
    /// How long, after a signal, a worker rank has to show it is alive; a live one answers within
    /// milliseconds, and the launcher ends the job about a second after its signal.
    static let aliveWait: Duration = .milliseconds(300)
    /// How long an ending that stops the ranks at once (a signal, a failed rank) waits for its frames
    /// to go: a live rank takes them in microseconds, a stopped one never does.
    static let endingSendWait: Duration = .seconds(2)

    package init(state: SchedulerState, transport: any CoordinatorTransport, functionNames: Set<String>,
                hook: (@Sendable (StepsCheck) throws -> Void)? = nil, hookInterval: Duration = .seconds(1),
                progress: (@Sendable (ProgressSnapshot) -> Void)? = nil, journal: (any RunJournal)? = nil,
                watchSignals: Bool = false, notes: (@Sendable (String) -> Void)? = nil,
                signalSource: (@Sendable () -> Int32?)? = nil, rankTimeout: Duration? = nil,
                launchDeadline: (time: Double, why: String)? = nil) {
        self.journal = journal
        self.rankTimeout = rankTimeout
        self.launchDeadline = launchDeadline
        self.notes = notes
        self.signalSource = signalSource ?? (watchSignals ? { @Sendable in SignalWatch.received } : nil)
        self.state = state
        self.transport = transport
        self.hook = hook
        self.hookInterval = hookInterval
        self.functionNames = functionNames
        self.progress = progress
    }

    /// Runs until every step is accounted for, the run fails or stalls; then shuts the ranks down.
    package func run() -> RunReport {
        let clock = ContinuousClock()
        let started = clock.now
        let startedAt = Date().timeIntervalSince1970
        var hookActive = hook != nil
        var hookError: String?
        var nextHook = started + hookInterval
        let box = LoopBox()
        let checker = StepsCheck(steps: StepInserter(.stepsCheck, editor: HookEditor(coordinator: self, box: box), functionNames: functionNames),
                                 status: { [state] id in state.withScheduler { s in s.graph.contains(id) ? s.graph.status(id) : nil } })
        var outcome: RunOutcome
        var lastJournal = started, lastProgress = started
        var journalFailure: String?
        // The protocol's own steps are written when they first change (start, finish, get skipped);
        // those that never do are written at the end. Until then insertAllSteps can recreate them, so
        // a crash loses nothing, and most steps cost the database one row write instead of two.
        let notYetWritten = journal == nil ? [] : state.withScheduler { $0.takeChanged() }
        var notesShown = state.withScheduler { $0.graph.dropNotes.count }
        // After a signal, ranks with started steps must show they are alive. A launcher that lost a
        // rank signals the others; the steps of a rank that died are left `running`, so a continue
        // counts that death (the crash limit), and the others are `aborted`.
        var signalHandled = false
        var lastSilenceCheck = started
        var stoppedForTimeLimit = false
        if let launchDeadline { state.withScheduler { $0.setLaunchDeadline(launchDeadline.time) } }
        // Rank 0's own short steps run on this thread (`WorkerPool.runInline`): one that edits the
        // graph has its answer applied from inside its wait.
        transport.applyWhileInline { [self, box] events in
            applyInOrder(events, &box.state)
            return box.state.broken == nil
        }
        while true {
            if !signalHandled, let signal = signalSource?() {
                if box.state.silentRanks == nil {
                    let ranks = state.withScheduler { s in
                        s.stopLaunching()
                        return Set(s.graph.records.lazy.filter { $0.status == .running && $0.start != nil }.compactMap(\.rank)).subtracting([0])
                    }
                    transport.checkAlive(Array(ranks))
                    box.state.silentRanks = (signal, ranks, clock.now + Self.aliveWait)
                }
                if let silent = box.state.silentRanks, silent.ranks.isEmpty || clock.now >= silent.deadline {
                    state.withScheduler { $0.abort(signal: silent.signal, silentRanks: silent.ranks) }
                    box.state.lostAfterSignal = silent.ranks
                    signalHandled = true
                }
            }
            if let rankTimeout, clock.now - lastSilenceCheck >= .seconds(1) {
                lastSilenceCheck = clock.now
                let silent = transport.silentRanks(longerThan: rankTimeout)
                if let rank = silent.first {
                    let host = transport.host(of: rank).map { " on host \($0)" } ?? ""
                    fail(rank: rank, "rank \(rank)\(host) has sent nothing for more than \(DurationText.text(Double(rankTimeout.components.seconds))) (--rank-timeout): it is stopped, hung or unreachable. Its steps and the others' were recorded aborted; finish the run with --continue", &box.state, sameBuild: false)
                    if box.state.rankFailure == nil { box.state.rankFailure = .silent(rank: rank) }
                }
            }
            dispatch()
            // Right after the dispatch, so "every ready step is too long" is what it just found with
            // every slot that is free now, not what an earlier dispatch left aside.
            if let launchDeadline, !stoppedForTimeLimit,
               let stop = state.withScheduler({ $0.stopAtLaunchDeadline(now: Date().timeIntervalSince1970, why: launchDeadline.why, hookActive: hookActive) }) {
                stoppedForTimeLimit = true
                transport.takeBackUnstarted()
                // With nothing left the run simply finishes: no message, exit 0.
                if let message = stop.message { hookError = message }
            }
            if let broken = box.state.broken {
                hookError = broken
                outcome = .failed
                break
            }
            // A run that stops at a failure (S7) does not wait for the hook: nothing it releases could
            // run (a step recorded failed by the crash limit stops its dependents too).
            if box.state.silentRanks == nil || signalHandled,
               let done = state.withScheduler({ $0.endingOutcome(hookWaiting: hookActive && hookError == nil) }) {
                outcome = done
                break
            }
            let now = clock.now
            var wait = hookActive ? min(nextHook - now, .milliseconds(250)) : .milliseconds(250)
            if box.state.silentRanks != nil && !signalHandled { wait = .milliseconds(5) }
            applyInOrder(transport.nextEvents(timeout: max(wait, .zero)), &box.state)
            if hookActive, let hook, clock.now >= nextHook, hookError == nil {
                do {
                    try hook(checker)
                    hookActive = checker.hasHook
                } catch {
                    hookError = "stepsCheck failed: \(ErrorText.sentence(error))"
                    state.withScheduler { $0.stopLaunching() }
                    transport.takeBackUnstarted()
                }
                nextHook = clock.now + hookInterval
            }
            let now2 = clock.now
            if journal != nil, now2 - lastJournal >= Self.journalInterval {
                handOffChanged()
                lastJournal = now2
            }
            if let progress, now2 - lastProgress >= Self.progressInterval {
                handOffChanged()
                if let failure = journal?.sync() { journalFailure = failure }
                progress(snapshot(elapsed: now2 - started, startedSteps: box.state.started))
                lastProgress = now2
            }
            if journalFailure != nil, state.withScheduler({ s in defer { s.stopLaunching() }; return !s.stopping }) {
                transport.takeBackUnstarted()
            }
            if let notes {
                let all = state.withScheduler { $0.graph.dropNotes }
                for note in all.dropFirst(notesShown) { notes(note) }
                notesShown = all.count
            }
        }
        outcome = state.withScheduler { [outcome, hookError] in $0.recordedOutcome(outcome, hookError: hookError) }
        // Commit first, whatever the ending: after a signal the launcher may end every rank soon
        // (mpirun: one second), and telling the ranks may wait on one that stopped reading.
        handOffChanged()
        if let failure = journal?.sync() { journalFailure = failure }
        var abandoned = box.state.broken != nil
        if case .aborted = outcome {
            transport.abort(within: Self.endingSendWait)
        } else if abandoned {
            transport.abort(within: Self.endingSendWait)
        } else if !transport.shutdown(within: rankTimeout) {
            // A rank took no frame for --rank-timeout: it cannot finish MPI's exchange either.
            abandoned = true
            notes?("a rank did not take the end of the run within --rank-timeout; leaving it to the launcher")
        }
        handOffChanged()
        if let journal, !notYetWritten.isEmpty {
            journal.record(state.withScheduler { s in
                // Filter ids first: copying every protocol step's record to keep a few held 200 bytes a step.
                notYetWritten.filter { [.new, .waiting].contains(s.graph.status($0)) }.map { s.graph.record($0) }
            })
        }
        if let failure = journal?.sync() { journalFailure = failure }
        let elapsed = clock.now - started
        if let progress { progress(snapshot(elapsed: elapsed, startedSteps: box.state.started, final: true)) }
        let records = state.withScheduler { $0.graph.liveRecords }
        let config = state.withScheduler { $0.config }
        var report = RunReport(outcome: outcome, records: records, config: config,
                               wallSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                               started: startedAt,
                               hookError: hookError, databaseError: journalFailure.map { "run database: \($0)" })
        report.ranksAbandoned = abandoned
        report.rankFailure = box.state.rankFailure
        report.sentBehind = state.withScheduler { $0.sentBehindCount }
        if case .silent(let rank) = box.state.rankFailure {
            report.lostRanks = [rank]
        } else {
            report.lostRanks = box.state.lostAfterSignal.sorted()
        }
        return report
    }

    /// Queues a pull of the steps changed since the last one: the journal copies them when it writes
    /// them, so each commit is a state the run was in (S8, S12).
    ///
    /// The pull takes `pullChunk` steps at a time and lets the scheduler go between chunks, until no
    /// changed step is left: the row then holds every step as it was at the end of the last chunk
    /// (one that changed after its chunk is taken again), still one moment of the run. In one piece,
    /// the pull held the lock ~5 ms of every 25 at 1.5M steps/s, and the coordinator waited for it.
    /// After `pullChunksBeforeAll` chunks, the rest is taken at once, so a pull always ends.
    private func handOffChanged() {
        guard let journal else { return }
        journal.record(pulling: { [state] visit in
            var chunks = 0
            while state.withScheduler({ s in s.visitChanged(upTo: chunks < Self.pullChunksBeforeAll ? Self.pullChunk : .max, visit) }) {
                chunks += 1
            }
        })
    }

    /// Changed steps the journal takes per hold of the scheduler's lock (~0.3 ms of encoding).
    static let pullChunk = 2_048
    /// Chunks after which a pull takes all that is left in one hold.
    static let pullChunksBeforeAll = 64

    private func dispatch() {
        let now = launchDeadline == nil ? nil : Date().timeIntervalSince1970
        // A step for another rank is encoded into that rank's next frame here, read from the graph
        // (`CoordinatorTransport.send`); only rank 0's own steps are made into assignments, for its
        // pool. Each assignment made, listed and released cost ~1,000 instructions a step sent.
        var own: [StepAssignment] = []
        state.withScheduler { s in
            let assignments = s.nextAssignments(now: now)
            guard !assignments.isEmpty else { return }
            for a in assignments {
                if a.rank == 0 {
                    if own.isEmpty { own.reserveCapacity(assignments.count) }
                    own.append(StepAssignment(a, in: s.graph))
                } else {
                    transport.send(a, from: s.graph)
                }
            }
        }
        if !own.isEmpty { transport.assign(own, to: 0) }
    }

    /// Applies `events` in order, with one access to the loop state for the batch instead of one per
    /// event (an exclusivity check, ~5% of rank 0's work a step).
    private func applyInOrder(_ events: [RankEvent], _ loop: inout LoopState) {
        for event in events { apply(event, &loop) }
    }

    private func apply(_ event: RankEvent, _ loop: inout LoopState) {
        switch event {
        case .message(let rank, let message): apply(message, from: rank, &loop)
        case .broken(let rank, let message): fail(rank: rank, message, &loop)
        }
    }

    private func apply(_ message: FromRank, from rank: Int, _ loop: inout LoopState) {
        switch message {
        case .started(let s):
            let (known, first) = state.withScheduler { sched -> (ReportCheck, Bool) in
                let check = sched.graph.check(s.id, from: s.rank)
                guard check == .running else { return (check, false) }
                let first = sched.graph.records[s.id - 1].start == nil
                sched.noteRun(s.id, slot: s.slot, start: s.start, end: nil, logPath: nil)
                return (check, first)
            }
            guard accept(known, s.id, from: s.rank, "started", &loop) else { return }
            if first { loop.started += 1 }
            // It started before it could be handed back: the edits that waited for that are refused.
            if !loop.waitingForTakeBack.isEmpty, let waiting = loop.waitingForTakeBack.removeValue(forKey: s.id) {
                for (request, address) in waiting { answer(request, address) }
            }
        case .ended(let outcome):
            let (known, stopNow, wasStarted) = state.withScheduler { s -> (ReportCheck, Bool, Bool) in
                let check = s.graph.check(outcome.id, from: outcome.rank)
                guard check == .running else { return (check, false, false) }
                let wasStarted = s.graph.records[outcome.id - 1].start != nil
                s.noteRun(outcome.id, slot: outcome.slot >= 0 ? outcome.slot : nil, start: outcome.start,
                          end: outcome.end, logPath: outcome.logPath)
                if outcome.report == .finished { s.noteResult(outcome.id, outcome.result) }
                if let start = outcome.start, let end = outcome.end, stepTime.add(end - start) {
                    s.adaptPrefetch(meanStepSeconds: stepTime.mean)
                }
                return (check, s.stepEnded(outcome.id, outcome.report), wasStarted)
            }
            guard accept(known, outcome.id, from: outcome.rank, "ended", &loop) else { return }
            if wasStarted { loop.started -= 1 }
            if stopNow { transport.takeBackUnstarted() }
            if !loop.waitingForTakeBack.isEmpty, let waiting = loop.waitingForTakeBack.removeValue(forKey: outcome.id) {
                for (request, address) in waiting { answer(request, address) }
            }
        case .request(let token, let request):
            let address = ReplyAddress(rank: rank, token: token)
            // S3: prerequisites may be added to a step that has not started; one sent ahead to a rank is
            // taken back first, and the edit applies once it is back.
            let (known, takeBackFrom) = state.withScheduler { s -> (ReportCheck, Int?) in
                let check = s.graph.check(request.from, from: address.rank)
                guard check == .running, case .addPrerequisites(let target, let prerequisites, _) = request.edit,
                      s.graph.contains(target) else { return (check, nil) }
                let r = s.graph.records[target - 1]
                guard r.status == .running, r.start == nil, let rank = r.rank,
                      prerequisites.contains(where: { !s.graph.hasPrerequisite(target, $0) }) else { return (check, nil) }
                return (check, rank)
            }
            guard accept(known, request.from, from: address.rank, "a graph edit from", &loop) else {
                transport.reply(.failure(GraphEditError("rank 0 does not know step \(request.from) as running")), to: address)
                return
            }
            if let rank = takeBackFrom, case .addPrerequisites(let target, _, _) = request.edit {
                let first = loop.waitingForTakeBack[target] == nil
                loop.waitingForTakeBack[target, default: []].append((request, address))
                if first { transport.takeBack([target], from: rank) }
                return
            }
            answer(request, address)
        case .alive:
            loop.silentRanks?.ranks.remove(rank)
        }
    }

    /// Applies a step's graph edit and answers it.
    private func answer(_ request: StepRequest, _ address: ReplyAddress) {
        let result: EditResult = state.withScheduler { s in
            do throws(StepGraphError) {
                return .success(try s.apply(request.edit, by: .step(request.from)))
            } catch {
                return .failure(GraphEditError(error.description))
            }
        }
        transport.reply(result, to: address)
    }

    /// Whether to go on with a rank's report. A step rank 0 never created (or gave to another rank)
    /// means the ranks disagree: the run ends failed, naming the rank. A known step that is no longer
    /// running is a late report (after a signal or a take-back) and is ignored.
    private func accept(_ check: ReportCheck, _ id: StepID, from rank: Int?, _ what: String, _ loop: inout LoopState) -> Bool {
        switch check {
        case .running: return true
        case .late: return false
        case .unknown:
            fail(rank: rank, "rank \(rank.map(String.init) ?? "?") reported \(what) step \(id), which rank 0 never created", &loop)
        case .otherRank(let assigned):
            fail(rank: rank, "rank \(rank.map(String.init) ?? "?") reported \(what) step \(id), which rank 0 gave to rank \(assigned)", &loop)
        }
        return false
    }

    /// Ends the run failed because of `rank`: nothing more starts, and the loop stops at once; the
    /// ranks are told only after what rank 0 knows is committed (`run`).
    private func fail(rank: Int?, _ message: String, _ loop: inout LoopState, sameBuild: Bool = true) {
        if loop.broken == nil { loop.broken = message + (sameBuild ? ". Are all ranks running the same build of the program?" : ".") }
        if sameBuild, loop.rankFailure == nil { loop.rankFailure = .nonsense(rank: rank) }
        state.withScheduler { $0.abandon() }
    }

    private func snapshot(elapsed: Duration, startedSteps: Int, final: Bool = false) -> ProgressSnapshot {
        state.withScheduler { s in
            ProgressSnapshot(total: s.graph.count, finished: s.graph.count(.finished), running: min(max(startedSteps, 0), s.graph.count(.running)),
                             failed: s.graph.count(.failed), skipped: s.graph.count(.skipped),
                             waiting: s.graph.count(.waiting), elapsed: elapsed, final: final)
        }
    }
}

/// Counts for a progress line.
package struct ProgressSnapshot: Sendable, Equatable {
    package var total, finished, running, failed, skipped, waiting: Int
    package var elapsed: Duration
    package var final: Bool
}

/// The mean duration of recent steps, to size how far ahead steps are sent: refreshed after the
/// first 8 steps, then 16 and 32, then every 64, so a run of long steps stops sending ahead early.
final class StepTimeAverage: Sendable {
    private let state = Mutex<(sum: Double, count: Int, window: Int, mean: Double)>((0, 0, 8, 0))

    /// Adds a duration; returns true when the mean was refreshed.
    func add(_ seconds: Double) -> Bool {
        state.withLock { s in
            s.sum += seconds
            s.count += 1
            guard s.count == s.window else { return false }
            s.mean = s.sum / Double(s.window)
            s.sum = 0
            s.count = 0
            s.window = min(s.window * 2, 64)
            return true
        }
    }

    var mean: Double { state.withLock { $0.mean } }
}
