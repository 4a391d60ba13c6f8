import Foundation
import Synchronization

/// Rank 0's scheduler, shared by the coordinator loop, `insertAllSteps` and the `stepsCheck` hook.
public final class SchedulerState: Sendable {
    let scheduler: Mutex<Scheduler>

    public init(_ config: SchedulerConfig) { scheduler = Mutex(Scheduler(config: config)) }

    /// A scheduler over a graph rebuilt from the run database (S9).
    public init(_ config: SchedulerConfig, restoring records: [StepRecord]) {
        scheduler = Mutex(Scheduler(config: config, restoring: records))
    }

    public func withScheduler<T>(_ body: (inout Scheduler) throws -> T) rethrows -> T {
        try scheduler.withLock { try body(&$0) }
    }

    /// An editor that applies edits straight to this scheduler.
    public var editor: any GraphEditor { DirectEditor(state: self) }

    private struct DirectEditor: GraphEditor {
        let state: SchedulerState
        func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
            try state.scheduler.withLock { s throws(StepGraphError) in try s.apply(edit, by: inserter) }
        }
    }
}

/// How a run ended, with every step's record.
public struct RunReport: Sendable {
    public let outcome: RunOutcome
    public let records: [StepRecord]
    public let config: SchedulerConfig
    public let wallSeconds: Double
    /// When the coordinator started, in seconds since the epoch.
    public let started: Double
    /// Why the `stepsCheck` hook stopped the run, if it threw.
    public let hookError: String?

    /// 0 when every step finished, 1 when a step failed or the run stalled, 128+signal when stopped by one.
    public var exitCode: Int32 {
        if hookError != nil { return 1 }
        switch outcome {
        case .finished: return 0
        case .failed, .stalled: return 1
        case .aborted(let signal): return 128 + signal
        }
    }

    public func count(_ status: StepStatus) -> Int { records.lazy.filter { $0.status == status }.count }
}

/// Rank 0's loop: hands ready steps to ranks, applies what comes back, calls the `stepsCheck` hook,
/// and decides when the run is over (S4, S6, S7).
public final class Coordinator: Sendable {
    private let state: SchedulerState
    private let transport: any CoordinatorTransport
    private let hook: (@Sendable (StepsCheck) throws -> Void)?
    private let hookInterval: Duration
    private let functionNames: Set<String>
    private let progress: (@Sendable (ProgressSnapshot) -> Void)?
    private let stepTime = StepTimeAverage()
    private let journal: (any RunJournal)?
    private let watchSignals: Bool
    /// How often changed steps go to the journal (S8: batched, never per step).
    static let journalInterval: Duration = .milliseconds(100)
    /// How often progress is reported; the journal is synced first, so what is shown is committed.
    static let progressInterval: Duration = .milliseconds(500)

    public init(state: SchedulerState, transport: any CoordinatorTransport, functionNames: Set<String>,
                hook: (@Sendable (StepsCheck) throws -> Void)? = nil, hookInterval: Duration = .seconds(1),
                progress: (@Sendable (ProgressSnapshot) -> Void)? = nil, journal: (any RunJournal)? = nil,
                watchSignals: Bool = false) {
        self.journal = journal
        self.watchSignals = watchSignals
        self.state = state
        self.transport = transport
        self.hook = hook
        self.hookInterval = hookInterval
        self.functionNames = functionNames
        self.progress = progress
    }

    /// Runs until every step is accounted for, the run fails or stalls; then shuts the ranks down.
    public func run() -> RunReport {
        let clock = ContinuousClock()
        let started = clock.now
        let startedAt = Date().timeIntervalSince1970
        var hookActive = hook != nil
        var hookError: String?
        var nextHook = started + hookInterval
        let checker = StepsCheck(steps: StepInserter(.stepsCheck, editor: state.editor, functionNames: functionNames),
                                 status: { [state] id in state.withScheduler { s in s.graph.contains(id) ? s.graph.status(id) : nil } })
        var outcome: RunOutcome
        var lastJournal = started, lastProgress = started
        var journalFailure: String?
        // The protocol's own steps are written when they first change (start, finish, get skipped);
        // those that never do are written at the end. Until then insertAllSteps can recreate them, so
        // a crash loses nothing, and most steps cost the database one row write instead of two.
        let notYetWritten = journal == nil ? [] : state.withScheduler { $0.takeChanged() }
        while true {
            if watchSignals, let signal = SignalWatch.received, state.withScheduler({ !$0.stopping || $0.inFlight > 0 }) {
                state.withScheduler { $0.abort(signal: signal) }
            }
            dispatch()
            if let done = state.withScheduler({ $0.outcome() }) {
                if case .stalled = done, hookActive, hookError == nil {
                    // Only the hook can release what is left: wait for it.
                } else {
                    outcome = done
                    break
                }
            }
            let now = clock.now
            let wait = hookActive ? min(nextHook - now, .milliseconds(250)) : .milliseconds(250)
            for event in transport.nextEvents(timeout: max(wait, .zero)) { apply(event) }
            if hookActive, let hook, clock.now >= nextHook, hookError == nil {
                do {
                    try hook(checker)
                    hookActive = checker.hasHook
                } catch {
                    hookError = "stepsCheck failed: \(error)"
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
                progress(snapshot(elapsed: now2 - started))
                lastProgress = now2
            }
            if journalFailure != nil, state.withScheduler({ s in defer { s.stopLaunching() }; return !s.stopping }) {
                transport.takeBackUnstarted()
            }
        }
        if case .aborted = outcome {
            // Commit first: after a signal the launcher may end every rank soon (mpirun: one second).
            handOffChanged()
            if let failure = journal?.sync() { journalFailure = failure }
            transport.abort()
        } else {
            transport.shutdown()
        }
        handOffChanged()
        if let journal, !notYetWritten.isEmpty {
            journal.record(state.withScheduler { s in
                notYetWritten.map { s.graph.record($0) }.filter { $0.status == .new || $0.status == .waiting }
            })
        }
        if let failure = journal?.sync() { journalFailure = failure }
        let elapsed = clock.now - started
        if let progress { progress(snapshot(elapsed: elapsed, final: true)) }
        if let journalFailure { hookError = (hookError.map { $0 + "; " } ?? "") + "run database: \(journalFailure)" }
        let records = state.withScheduler { $0.graph.records }
        let config = state.withScheduler { $0.config }
        return RunReport(outcome: outcome, records: records, config: config,
                         wallSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                         started: startedAt,
                         hookError: hookError)
    }

    /// Hands the steps changed since the last hand-off to the journal.
    private func handOffChanged() {
        guard let journal else { return }
        let records = state.withScheduler { s in s.takeChanged().map { s.graph.record($0) } }
        journal.record(records)
    }

    private func dispatch() {
        let assignments = state.withScheduler { s in
            s.nextAssignments().map { a -> (Int, StepAssignment) in
                let spec = s.graph.record(a.step).spec
                return (a.rank, StepAssignment(id: a.step, function: spec.function, args: spec.args,
                                               threads: spec.threads, gpus: a.gpus, attempt: a.attempt))
            }
        }
        guard !assignments.isEmpty else { return }
        var byRank = [[StepAssignment]](repeating: [], count: transport.rankCount)
        for (rank, step) in assignments { byRank[rank].append(step) }
        for (rank, steps) in byRank.enumerated() where !steps.isEmpty { transport.assign(steps, to: rank) }
    }

    private func apply(_ event: RankEvent) {
        switch event {
        case .started(let s):
            state.withScheduler { $0.noteRun(s.id, slot: s.slot, start: s.start, end: nil, logPath: nil) }
        case .ended(let outcome):
            let stopNow = state.withScheduler { s in
                s.noteRun(outcome.id, slot: outcome.slot >= 0 ? outcome.slot : nil, start: outcome.start,
                          end: outcome.end, logPath: outcome.logPath)
                if let start = outcome.start, let end = outcome.end, stepTime.add(end - start) {
                    s.adaptPrefetch(meanStepSeconds: stepTime.mean)
                }
                return s.stepEnded(outcome.id, outcome.report)
            }
            if stopNow { transport.takeBackUnstarted() }
        case .request(let request, let address):
            let result: EditResult = state.withScheduler { s in
                do throws(StepGraphError) {
                    return .success(try s.apply(request.edit, by: .step(request.from)))
                } catch {
                    return .failure(GraphEditError(error.description))
                }
            }
            transport.reply(result, to: address)
        }
    }

    private func snapshot(elapsed: Duration, final: Bool = false) -> ProgressSnapshot {
        state.withScheduler { s in
            ProgressSnapshot(total: s.graph.count, finished: s.graph.count(.finished), running: s.graph.count(.running),
                             failed: s.graph.count(.failed), skipped: s.graph.count(.skipped),
                             waiting: s.graph.count(.waiting), elapsed: elapsed, final: final)
        }
    }
}

/// Counts for a progress line.
public struct ProgressSnapshot: Sendable, Equatable {
    public var total, finished, running, failed, skipped, waiting: Int
    public var elapsed: Duration
    public var final: Bool
}

/// The mean duration of recent steps, refreshed every 64 steps, to size how far ahead steps are sent.
final class StepTimeAverage: Sendable {
    private let state = Mutex<(sum: Double, count: Int, mean: Double)>((0, 0, 0))

    /// Adds a duration; returns true when the mean was refreshed.
    func add(_ seconds: Double) -> Bool {
        state.withLock { s in
            s.sum += seconds
            s.count += 1
            guard s.count == 64 else { return false }
            s.mean = s.sum / 64
            s.sum = 0
            s.count = 0
            return true
        }
    }

    var mean: Double { state.withLock { $0.mean } }
}
