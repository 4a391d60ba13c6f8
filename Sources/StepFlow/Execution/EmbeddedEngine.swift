import Foundation

/// A deterministic engine for tests, after swift-nio's `EmbeddedEventLoop`: rank 0's scheduler and
/// every rank's workers in one object that does nothing until the test calls `advance`. Steps run
/// inline on the caller's thread and time is a manual clock, so a test asserts orders and counts
/// exactly, with no sleep and no race between worker threads.
///
/// Time is logical. A round (`advance()`) does at the manual time `now` what the coordinator's loop
/// does: hands the scheduler the results of the steps whose simulated time is over, calls the
/// `stepsCheck` hook when its interval has passed, stops launching at the launch deadline, takes the
/// scheduler's assignments and starts each step that its rank has room for (a rank runs `T` slot
/// units at once; steps sent ahead wait in its queue, in order, as in `WorkerPool`). A started step's
/// body runs at once, inline, with a real `StepContext` whose edits apply to the scheduler as it makes
/// them; the step then stays running for its simulated duration (`durations`, else its `expected:`,
/// else none), and its result reaches the scheduler in the first round at or after its end. Steps
/// running during the same round ran at once.
///
/// A step body must not wait for another step: nothing else runs while it runs.
///
/// Built for tests; `package` so that it stays out of the library's API.
// @unchecked: one thread drives it, the test's; step bodies run inline on that thread and reach the
// engine only through their editor, while the engine is inside `advance`.
package final class EmbeddedEngine: @unchecked Sendable {
    /// One start of a step, as the engine saw it.
    package struct Run: Sendable, Equatable {
        package var step: StepID
        package var attempt: Int
        package var rank: Int
        package var slot: Int
        /// Manual time at the start and at the end (nil while running; at the signal when aborted).
        package var start: Double
        package var end: Double?
        /// The round that started it and the round that took its result (nil while running).
        package var startRound: Int
        package var endRound: Int?
    }

    /// A step started and not yet reported.
    private struct Running {
        var assignment: StepAssignment
        var rank: Int
        var slot: Int
        var end: Double
        var report: Scheduler.Report
        var logPath: String?
        var run: Int
        var result: [UInt8]?
    }

    package let state: SchedulerState
    package let config: SchedulerConfig
    package let executor: StepExecutor
    package let runDirectory: URL
    private let ownsRunDirectory: Bool
    private let hook: (@Sendable (StepsCheck) throws -> Void)?
    private let hookInterval: Double
    private var launchDeadlineWhy = "the launch deadline"

    /// The manual clock, in seconds (since the epoch, for a launch deadline): only `advance(by:)` and
    /// `advance(to:)` move it.
    package private(set) var now: Double
    private let startTime: Double
    /// Simulated durations by function name; a step not named here runs for its `expected:`, or none.
    package var durations: [String: Duration] = [:]

    /// Rounds done so far.
    package private(set) var round = 0
    /// Every start, in order (a retried step appears once per attempt).
    package private(set) var runs: [Run] = []
    /// The most steps running at once, and the most slot units busy at once on one rank.
    package private(set) var peakRunning = 0
    package private(set) var peakSlotsBusy = 0
    /// How often the `stepsCheck` hook was called, and why it stopped the run if it threw.
    package private(set) var hookCalls = 0
    package private(set) var hookError: String?
    /// How the run ended; nil while it goes on.
    package private(set) var outcome: RunOutcome?

    private var queues: [[StepAssignment]]
    private var busyUnits: [Int]
    private var busySlots: [[Bool]]
    private var running: [Running] = []
    private var hookActive: Bool
    private var nextHook: Double
    private var stoppedForTimeLimit = false

    /// - Parameters:
    ///   - hook: the `stepsCheck` hook, called every `hookInterval` of manual time.
    ///   - runDirectory: where step logs go; nil: a new temporary folder, removed with the engine.
    ///   - startTime: the manual clock's first reading.
    package init(config: SchedulerConfig, executor: StepExecutor, hook: (@Sendable (StepsCheck) throws -> Void)? = nil,
                 hookInterval: Duration = .seconds(1), runDirectory: URL? = nil, startTime: Double = 0) {
        self.config = config
        self.state = SchedulerState(config)
        self.executor = executor
        self.hook = hook
        self.hookInterval = Self.seconds(hookInterval)
        if let runDirectory {
            self.runDirectory = runDirectory
            ownsRunDirectory = false
        } else {
            self.runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-embedded-\(UUID().uuidString)")
            ownsRunDirectory = true
        }
        now = startTime
        self.startTime = startTime
        queues = Array(repeating: [], count: config.ranks)
        busyUnits = Array(repeating: 0, count: config.ranks)
        busySlots = Array(repeating: Array(repeating: false, count: config.threadsPerRank), count: config.ranks)
        hookActive = hook != nil
        nextHook = startTime + self.hookInterval
    }

    /// An engine over plain closures, named as steps name them.
    package convenience init(config: SchedulerConfig, functions: [String: @Sendable (StepContext) throws -> Void],
                             hook: (@Sendable (StepsCheck) throws -> Void)? = nil, hookInterval: Duration = .seconds(1),
                             runDirectory: URL? = nil, startTime: Double = 0) {
        self.init(config: config, executor: StepExecutor(functions: functions), hook: hook, hookInterval: hookInterval,
                  runDirectory: runDirectory, startTime: startTime)
    }

    /// An engine for a protocol: its functions, its `stepsCheck` hook and interval, its execution mode
    /// (over `config.mode`), and the steps its `insertAllSteps` inserts.
    package convenience init<P: StepProtocol>(_ proto: P, config: SchedulerConfig, runDirectory: URL? = nil,
                                              startTime: Double = 0) throws {
        var config = config
        config.mode = proto.stepsExecutionMode
        self.init(config: config, executor: StepExecutor(proto), hook: { try proto.stepsCheck($0) },
                  hookInterval: proto.stepsCheckInterval, runDirectory: runDirectory, startTime: startTime)
        var copy = proto
        try copy.insertAllSteps(steps)
    }

    deinit {
        if ownsRunDirectory { try? FileManager.default.removeItem(at: runDirectory) }
    }

    /// Inserts steps as `insertAllSteps` does (S2's default prerequisite: the step inserted just before).
    package private(set) lazy var steps = StepInserter(.protocolSteps, editor: Editor(engine: self, forStep: false),
                                                       functionNames: executor.functionNames)

    /// The hook's view of the run: its edits take back a step sent ahead before adding it a
    /// prerequisite, as the coordinator's do (S3).
    private lazy var checker: StepsCheck? = hook == nil ? nil : StepsCheck(
        steps: StepInserter(.stepsCheck, editor: Editor(engine: self, forStep: false), functionNames: executor.functionNames),
        status: { [state] id in state.withScheduler { s in s.graph.contains(id) ? s.graph.status(id) : nil } })

    /// After this manual time (seconds) no step starts, and none expected to outlast it (`--stop-before`);
    /// `why` goes into the run's message when it stops with work left.
    package func setLaunchDeadline(_ time: Double, why: String = "the launch deadline") {
        launchDeadlineWhy = why
        state.withScheduler { $0.setLaunchDeadline(time) }
    }

    // MARK: Driving

    /// One round at the current manual time; returns the steps it started, in order.
    @discardableResult
    package func advance() -> [StepID] {
        guard outcome == nil else {
            roundChanged = false
            return []
        }
        round += 1
        let reported = reportDue()
        let hookCalled = callHookIfDue()
        let wasStopped = stoppedForTimeLimit
        let assigned = state.withScheduler { [now] s in
            s.nextAssignments(now: now).map { a -> (Int, StepAssignment) in
                let spec = s.graph.record(a.step).spec
                return (a.rank, StepAssignment(id: a.step, function: spec.function, args: spec.args, threads: spec.threads,
                                               gpus: a.gpus, attempt: a.attempt, startBy: a.startBy, inputs: s.graph.inputs(of: a.step)))
            }
        }
        for (rank, step) in assigned { queues[rank].append(step) }
        // As the coordinator: right after the dispatch.
        if !stoppedForTimeLimit,
           let stop = state.withScheduler({ [now, launchDeadlineWhy, hookActive] in
               $0.stopAtLaunchDeadline(now: now, why: launchDeadlineWhy, hookActive: hookActive) }) {
            stoppedForTimeLimit = true
            takeBackUnstarted()
            if let message = stop.message { hookError = message }
        }
        let started = startQueued()
        if let done = state.withScheduler({ [hookActive, hookError] in $0.endingOutcome(hookWaiting: hookActive && hookError == nil) }) {
            outcome = state.withScheduler { [hookError] in $0.recordedOutcome(done, hookError: hookError) }
        }
        roundChanged = reported || hookCalled || !started.isEmpty || handedBack || wasStopped != stoppedForTimeLimit || outcome != nil
        handedBack = false
        return started
    }

    /// Whether the last round did anything; the coordinator's loop goes round again at once after
    /// one that did, so `advance(to:)` and `runToEnd` do too before moving the clock.
    private var roundChanged = false
    /// A queued step went back unstarted this round (its start-by moment had passed).
    private var handedBack = false

    /// Rounds at the current time until one does nothing.
    private func settle() -> [StepID] {
        var started = advance()
        while roundChanged && outcome == nil { started += advance() }
        return started
    }

    /// Moves the clock by `duration`, doing a round at every moment in between when something happens
    /// (a running step's end, the hook's time) and one at the end; returns the steps started, in order.
    @discardableResult
    package func advance(by duration: Duration) -> [StepID] {
        advance(to: now + Self.seconds(duration))
    }

    /// Moves the clock to `time` (never back), as `advance(by:)`: rounds at the current time first, then
    /// at each moment something is due, then at `time`.
    @discardableResult
    package func advance(to time: Double) -> [StepID] {
        var started = settle()
        while outcome == nil, let next = nextEventTime(), next <= time {
            now = max(now, next)
            started += settle()
        }
        now = max(now, time)
        return started + settle()
    }

    /// Not ended after this many rounds: a run that would never end.
    package struct NotEnded: Error, CustomStringConvertible {
        package let rounds: Int
        package let running: [StepID]
        package var description: String { "the run had not ended after \(rounds) rounds (running: \(running))" }
    }

    /// Runs rounds, moving the clock to each next event, until the run ends; returns its report.
    /// - Throws: `NotEnded` after `maxRounds` rounds (a hook that never releases what waits).
    @discardableResult
    package func runToEnd(maxRounds: Int = 100_000) throws -> RunReport {
        let first = round
        while outcome == nil {
            if round - first >= maxRounds { throw NotEnded(rounds: maxRounds, running: runningSteps) }
            advance()
            if outcome == nil, !roundChanged, let next = nextEventTime() { now = max(now, next) }
        }
        return report
    }

    /// Stops the run as a signal would (S10): running steps are aborted at once (their results, when
    /// their time comes, are ignored), steps sent ahead are new again.
    package func signal(_ signal: Int32) {
        state.withScheduler { $0.abort(signal: signal) }
        for r in running {
            runs[r.run].end = now
            runs[r.run].endRound = round
        }
        running.removeAll()
        queues = queues.map { _ in [] }
        busyUnits = busyUnits.map { _ in 0 }
        busySlots = busySlots.map { $0.map { _ in false } }
        outcome = state.withScheduler { $0.endingOutcome(hookWaiting: false) }
    }

    // MARK: What a test asserts

    /// The steps in the order they started (a retried step once per attempt).
    package var startOrder: [StepID] { runs.map(\.step) }

    /// The steps each round started, rounds that started none left out.
    package var startedTogether: [[StepID]] {
        Dictionary(grouping: runs, by: \.startRound).sorted { $0.key < $1.key }.map { $0.value.map(\.step) }
    }

    /// Steps started and not yet reported, in start order.
    package var runningSteps: [StepID] { running.sorted { $0.run < $1.run }.map(\.assignment.id) }

    /// Whether any two of `steps` ran during a common round.
    package func ranAtOnce(_ steps: [StepID]) -> Bool {
        let spans = runs.filter { steps.contains($0.step) }
        for (i, a) in spans.enumerated() {
            for b in spans[(i + 1)...] where a.startRound < (b.endRound ?? .max) && b.startRound < (a.endRound ?? .max) {
                return true
            }
        }
        return false
    }

    /// The first start of `step`.
    package func run(of step: StepID) -> Run? { runs.first { $0.step == step } }

    package func status(_ id: StepID) -> StepStatus? {
        state.withScheduler { s in s.graph.contains(id) ? s.graph.status(id) : nil }
    }

    package var records: [StepRecord] { state.withScheduler { $0.graph.liveRecords } }

    /// The run as the coordinator reports it; its outcome is `.stalled` with nothing named while the
    /// run goes on.
    package var report: RunReport {
        RunReport(outcome: outcome ?? .stalled(waiting: [], blocked: []), records: records, config: config,
                  wallSeconds: now - startTime, started: startTime, hookError: hookError)
    }

    // MARK: The round's parts

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// The earliest moment when something is due: a running step's end, the hook, the launch deadline.
    private func nextEventTime() -> Double? {
        var times = running.map(\.end)
        if hookActive && hookError == nil { times.append(nextHook) }
        if !stoppedForTimeLimit, let deadline = state.withScheduler({ $0.launchDeadline }) { times.append(deadline) }
        return times.min()
    }

    /// Returns whether any result was due.
    private func reportDue() -> Bool {
        let due = running.filter { $0.end <= now }.sorted { ($0.end, $0.run) < ($1.end, $1.run) }
        running.removeAll { $0.end <= now }
        for r in due {
            busyUnits[r.rank] -= r.assignment.threads
            busySlots[r.rank][r.slot] = false
            runs[r.run].end = now
            runs[r.run].endRound = round
            let stopNow = state.withScheduler { [now] s -> Bool in
                guard s.graph.check(r.assignment.id, from: r.rank) == .running else { return false }
                s.noteRun(r.assignment.id, slot: r.slot, start: runs[r.run].start, end: now, logPath: r.logPath)
                if r.report == .finished { s.noteResult(r.assignment.id, r.result) }
                return s.stepEnded(r.assignment.id, r.report)
            }
            if stopNow { takeBackUnstarted() }
        }
        return !due.isEmpty
    }

    /// Returns whether the hook was called.
    private func callHookIfDue() -> Bool {
        guard hookActive, let hook, let checker, now >= nextHook, hookError == nil else { return false }
        hookCalls += 1
        do {
            try hook(checker)
            hookActive = checker.hasHook
        } catch {
            hookError = "stepsCheck failed: \(ErrorText.sentence(error))"
            state.withScheduler { $0.stopLaunching() }
            takeBackUnstarted()
        }
        nextHook = now + hookInterval
        return true
    }

    /// Hands back every step sent ahead and not started, as a rank does when told to.
    private func takeBackUnstarted() {
        let all = queues.flatMap { $0 }
        queues = queues.map { _ in [] }
        state.withScheduler { s in for a in all { s.stepEnded(a.id, .notStarted) } }
    }

    /// Starts, in the order they were assigned, the queued steps whose rank has room; a step that does
    /// not fit holds back the steps queued behind it on its rank.
    private func startQueued() -> [StepID] {
        var started: [StepID] = []
        var progressed = true
        while progressed {
            progressed = false
            // The earliest-assigned head that fits: steps start in id order across ranks.
            let heads = queues.indices.compactMap { rank -> (Int, StepAssignment)? in
                guard let head = queues[rank].first, busyUnits[rank] + head.threads <= config.threadsPerRank else { return nil }
                return (rank, head)
            }
            guard let (rank, head) = heads.min(by: { $0.1.id < $1.1.id }) else { break }
            queues[rank].removeFirst()
            // As a rank does: a step whose start-by moment passed in the queue goes back unstarted.
            if let startBy = head.startBy, now > startBy {
                state.withScheduler { _ = $0.stepEnded(head.id, .notStarted) }
                handedBack = true
                progressed = true
                continue
            }
            start(head, on: rank)
            started.append(head.id)
            progressed = true
        }
        peakRunning = max(peakRunning, running.count)
        peakSlotsBusy = max(peakSlotsBusy, busyUnits.max() ?? 0)
        return started
    }

    private func start(_ step: StepAssignment, on rank: Int) {
        let slot = busySlots[rank].firstIndex(of: false) ?? 0
        busySlots[rank][slot] = true
        busyUnits[rank] += step.threads
        state.withScheduler { [now] in $0.noteRun(step.id, slot: slot, start: now, end: nil, logPath: nil) }
        let index = runs.count
        runs.append(Run(step: step.id, attempt: step.attempt, rank: rank, slot: slot, start: now, end: nil, startRound: round, endRound: nil))
        let context = StepContext(id: step.id, function: step.function, args: step.args, rank: rank, slot: slot, gpus: step.gpus,
                                  attempt: step.attempt, runDirectory: runDirectory, editor: Editor(engine: self, forStep: true),
                                  functionNames: executor.functionNames, threads: step.threads, inputs: step.inputs,
                                  resultLimit: executor.resultLimit, fingerprintContent: executor.fingerprintContent)
        let report: Scheduler.Report
        do {
            try executor.run(context)
            try context.fingerprintOutputs()
            report = .finished
        } catch {
            let text = ErrorText.sentence(error)
            context.appendToLog("step \(step.id) '\(step.function)' attempt \(step.attempt) failed: \(text)")
            report = .failed(error: text)
        }
        let spec = state.withScheduler { $0.graph.record(step.id).spec }
        let duration = durations[step.function].map(Self.seconds) ?? spec.expectedSeconds ?? 0
        running.append(Running(assignment: step, rank: rank, slot: slot, end: now + duration, report: report,
                               logPath: context.logPath, run: index, result: report == .finished ? context.resultEncoded : nil))
    }

    /// Applies a graph edit from a running step or the hook. An `addPrerequisites` to a step sent ahead
    /// and not started takes it back first (S3); a step's refused edit reaches it as rank 0's message.
    fileprivate func apply(_ edit: GraphEdit, by inserter: Inserter, forStep: Bool) throws -> StepID? {
        if case .addPrerequisites(let target, let prerequisites, _) = edit,
           let rank = queues.firstIndex(where: { $0.contains { $0.id == target } }),
           state.withScheduler({ s in prerequisites.contains { !s.graph.hasPrerequisite(target, $0) } }) {
            queues[rank].removeAll { $0.id == target }
            state.withScheduler { _ = $0.stepEnded(target, .notStarted) }
        }
        guard forStep else { return try state.editor.apply(edit, by: inserter) }
        do {
            return try state.editor.apply(edit, by: inserter)
        } catch let error as StepGraphError {
            throw GraphEditError(error.description)
        }
    }

    private struct Editor: GraphEditor {
        unowned let engine: EmbeddedEngine
        let forStep: Bool

        func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
            try engine.apply(edit, by: inserter, forStep: forStep)
        }
    }
}
