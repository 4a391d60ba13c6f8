import Collections
import Dispatch
import Foundation
import Synchronization

/// One rank's T workers: T slots on Dispatch that run the steps the rank was sent, at most T slot
/// units at a time, in the order they came. Workers never talk to other ranks: results go to `report`,
/// graph edits to `channel`, and the rank's transport carries them (`.started` as a step begins,
/// `.ended` when it is done; a step run on the owner's loop reports `.started` only if it edits the
/// graph, see `HeldStart`).
///
/// Each slot has a serial queue of its own. A slot with nothing to run holds no thread; given a step, it
/// runs it on its queue and then goes on with the next queued step that fits, so a busy rank pays no
/// wake-up between steps. Serial queues are served by libdispatch's overcommit pool, which adds a thread
/// whenever the ones it has are all taken, however many cores there are: a step that blocks (a reply
/// from rank 0, `Thread.sleep`, file I/O, a command) holds only its own slot.
package final class WorkerPool: Sendable {
    package let rank: Int
    package let threads: Int
    private let executor: StepExecutor
    private let runDirectory: URL
    private let launch: Int
    /// Where running steps' graph edits go; one for every step's context.
    private let editor: any GraphEditor
    private let report: @Sendable (FromRank) -> Void
    private let state: Mutex<PoolState>
    /// Set when the run is stopped by a signal: running steps see it and end what they wait on.
    private let cancellation = Cancellation()
    /// One serial queue per slot, labelled `stepflow-r<rank>-w<slot>`; it only ever holds that slot's
    /// one run of steps (`serve`), so slots never wait behind each other.
    private let slotQueues: [DispatchQueue]
    /// Entered as a slot starts a run of steps, left when the run ends: `shutdown` waits on it.
    private let serving = DispatchGroup()
    /// The signal mask of the thread that made the pool, which steps run under: as the pool's own
    /// threads had it, and not libdispatch's, which blocks SIGINT and SIGTERM and would hand that on to
    /// any process a step forks without resetting the mask (`system`, `fork`).
    private let stepSignalMask: SignalMask
    /// Whether the owner's loop runs short steps itself (`runInline`), see `init`.
    private let inlineOwner: Bool
    /// The editor of steps run inline: a graph edit serves the owner's loop while it waits.
    private let inlineEditor: any GraphEditor
    /// The start of the step running on the owner's loop, until it ends or edits the graph.
    private let heldStart: HeldStart

    private struct PoolState: ~Copyable {
        var pending = Deque<StepAssignment>()
        var busyUnits = 0
        /// Slots with no step, the longest idle first: it is the next one given a step. A slot's queue
        /// has no thread of its own, so reusing the last one gains nothing, and taking turns spreads
        /// steps that arrive one at a time over the slots, as the run's records show them.
        var idleSlots: Deque<Int>
        /// For each function, how many of its last runs in a row took less than `inlineLimit`.
        var shortRuns = ShortRunCounts()
        /// The body of the function the owner's loop ran last (`runOneInline`), looked up once.
        var inlineBody: (function: String, body: StepExecutor.Body)?
        /// The step each slot runs (0: none), so a step sent behind one can tell it still runs here.
        var running: [StepID]
        /// Steps sent behind prerequisites that have not finished here yet.
        var behind: [StepID: BehindStep] = [:]
        /// For each prerequisite, the steps sent behind it.
        var followers: [StepID: [StepID]] = [:]
        /// The last steps that finished here, with their results (`RecentFinishes.capacity`): a step
        /// sent behind one that finished while the assignment was on its way starts at once, where it
        /// would have had to go back to rank 0 (when two prerequisites end together, rank 0 often sends
        /// a step behind the one whose end it has not read yet). Kept once a step was sent behind
        /// another here (`behindSeen`); from then on each finish is reported under the lock as it is
        /// kept, so no step can start on a kept finish before that finish's end is reported.
        var recent = RecentFinishes()
        var behindSeen = false
    }

    /// The ids and results of the last `capacity` steps that finished in a pool, oldest overwritten.
    private struct RecentFinishes {
        static let capacity = 64
        private var ids = [StepID](repeating: 0, count: capacity)
        private var results = [[UInt8]](repeating: [], count: capacity)
        private var next = 0
        /// The largest id ever kept: a step above it is not here, without a search. Steps are mostly
        /// sent in the order of their ids, so a step just sent usually is; the search of all 64 cost
        /// ~330 instructions for every step a rank was sent.
        private var largest: StepID = 0

        mutating func add(_ id: StepID, result: [UInt8]) {
            ids[next] = id
            results[next] = result
            next = (next + 1) % Self.capacity
            largest = max(largest, id)
        }

        /// The result of step `id` (empty: it set none) if it is among the last that finished here.
        func result(of id: StepID) -> [UInt8]? {
            guard id > 0, id <= largest, let i = ids.firstIndex(of: id) else { return nil }
            return results[i]
        }

        /// Forgets step `id`, sent here to run again (a stale run, S9): its earlier result is not its result.
        mutating func forget(_ id: StepID) {
            guard id <= largest, let i = ids.firstIndex(of: id) else { return }
            ids[i] = 0
            results[i] = []
        }
    }

    /// A step sent behind prerequisites running here, with how many of them it still waits for.
    private struct BehindStep {
        var step: StepAssignment
        var waitingFor: Int
        /// Whether a prerequisite that finished here set a result.
        var gotResult = false
    }

    /// A step taken from the queue, with the idle slot that will run it.
    private struct SlotStart {
        var slot: Int
        var step: StepAssignment
    }

    /// Sets up `threads` slots for `rank`; they take threads only while they have steps.
    /// - Parameters:
    ///   - inlineOwner: the owner's loop calls `runInline` whenever it looks for work; a one-slot pool
    ///     then leaves short steps to it instead of starting a thread for each.
    ///   - serveOwnerLoop: one pass of the owner's loop, for a step run inline that waits for rank 0's
    ///     answer to a graph edit (nothing else would take it in); returns false once the run stopped.
    package init(rank: Int, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int = 1,
                inlineOwner: Bool = false, serveOwnerLoop: @escaping @Sendable () -> Bool = { false },
                channel: any StepRequestChannel, report: @escaping @Sendable (FromRank) -> Void) {
        self.rank = rank
        self.threads = threads
        self.executor = executor
        self.runDirectory = runDirectory
        self.launch = launch
        self.editor = ChannelEditor(channel: channel)
        let heldStart = HeldStart(report: report)
        self.heldStart = heldStart
        self.inlineEditor = ChannelEditor(channel: channel, serving: serveOwnerLoop, beforeRequest: heldStart.report)
        self.report = report
        self.state = Mutex(PoolState(idleSlots: Deque(0..<threads), running: Array(repeating: 0, count: threads)))
        self.slotQueues = (0..<threads).map { DispatchQueue(label: "stepflow-r\(rank)-w\($0)") }
        self.stepSignalMask = SignalMask.current()
        self.inlineOwner = inlineOwner && threads == 1 && executor.inlineLimit > 0
    }

    /// A step shorter than this (`STEPFLOW_INLINE_US`, 0: never) counts as short: once a function's
    /// last `inlineAfter` runs on this rank were short, a one-slot rank runs its next steps on its
    /// message loop's own thread. Handing a step to a slot's thread and its end back cost two thread
    /// wake-ups (~20–30 µs each on these VMs, and the core they take from the step beside them); a
    /// step run inline costs none, and the loop reads MPI before and after it. While it runs the loop
    /// reads nothing, so the limit bounds how late a message is seen (rank 0: another rank's report).
    package static let inlineLimit: Double = Double(
        ProcessInfo.processInfo.environment["STEPFLOW_INLINE_US"].flatMap { Int($0) }.map { max($0, 0) } ?? 1000) / 1e6
    /// How many short runs in a row make a function's steps run inline; one long run starts the count over.
    package static let inlineAfter = 8

    /// How long the owner's loop goes on running queued short steps before it looks at its messages
    /// again. One step per look sent a frame per step: 200,000 empty steps on 4 ranks ran at 0.27M
    /// steps/s against 1.2M with a slot's thread; a step that is alone in the queue (a Task Bench
    /// timestep at width 2) still ends its batch at once.
    package static let inlineBatch: Duration = .microseconds(100)

    /// Runs queued steps on the calling thread (the owner's loop), first to last, while the pool has
    /// nothing else running, the next step's function has run short (`inlineLimit`) its last
    /// `inlineAfter` times, and `budget` has not passed since the first began. Returns whether it ran any.
    /// A step that let a step sent behind it go ends the batch when that step says so
    /// (`sendEndsFirst`): its end goes out first, since rank 0 waits for it to hand out the steps that
    /// depend on it to a rank with little to do.
    @discardableResult
    package func runInline(upTo budget: Duration = .zero) -> Bool {
        let first = runOneInline()
        guard first != .none else { return false }
        if budget > .zero && first == .ran {
            let end = ContinuousClock.now + budget
            while ContinuousClock.now < end, runOneInline() == .ran {}
        }
        return true
    }

    private enum InlineRun { case none, ran, letFollowersGo }

    /// Runs the first queued step on the calling thread if it may (see `runInline`).
    private func runOneInline() -> InlineRun {
        guard inlineOwner else { return .none }
        var slot = -1
        var body: StepExecutor.Body?
        // The step is read where it lies and moved out once, and the optional is only ever borrowed:
        // `let head = s.pending.first` copied it, and an optional unwrapped into a binding was copied
        // out and destroyed through the runtime's generic witness (~600 instructions a step, callgrind).
        let taken: StepAssignment? = state.withLock { s in
            guard s.busyUnits == 0, !s.pending.isEmpty, Self.runsInline(s.pending[s.pending.startIndex].function, s),
                  let idle = s.idleSlots.popFirst() else { return nil }
            let step = s.pending.removeFirst()
            s.busyUnits += step.threads
            s.running[idle] = step.id
            slot = idle
            if let last = s.inlineBody, last.function == step.function {
                body = last.body
            } else {
                body = executor.body(for: step.function)
                s.inlineBody = (step.function, body!)
            }
            return step
        }
        guard case .some = taken, let body else { return .none }
        // What the pool needs of the step once it ran, read first.
        let id = taken!.id, threads = taken!.threads, function = taken!.function
        let ended = run(taken!, slot: slot, body: body, editor: inlineEditor, holdStart: true)
        let (starts, reported) = state.withLock { s in
            s.busyUnits -= threads
            s.running[slot] = 0
            s.idleSlots.append(slot)
            Self.count(ended, of: function, limit: executor.inlineLimit, &s)
            let reported = settleFollowers(of: id, ended, &s)
            return (claimStartable(&s), reported)
        }
        if !reported.reported { report(ended) }
        starts.forEach(startServing)
        return reported.endBatch ? .letFollowersGo : .ran
    }

    /// Under the lock: whether the owner's loop runs a step of `function` itself (see `inlineLimit`).
    /// It takes the name, not the step: a queued step passed whole was copied out of the queue.
    private static func runsInline(_ function: String, _ s: borrowing PoolState) -> Bool {
        s.shortRuns.count(of: function) >= inlineAfter
    }

    /// Under the lock: counts a finished run of `function` as short or not.
    private static func count(_ ended: FromRank, of function: String, limit: Double, _ s: inout PoolState) {
        guard case .ended(let outcome) = ended, let start = outcome.start, let end = outcome.end else { return }
        s.shortRuns.record(function, short: end - start < limit)
    }

    /// Whether every slot runs a step: nothing the rank receives now could start before one ends,
    /// and an ending wakes the rank's loop by itself (its report).
    package var isSaturated: Bool { state.withLock { $0.busyUnits >= threads } }

    /// Queues steps; they start as slots free up, in order. A step sent behind prerequisites
    /// (`StepAssignment.behind`) waits until they finished here; if one of them is no longer here (it
    /// ended before the step came), it goes back at once as `.notStarted`, and rank 0 sends it again
    /// once it is ready.
    package func submit(_ steps: [StepAssignment]) {
        guard !steps.isEmpty else { return }
        var bounced: [StepID] = []
        let starts = state.withLock { s in
            if s.behindSeen || steps.contains(where: { !$0.behind.isEmpty }) {
                s.behindSeen = true
                for step in steps {
                    s.recent.forget(step.id)
                    if step.behind.isEmpty {
                        s.pending.append(step)
                        continue
                    }
                    var b = BehindStep(step: step, waitingFor: 0)
                    var waitedFor: [StepID] = []
                    var here = true
                    for p in step.behind {
                        if let result = s.recent.result(of: p) {
                            Self.fill(&b, from: p, result)
                        } else if Self.isHere(p, s) {
                            waitedFor.append(p)
                        } else {
                            here = false
                        }
                    }
                    if !here {
                        bounced.append(step.id)
                    } else if waitedFor.isEmpty {
                        Self.makeReady(&b)
                        s.pending.append(b.step)
                    } else {
                        b.waitingFor = waitedFor.count
                        s.behind[step.id] = b
                        for p in waitedFor { s.followers[p, default: []].append(step.id) }
                    }
                }
            } else {
                s.pending.append(contentsOf: steps)
            }
            return claimStartable(&s)
        }
        for id in bounced { report(notStarted(id)) }
        starts.forEach(startServing)
    }

    /// Puts a prerequisite's result among the inputs of a step sent behind it.
    private static func fill(_ b: inout BehindStep, from p: StepID, _ result: [UInt8]) {
        guard !result.isEmpty, let i = b.step.inputs?.firstIndex(where: { $0.id == p }) else { return }
        b.step.inputs![i].result = result
        b.gotResult = true
    }

    /// Makes a step sent behind prerequisites that all finished here what rank 0 would have sent once
    /// it was ready: with no inputs while no step of the run set a result.
    private static func makeReady(_ b: inout BehindStep) {
        if b.step.inputsOnlyForBehind && !b.gotResult { b.step.inputs = nil }
    }

    /// Under the lock: whether step `id` is queued, running or sent behind others here.
    private static func isHere(_ id: StepID, _ s: borrowing PoolState) -> Bool {
        if s.behind[id] != nil || s.running.contains(id) { return true }
        // From the back: a step is mostly sent behind one sent with it.
        return s.pending.reversed().contains { $0.id == id }
    }

    private func notStarted(_ id: StepID) -> FromRank {
        .ended(StepOutcome(id: id, rank: rank, slot: -1, report: .notStarted, start: nil, end: nil, logPath: nil))
    }

    /// Under the lock, as step `id` ends with `ended`: the steps sent behind it that waited only for it
    /// are queued, with its result among their inputs; if it did not finish, they go back to rank 0
    /// unstarted, with what was sent behind them. When any step was sent behind it, its end is reported
    /// here, first, so rank 0 learns of it before the start of a step it let go; returns whether it was.
    /// Also returns whether the owner's loop should send that end before it runs more steps (a step
    /// sent behind it may not be all that waits for it).
    private func settleFollowers(of id: StepID, _ ended: FromRank, _ s: inout PoolState) -> (reported: Bool, endBatch: Bool) {
        guard case .ended(let outcome) = ended else { return (false, false) }
        let finished = outcome.report == .finished
        var result: [UInt8] = []
        var reported = false
        if finished && s.behindSeen {
            // Only a blob with files needs splitting; most results are kept as they came.
            result = outcome.result.map { StepOutcomeBlob.split($0).result } ?? []
            s.recent.add(id, result: result)
            report(ended)
            reported = true
        }
        guard !s.followers.isEmpty, let followers = s.followers.removeValue(forKey: id) else { return (reported, false) }
        if !reported { report(ended) }
        guard finished else {
            dropFollowers(followers, &s)
            return (true, true)
        }
        var endBatch = false
        for d in followers {
            // Taken out, not read: a copy while the table still held it copied its inputs on write.
            guard var b = s.behind.removeValue(forKey: d) else { continue }
            if b.step.sendEndsFirst { endBatch = true }
            Self.fill(&b, from: id, result)
            b.waitingFor -= 1
            if b.waitingFor > 0 {
                s.behind[d] = b
                continue
            }
            Self.makeReady(&b)
            s.pending.append(b.step)
        }
        return (true, endBatch)
    }

    /// Under the lock: hands back steps sent behind a step that will not finish here, and the steps
    /// sent behind those.
    private func dropFollowers(_ followers: [StepID], _ s: inout PoolState) {
        var work = followers
        while let d = work.popLast() {
            guard let b = s.behind.removeValue(forKey: d) else { continue }
            // Out of the lists of its other prerequisites too: sent again, it must not be counted twice.
            for p in b.step.behind {
                guard var list = s.followers[p] else { continue }
                list.removeAll { $0 == d }
                s.followers[p] = list.isEmpty ? nil : list
            }
            report(notStarted(d))
            if let more = s.followers.removeValue(forKey: d) { work.append(contentsOf: more) }
        }
    }

    /// Hands back every queued step that has not started (those sent behind others too), reporting
    /// each as `.notStarted`.
    package func takeBackUnstarted() {
        let taken = state.withLock { s in
            let all = Array(s.pending.lazy.map(\.id)) + s.behind.keys.sorted()
            s.pending.removeAll()
            s.behind.removeAll()
            s.followers.removeAll()
            return all
        }
        for id in taken { report(notStarted(id)) }
    }

    /// Hands back the queued steps among `ids` that have not started, and those sent behind them,
    /// reporting each as `.notStarted`; a step already started is left alone (its `.started` report
    /// is on its way, or, for one run on the owner's loop, its end).
    package func takeBack(_ ids: [StepID]) {
        let wanted = Set(ids)
        let starts = state.withLock { s in
            let out = s.pending.filter { wanted.contains($0.id) }.map(\.id)
            let outBehind = ids.filter { s.behind[$0] != nil }
            guard !out.isEmpty || !outBehind.isEmpty else { return [SlotStart]() }
            s.pending.removeAll { wanted.contains($0.id) }
            for id in out { report(notStarted(id)) }
            dropFollowers(outBehind, &s)
            for id in out { if let more = s.followers.removeValue(forKey: id) { dropFollowers(more, &s) } }
            // The head may have been a step waiting for room; the one behind it may fit now.
            return claimStartable(&s)
        }
        starts.forEach(startServing)
    }

    /// Drops queued steps and lets the slots end after their current step, without waiting for them
    /// (a signal stopped the run; what still runs is recorded `aborted`).
    package func stopLaunching() {
        cancellation.cancel()
        state.withLock { s in
            s.pending.removeAll()
            s.behind.removeAll()
            s.followers.removeAll()
        }
    }

    /// Lets queued steps finish, then waits until no slot runs one.
    package func shutdown() {
        while runInline() {}
        // Every slot idle means nothing is queued either: a step that fits is started the moment it
        // is queued or a step ends, and with every slot idle every step fits (1 ≤ threads ≤ T).
        serving.wait()
    }

    /// Under the lock: takes the queued steps that now fit, in order, each for an idle slot, unless the
    /// owner's loop runs them (`unitsToStartHead`).
    private func claimStartable(_ s: inout PoolState) -> [SlotStart] {
        var others: [SlotStart] = []
        // Steps are moved out of the queue, never copied: this runs once per step, under the lock.
        while let needed = unitsToStartHead(s), let slot = s.idleSlots.popFirst() {
            s.running[slot] = s.pending[s.pending.startIndex].id
            others.append(SlotStart(slot: slot, step: s.pending.removeFirst()))
            s.busyUnits += needed
        }
        return others
    }

    /// Under the lock: the slot units the queue's first step takes, if it fits now and the owner's loop
    /// does not run it (`runInline`); nil otherwise.
    private func unitsToStartHead(_ s: borrowing PoolState) -> Int? {
        guard let needed = s.pending.first?.threads, s.busyUnits + needed <= threads,
              !(inlineOwner && Self.runsInline(s.pending[s.pending.startIndex].function, s)) else { return nil }
        return needed
    }

    /// Under the lock: as `claimStartable(_:)`, but the slot that just ended a step (`freedSlot`) gets
    /// the first of them as `own`, to run without a hop, unless the owner's loop runs it: a slot that
    /// kept a queue of short steps kept it for good, its thread running beside the loop's on a rank
    /// meant to use one core (rank 0's loop then passed once a step: 200,000 empty steps on 4 ranks
    /// ran at 0.80–0.91M steps/s against 1.05–1.19M).
    private func claimStartable(_ s: inout PoolState, freedSlot: Int) -> (own: StepAssignment?, others: [SlotStart]) {
        guard let needed = unitsToStartHead(s) else {
            // The next step does not fit, or the loop runs it: the steps after it wait too.
            s.idleSlots.append(freedSlot)
            return (nil, [])
        }
        s.running[freedSlot] = s.pending[s.pending.startIndex].id
        let own = s.pending.removeFirst()
        s.busyUnits += needed
        return (own, claimStartable(&s))
    }

    /// Starts a run of steps on an idle slot: on its queue while libdispatch has a thread for it,
    /// else on a thread of its own (see `DispatchThreads`).
    private func startServing(_ first: SlotStart) {
        serving.enter()
        if DispatchThreads.claim() {
            slotQueues[first.slot].async { [self] in
                serve(slot: first.slot, from: first.step)
                DispatchThreads.release()
                serving.leave()
            }
        } else {
            let thread = Thread { [self] in
                serve(slot: first.slot, from: first.step)
                serving.leave()
            }
            thread.name = "stepflow-r\(rank)-w\(first.slot)"
            thread.start()
        }
    }

    /// Runs `first`, then every next queued step that fits, until none does; the slot is then idle.
    private func serve(slot: Int, from first: StepAssignment) {
        let threadMask = stepSignalMask.apply()
        defer { threadMask.apply() }
        var step = first
        // The last function this slot ran, looked up once: runs of steps are mostly of one function.
        var last: (function: String, body: StepExecutor.Body)?
        while true {
            let body: StepExecutor.Body
            if let last, last.function == step.function {
                body = last.body
            } else {
                body = executor.body(for: step.function)
                last = (step.function, body)
            }
            let ended = run(step, slot: slot, body: body, editor: editor)
            let (next, others, reported) = state.withLock { s in
                s.busyUnits -= step.threads
                s.running[slot] = 0
                if inlineOwner { Self.count(ended, of: step.function, limit: executor.inlineLimit, &s) }
                let reported = settleFollowers(of: step.id, ended, &s)
                let (own, others) = claimStartable(&s, freedSlot: slot)
                return (own, others, reported)
            }
            // Reported once the slot is counted free (or has its next step): the rank's loop, woken by
            // the report, then sees whether it may sleep until a step ends (`isSaturated`).
            if !reported.reported { report(ended) }
            // Only a step that held several units can make room for more than the one this slot takes.
            others.forEach(startServing)
            guard let next else { return }
            step = next
        }
    }

    /// Runs a step, its graph edits going to `editor`; returns its end report, for the caller to send
    /// once the slot is free. `editor` is not optional: an optional existential was copied and
    /// destroyed through the runtime's generic witnesses, several hundred instructions a step.
    /// - Parameter holdStart: the owner's loop runs the step, so nothing could read its start before
    ///   its end, which carries it: the start is reported only if the step edits the graph, before its
    ///   request (`HeldStart`). Reported and then paired away with the end, it cost ~700 instructions
    ///   a step on rank 0 (callgrind).
    private func run(_ step: StepAssignment, slot: Int, body: StepExecutor.Body, editor: any GraphEditor,
                     holdStart: Bool = false) -> FromRank {
        // Sent ahead before the launch deadline, but its turn came too late to end before it.
        if let startBy = step.startBy, Date().timeIntervalSince1970 > startBy {
            return notStarted(step.id)
        }
        let context = StepContext(id: step.id, function: step.function, args: step.args, rank: rank, slot: slot,
                                  gpus: step.gpus, attempt: step.attempt, runDirectory: runDirectory,
                                  editor: editor, functionNames: executor.functionNames, launch: launch,
                                  threads: step.threads, cancellation: cancellation, inputs: step.inputs,
                                  resultLimit: executor.resultLimit, fingerprintContent: executor.fingerprintContent)
        let start = Date().timeIntervalSince1970
        let started = StepStart(id: step.id, rank: rank, slot: slot, start: start)
        if holdStart { heldStart.hold(started) } else { report(.started(started)) }
        defer { if holdStart { heldStart.drop() } }
        let outcome: Scheduler.Report
        do {
            try body(context)
            try context.fingerprintOutputs()
            outcome = .finished
        } catch {
            let text = ErrorText.sentence(error)
            context.appendToLog("step \(step.id) '\(step.function)' attempt \(step.attempt) failed: \(text)")
            outcome = .failed(error: text)
        }
        let end = Date().timeIntervalSince1970
        let result = outcome == .finished ? context.resultEncoded : nil
        return .ended(StepOutcome(id: step.id, rank: rank, slot: slot, report: outcome, start: start, end: end, logPath: context.logPath,
                                  result: result))
    }
}

/// The start of a step run on its rank's loop, not reported yet: nothing reads the loop's reports
/// before the step ends, and its end carries its start. If the step edits the graph, its start is
/// reported first, so rank 0 knows it started before it takes the request (S3: a step that started
/// takes no new prerequisite).
private final class HeldStart: Sendable {
    private let start = Mutex<StepStart?>(nil)
    private let send: @Sendable (FromRank) -> Void

    init(report: @escaping @Sendable (FromRank) -> Void) { send = report }

    func hold(_ started: StepStart) { start.withLock { $0 = started } }

    /// Forgets the start: the step ended, and its end carries it.
    func drop() { start.withLock { $0 = nil } }

    /// Reports the start held, once. Sent under the lock, so that when two threads of the step edit at
    /// once, neither's request goes before the start.
    @Sendable func report() {
        start.withLock { held in
            guard let started = held else { return }
            held = nil
            send(.started(started))
        }
    }
}

/// How many of each function's last runs in a row were short (`WorkerPool.inlineLimit`). The last
/// function counted is kept aside: runs of one function follow each other, and comparing its name
/// costs a few instructions where hashing it cost ~300, three times a step run inline.
package struct ShortRunCounts {
    private var others: [String: Int] = [:]
    private var lastFunction = ""
    private var lastCount = 0

    package init() {}

    package func count(of function: String) -> Int { function == lastFunction ? lastCount : others[function] ?? 0 }

    package mutating func record(_ function: String, short: Bool) {
        if function != lastFunction {
            others[lastFunction] = lastCount
            lastCount = others.removeValue(forKey: function) ?? 0
            lastFunction = function
        }
        lastCount = short ? lastCount + 1 : 0
    }
}

/// How many threads of libdispatch's overcommit pool the slots of every pool in this process hold.
/// libdispatch gives that pool at most 255 threads per QoS class (DISPATCH_WORKQ_MAX_PTHREAD_COUNT,
/// fixed at its build) and every serial queue of the default QoS shares it; a slot queued past that
/// would wait for a thread, and so for other steps to end, which is how a blocked step starves
/// another. So slots take at most `limit` of them, leaving the rest to other queues of the process
/// (Foundation's, a step's own); a slot started past the limit runs on a thread of its own.
private enum DispatchThreads {
    static let limit = 192
    private static let held = Atomic<Int>(0)

    /// Takes one of the `limit` threads; false when all are held.
    static func claim() -> Bool {
        if held.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        held.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    static func release() { held.wrappingSubtract(1, ordering: .relaxed) }
}

/// A thread's set of blocked signals.
private struct SignalMask: Sendable {
    private var set: sigset_t

    /// The calling thread's mask.
    static func current() -> SignalMask {
        var set = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &set)
        return SignalMask(set: set)
    }

    /// Makes this the calling thread's mask; returns the mask it had.
    @discardableResult
    func apply() -> SignalMask {
        var old = sigset_t()
        var new = set
        pthread_sigmask(SIG_SETMASK, &new, &old)
        return SignalMask(set: old)
    }
}
