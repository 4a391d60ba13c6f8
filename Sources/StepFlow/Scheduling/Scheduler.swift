import Foundation

/// How a run uses its slots (S5).
public enum StepsExecutionMode: String, Sendable, Codable {
    /// One step at a time, in id order.
    case serial
    /// Every slot of every rank.
    case parallel
}

/// What happens after a step fails (S7).
package enum FailurePolicy: String, Sendable, Codable {
    /// Launch nothing new, let running steps finish, end the run `failed`.
    case stop
    /// Run everything that does not depend on a failed step; its dependents end `skipped`.
    case keepGoing
}

/// The shape of a run: how many ranks, slots and GPUs, and its policies.
package struct SchedulerConfig: Sendable, Equatable {
    package var ranks: Int
    package var threadsPerRank: Int
    /// The GPU ids each rank hands out (index: rank). An id listed twice may be held by two steps at
    /// once; ranks of one node share its list out, so they never hand out the same GPU.
    package var gpus: [[Int]]
    /// Steps (in slot units) sent ahead to each rank beyond its T slots, so that a worker never waits
    /// a round trip for its next step (S6). 0 on one process, where nothing travels.
    package var prefetch: Int
    package var mode: StepsExecutionMode
    package var failurePolicy: FailurePolicy
    /// Whether a step whose unfinished prerequisites all run on one rank is sent there behind them
    /// (see `Scheduler.sendBehind`), so that it starts without a round trip through rank 0.
    package var sendBehind = false

    /// - Parameters:
    ///   - gpusPerRank: every rank hands out GPUs 0..<n (tests); `gpus` gives each rank's list instead.
    package init(ranks: Int = 1, threadsPerRank: Int = 1, gpusPerRank: Int = 0, gpus: [[Int]]? = nil, prefetch: Int = 0,
                mode: StepsExecutionMode = .parallel, failurePolicy: FailurePolicy = .stop) {
        self.ranks = ranks
        self.threadsPerRank = threadsPerRank
        self.gpus = gpus ?? Array(repeating: Array(0..<gpusPerRank), count: ranks)
        self.prefetch = prefetch
        self.mode = mode
        self.failurePolicy = failurePolicy
    }

    /// Whether any rank has a GPU to hand out.
    package var anyGPU: Bool { gpus.contains { !$0.isEmpty } }
}

/// A decision of the scheduler: run this step on this rank, with these GPUs.
package struct Assignment: Sendable, Equatable {
    package var step: StepID
    package var rank: Int
    package var gpus: [Int]
    package var attempt: Int
    /// With a launch deadline: the latest moment (seconds since the epoch) the step may start, so it
    /// ends before the deadline as far as its expected duration says. The rank checks it when the step
    /// would start, since a step sent ahead may wait in the rank's queue.
    package var startBy: Double? = nil
    /// Prerequisites still running on `rank`: the step was sent behind them (empty: it is ready).
    package var behind: [StepID] = []
    /// Other steps wait for `behind` too: a rank running short steps on its loop sends their ends
    /// before it runs this one (`StepAssignment.sendEndsFirst`).
    package var sendEndsFirst = false
}

/// How a run ended.
public enum RunOutcome: Sendable, Equatable {
    /// Every step finished.
    case finished
    /// At least one step failed (S7).
    case failed
    /// Nothing runs and nothing can become ready: these steps wait for a release that will not come (S4).
    case stalled(waiting: [StepID], blocked: [StepID])
    /// Stopped by a signal (S10).
    case aborted(signal: Int32)
    /// Stopped starting steps before the allocation's end (`--stop-before`); the steps that were
    /// running finished, the rest is left for `--continue`. Ends with 143, like a SIGTERM, so batch
    /// scripts treat both alike.
    case stoppedForTimeLimit
}

/// The scheduler: a pure state machine. Events go in (inserts, releases, results); decisions come
/// out (`nextAssignments`). It knows nothing of MPI, threads or storage, so tests drive it step by step.
package struct Scheduler: Sendable {
    package let config: SchedulerConfig
    package private(set) var graph: StepGraph
    /// Slot units in flight per rank (assigned and not yet reported back).
    package private(set) var load: [Int]
    private(set) var freeGPUs: [[Int]]
    package private(set) var inFlight = 0
    private var lastRank: Int
    /// The rank that reported a step's end last: its loop is polling right now, so a step given to it
    /// starts at once, where an idle rank's loop may be asleep.
    private var warmRank: Int?
    /// Slot units sent ahead per rank now: starts at `config.prefetch`; the coordinator raises it for
    /// short steps, where a deeper pipeline costs no balance (see `adaptPrefetch`).
    package private(set) var prefetch: Int
    /// Set after a failure under `.stop`, or by a signal: nothing new is launched.
    package private(set) var stopping = false
    private var abortSignal: Int32?
    private var abandoned = false
    private var timeLimited = false

    package init(config: SchedulerConfig) {
        self.config = config
        self.graph = StepGraph(skipDependentsOfFailures: config.failurePolicy == .keepGoing)
        self.load = Array(repeating: 0, count: config.ranks)
        self.freeGPUs = (0..<config.ranks).map { $0 < config.gpus.count ? config.gpus[$0] : [] }
        self.lastRank = config.ranks - 1
        self.prefetch = config.prefetch
    }

    /// A scheduler over a graph rebuilt from a run database (S9, S12).
    package init(config: SchedulerConfig, restoring records: [StepRecord], unconfirmed: Set<StepID> = []) {
        self.init(config: config)
        self.graph = StepGraph(restoring: records, unconfirmed: unconfirmed,
                               skipDependentsOfFailures: config.failurePolicy == .keepGoing)
    }

    /// Checks that a step's resource request can ever be met (S5), then inserts it.
    @discardableResult
    package mutating func insert(_ spec: StepSpec, prerequisites: [StepID], insertedBy: Inserter,
                                at location: SourceLocation? = nil) throws(StepGraphError) -> StepID {
        try Self.validate(spec, threadsPerRank: config.threadsPerRank, anyGPU: config.anyGPU, at: location)
        return try graph.insert(spec, prerequisites: prerequisites, insertedBy: insertedBy, at: location)
    }

    /// The checks every rank can make on its own: resources that can never be met.
    package static func validate(_ spec: StepSpec, threadsPerRank: Int, anyGPU: Bool,
                                at location: SourceLocation?) throws(StepGraphError) {
        guard spec.threads >= 1 && spec.threads <= threadsPerRank else {
            throw .threadsOutOfRange(function: spec.function, threads: spec.threads, available: threadsPerRank, at: location)
        }
        if spec.needsGPU && !anyGPU { throw .noGPU(function: spec.function, at: location) }
        if spec.retries < 0 { throw .negativeRetries(function: spec.function, retries: spec.retries, at: location) }
        for (index, value) in spec.args.enumerated() {
            // Only containers nest; most arguments are scalars and cost nothing here.
            switch value {
            case .array, .object:
                let depth = value.nestingDepth
                if depth > WireCodec.maximumNesting {
                    throw .nestedTooDeep(function: spec.function, argument: index + 1, depth: depth, limit: WireCodec.maximumNesting, at: location)
                }
            case .null, .bool, .int, .double, .string:
                continue
            }
        }
    }

    package mutating func addPrerequisites(to target: StepID, _ prerequisites: [StepID], by inserter: Inserter = .protocolSteps,
                                          at location: SourceLocation? = nil) throws(StepGraphError) {
        try graph.addPrerequisites(to: target, prerequisites, by: inserter, at: location)
    }

    package mutating func release(_ id: StepID, by inserter: Inserter = .protocolSteps, at location: SourceLocation? = nil) throws(StepGraphError) {
        try graph.release(id, by: inserter, at: location)
    }

    /// Ready steps, lowest id first, placed on the least-loaded rank that has room (S6). A step that
    /// does not fit anywhere now holds back the steps after it, so dispatch stays in id order; but a
    /// step that waits only for a GPU (every GPU is taken) lets the steps behind it go, and near the
    /// launch deadline a step expected to outlast it is left for the next launch.
    /// - Parameter now: seconds since the epoch, to compare with `launchDeadline`.
    package mutating func nextAssignments(now: Double? = nil) -> [Assignment] {
        var out: [Assignment] = []
        heldForTimeLimit = 0
        guard !stopping else { return out }
        if let launchDeadline, let now, now >= launchDeadline { return out }
        let capacity = config.threadsPerRank + prefetch
        // Sized first, to what the ranks have room for: grown append by append, the list was
        // reallocated ~3 times a call (~290 instructions a step handed out, callgrind). Not in a
        // serial run with a step in flight, where nothing is handed out.
        if config.mode == .parallel || inFlight == 0 {
            let room = load.reduce(0) { $0 + max(0, capacity - $1) }
            out.reserveCapacity(Swift.min(graph.ready.count, room))
        }
        var setAside: [StepID] = []
        defer { graph.putBackReady(setAside) }
        while let id = graph.peekReady() {
            if config.mode == .serial && inFlight > 0 { break }
            // The three fields read in place: a copy of the spec (its name and arguments retained and
            // released) cost ~140 instructions a step.
            let threads = graph.records[id - 1].spec.threads, needsGPU = graph.records[id - 1].spec.needsGPU
            let expectedSeconds = graph.records[id - 1].spec.expectedSeconds
            if let launchDeadline, let now, let expected = expectedSeconds, now + expected > launchDeadline {
                graph.setAsideReady(id)
                setAside.append(id)
                heldForTimeLimit += 1
                continue
            }
            // Least-loaded rank. Among equals the warm rank (the last to report: its loop is polling, so
            // a chain's next link starts without waking a sleeping rank), then round-robin from the rank
            // after the last one used. Measured on 4 ranks sharing 2 cores, a 10k chain: 154 µs a link
            // round-robin, ~19 µs warm (the chain stays on rank 0, which the coordinator keeps awake),
            // 82 µs when rank 0 was never the warm one (a worker's loop and pool thread wake slower).
            var best = -1
            for k in 1...config.ranks {
                let r = (lastRank + k) % config.ranks
                guard load[r] + threads <= capacity, !(needsGPU && freeGPUs[r].isEmpty) else { continue }
                if best < 0 || load[r] < load[best] || (load[r] == load[best] && r == warmRank) { best = r }
            }
            guard best >= 0 else {
                // Every GPU is taken: CPU steps behind it need not wait. A GPU free on a rank without a
                // free slot keeps the order, so the GPU step gets that slot first.
                if needsGPU && freeGPUs.allSatisfy(\.isEmpty) {
                    graph.setAsideReady(id)
                    setAside.append(id)
                    continue
                }
                break
            }
            lastRank = best
            _ = graph.takeReady()
            load[best] += threads
            inFlight += 1
            var gpus: [Int] = []
            if needsGPU { gpus.append(freeGPUs[best].removeFirst()) }
            graph.noteRun(id, rank: best, slot: nil, gpus: gpus, start: nil, end: nil, logPath: nil)
            out.append(Assignment(step: id, rank: best, gpus: gpus, attempt: graph.records[id - 1].attempts,
                                  startBy: launchDeadline.map { $0 - (expectedSeconds ?? 0) }))
        }
        if config.sendBehind, prefetch > 0, launchDeadline == nil, config.mode == .parallel {
            sendBehind(after: &out, readyWaits: !setAside.isEmpty || graph.hasReady())
        }
        return out
    }

    /// Steps sent behind others that had no room for a step behind them in turn: looked at again at
    /// the next dispatch, so that a chain goes on where it runs.
    private var behindFrontier: [StepID] = []
    /// Steps a finish left with one unfinished prerequisite: they may go behind it (`sendBehind`).
    private var behindCandidates: [StepID] = []
    /// The most steps kept in `behindCandidates` while ready steps wait: they only save round trips.
    static let behindKept = 256
    /// Sends a step behind its unfinished prerequisites when they all run on one rank: that rank starts
    /// it as soon as they finish there, where a ready step waits for their ends to reach rank 0 and for
    /// its assignment to come back (a chain's next link on a worker rank waited ~50 µs for that here).
    /// The steps looked at are the dependents of the steps just sent out, of steps sent behind that
    /// had no room then, and the steps a finish left waiting for one prerequisite.
    ///
    /// Two cases, so balance comes first:
    /// - a *link*: the step is the only one that waits for each of those prerequisites (a chain, a
    ///   join). It may go behind them while the rank has room for steps sent ahead (`prefetch`), so a
    ///   chain runs on without rank 0; their ends reach rank 0 with the rank's next ones.
    /// - otherwise (a fan-out, a stencil's next point) only when the rank has nothing else to run
    ///   (no more than its slots' worth sent), and only one dependent per step: the others become
    ///   ready and go to the least-loaded rank. Its prerequisites' ends go out before it starts
    ///   (`sendEndsFirst`), since the steps that also wait for them may go to another rank. On a rank
    ///   with steps queued this would only cost: each such end is a frame of its own, and Task Bench
    ///   stencil_1d at width 16 (1 µs tasks) took 95 ms against 68 when every step could go behind.
    ///
    /// Only once no ready step waits (S6 keeps them in id order), never with a launch deadline (the
    /// rank could not tell when it starts), and only CPU steps. Room is checked first: on a busy run
    /// this costs a few loads a step.
    private mutating func sendBehind(after out: inout [Assignment], readyWaits: Bool) {
        guard !readyWaits, !out.isEmpty || !behindFrontier.isEmpty || !behindCandidates.isEmpty else { return }
        var chains: [StepID] = []
        for d in behindCandidates {
            guard let (first, rank) = graph.firstUnfinishedPrerequisite(of: d) else { continue }
            let idle = load[rank] <= config.threadsPerRank
            // On a busy rank only a link may go: most candidates (a stencil's points) stop here.
            guard idle || graph.waitingOn(first).count == 1, load[rank] + graph.records[d - 1].spec.threads <= linkRoom,
                  !graph.records[d - 1].spec.needsGPU, let behind = graph.unfinishedPrerequisites(of: d, allOn: rank) else { continue }
            let link = isLink(behind)
            guard link || (idle && !behind.contains(where: hasFollower)) else { continue }
            send(d, behind: behind, to: rank, link: link, &out)
            chains.append(d)
        }
        behindCandidates.removeAll(keepingCapacity: true)
        for i in out.indices where out[i].behind.isEmpty { follow(out[i].step, keepIfNoRoom: false, &out, &chains) }
        chains.append(contentsOf: behindFrontier)
        behindFrontier.removeAll(keepingCapacity: true)
        while let p = chains.popLast() { follow(p, keepIfNoRoom: true, &out, &chains) }
    }

    /// Slot units a rank may hold with a link sent behind: its slots and the steps sent ahead.
    private var linkRoom: Int { config.threadsPerRank + prefetch }

    /// Sends the first dependent of `p` that may go behind it (see `sendBehind`); a link with no room
    /// on its rank waits in `behindFrontier` if `keepIfNoRoom`.
    private mutating func follow(_ p: StepID, keepIfNoRoom: Bool, _ out: inout [Assignment], _ chains: inout [StepID]) {
        guard graph.records[p - 1].status == .running, let rank = graph.records[p - 1].rank else { return }
        let waiting = graph.waitingOn(p)
        guard !waiting.isEmpty else { return }
        if waiting.count > 1 && load[rank] > config.threadsPerRank { return }
        guard load[rank] < linkRoom else {
            if keepIfNoRoom { behindFrontier.append(p) }
            return
        }
        guard !hasFollower(p) else { return }
        for d in waiting {
            let d = Int(d)
            guard !graph.records[d - 1].spec.needsGPU, let behind = graph.unfinishedPrerequisites(of: d, allOn: rank) else { continue }
            let link = isLink(behind)
            if !link && load[rank] > config.threadsPerRank { return }
            if load[rank] + graph.records[d - 1].spec.threads > linkRoom {
                if keepIfNoRoom { behindFrontier.append(p) }
            } else {
                send(d, behind: behind, to: rank, link: link, &out)
                chains.append(d)
            }
            return
        }
    }

    /// Whether a step sent behind `behind` would be a link: the only step that waits for each of them.
    private func isLink(_ behind: [StepID]) -> Bool { behind.allSatisfy { graph.waitingOn($0).count == 1 } }

    /// Whether a step sent behind `p` waits for it (a dependent of an unfinished step that runs).
    private func hasFollower(_ p: StepID) -> Bool {
        graph.waitingOn(p).contains { graph.records[Int($0) - 1].status == .running }
    }

    /// How many times a step was sent behind its prerequisites in this run.
    package private(set) var sentBehindCount = 0

    private mutating func send(_ d: StepID, behind: [StepID], to rank: Int, link: Bool, _ out: inout [Assignment]) {
        sentBehindCount += 1
        graph.sendBehind(d)
        load[rank] += graph.records[d - 1].spec.threads
        inFlight += 1
        graph.noteRun(d, rank: rank, slot: nil, gpus: [], start: nil, end: nil, logPath: nil)
        out.append(Assignment(step: d, rank: rank, gpus: [], attempt: graph.records[d - 1].attempts, behind: behind, sendEndsFirst: !link))
    }

    /// How many ready steps the last `nextAssignments` left because they are expected to outlast the
    /// launch deadline. With nothing in flight, waiting for the deadline would only waste the allocation.
    package private(set) var heldForTimeLimit = 0

    /// Seconds since the epoch after which no step starts (`--stop-before`); nil: none.
    package private(set) var launchDeadline: Double?

    /// Sets the time after which no step starts; steps expected to outlast it do not start before it.
    package mutating func setLaunchDeadline(_ deadline: Double?) { launchDeadline = deadline }

    /// What a rank reports about a step it was given.
    package enum Report: Sendable, Equatable {
        case finished
        case failed(error: String)
        /// Handed back without starting (the run stopped launching).
        case notStarted
        /// Stopped by a signal.
        case aborted
    }

    /// Applies a rank's report. Returns true when this report made the run stop launching
    /// (a step failed under `.stop`): the caller should take back steps sent ahead.
    @discardableResult
    package mutating func stepEnded(_ id: StepID, _ report: Report) -> Bool {
        // Fields read in place: copying the record for them cost a third of this call.
        guard graph.records[id - 1].status == .running, let rank = graph.records[id - 1].rank else { return false }
        load[rank] -= graph.records[id - 1].spec.threads
        inFlight -= 1
        warmRank = rank
        if !graph.records[id - 1].gpus.isEmpty { freeGPUs[rank].append(contentsOf: graph.records[id - 1].gpus) }
        switch report {
        case .finished:
            if config.sendBehind {
                // Dependents this finish leaves waiting for one prerequisite may go behind it (`sendBehind`).
                for d in graph.waitingOn(id) where graph.prerequisitesLeft(Int(d)) == 2 && behindCandidates.count < Self.behindKept {
                    behindCandidates.append(Int(d))
                }
            }
            graph.finish(id)
        case .failed(let error):
            if graph.fail(id, error: error) && config.failurePolicy == .stop && !stopping {
                stopping = true
                return true
            }
        case .notStarted:
            graph.unassign(id)
        case .aborted:
            graph.abort(id)
        }
        return false
    }

    /// Records where and when a step ran, as its rank reported it.
    package mutating func noteRun(_ id: StepID, slot: Int?, start: Double?, end: Double?, logPath: String?) {
        graph.noteRun(id, rank: nil, slot: slot, start: start, end: end, logPath: logPath)
    }

    /// Keeps the result a step set, as it is about to be recorded finished (S13).
    package mutating func noteResult(_ id: StepID, _ result: [UInt8]?) { graph.noteResult(id, result) }

    /// Sets how far ahead to send, from the mean duration of recent steps: the shorter the steps, the
    /// more are sent ahead, so workers never wait a round trip; steps of a millisecond or more get
    /// `config.prefetch`, so a slow step never holds many others back; steps of `longStepSeconds` or
    /// more get none: a step queued behind a long one would wait for it while a slot elsewhere may be
    /// free (measured: 1 ms and 200 ms steps interleaved on 4 ranks × 4 threads ended 1.10 × ideal
    /// with 4 sent ahead), and a round trip is nothing next to such a step.
    ///
    /// Steps under 20 µs are sent ahead by time: `shortStepsAheadSeconds` of work per slot, at least
    /// 32 and at most `maximumShortStepsAhead` steps. Ranks sharing cores wait whenever rank 0 is
    /// off its core for a moment; 32 steps of a microsecond covered 32 µs of that. Measured, 200,000
    /// empty steps on 4 ranks sharing 2 cores: 0.79–0.81M steps/s with 32 ahead, 0.82–0.93M with 64,
    /// 1.46–1.50M with 256, 1.65M with 512. What a step queued behind a long one waits with is
    /// bounded the same way while the steps stay short. A run that turns from steps of microseconds
    /// to long ones finds up to that many of the first long ones queued on each rank, until the mean
    /// (refreshed every 64 steps) catches up; 32 before. Lowering the depth at once after any step
    /// that called for less was tried: a step a little slower than the others cut it (in 4 paired
    /// launches the store-off runs were 10–17% slower), and on ranks sharing cores a step of
    /// microseconds is now and then descheduled for milliseconds.
    /// Without a configured prefetch (one process, nothing travels) it stays 0.
    package mutating func adaptPrefetch(meanStepSeconds: Double) {
        guard config.prefetch > 0 else { return }
        switch meanStepSeconds {
        case ..<0.000_02:
            let byTime = Double(config.threadsPerRank) * Self.shortStepsAheadSeconds / max(meanStepSeconds, 1e-9)
            prefetch = max(config.prefetch, 32, Int(min(byTime, Double(Self.maximumShortStepsAhead)).rounded()))
        case ..<0.000_2: prefetch = max(config.prefetch, 16)
        case ..<0.001: prefetch = max(config.prefetch, 8)
        case ..<Self.longStepSeconds: prefetch = config.prefetch
        default: prefetch = 0
        }
    }

    /// Work, in seconds a slot, sent ahead to a rank when steps take under 20 µs (see `adaptPrefetch`).
    package static let shortStepsAheadSeconds = 0.000_5
    /// The most steps sent ahead to one rank, however short they are.
    package static let maximumShortStepsAhead = 512

    /// Steps this long on average are not sent ahead (see `adaptPrefetch`). Seen with nothing sent
    /// ahead (100 ms steps, 2 ranks): a SIGTERM about 0.1 s before the running steps ended let them
    /// finish (recorded `finished`, run `aborted`, exit 143, nothing lost) rather than recording them
    /// `aborted`, and RecoveryTests.sigtermRunMPI (50 ms steps) expects aborted ones: hence 80 ms, not
    /// 50. Why the abort came only after those steps ended is not known yet.
    package static let longStepSeconds = 0.08

    /// Stop launching new steps; the run ends once nothing is in flight.
    package mutating func stopLaunching() { stopping = true }

    /// The allocation is about to end (`--stop-before`): nothing new starts, running steps finish and
    /// are recorded, and the run ends as stopped by SIGTERM would, for a resubmission to continue.
    package mutating func stopForTimeLimit() {
        stopping = true
        timeLimited = true
    }

    /// The steps changed since the last call (for the run database).
    package mutating func takeChanged() -> [StepID] { graph.takeChanged() }

    /// Shows `visit` at most `limit` changed steps; returns whether more are left (`StepGraph.visitChanged(upTo:_:)`).
    package mutating func visitChanged(upTo limit: Int, _ visit: (UnsafePointer<StepRecord>) -> Void) -> Bool {
        graph.visitChanged(upTo: limit, visit)
    }

    /// Stop at once because of a signal (S10): nothing new is launched and every running step is
    /// `aborted` now, without waiting for it; steps sent ahead that had not started are `new` again.
    /// Reports that come later are ignored.
    /// Steps that started on `silentRanks` (ranks that did not show they are alive: the launcher is
    /// ending the job because one died) stay `running`, so a continue counts that death.
    package mutating func abort(signal: Int32, silentRanks: Set<Int> = []) {
        stopping = true
        if abortSignal == nil { abortSignal = signal }
        for r in graph.records where r.status == .running {
            if r.start == nil {
                graph.unassign(r.id)
            } else if !silentRanks.contains(r.rank ?? 0) {
                graph.abort(r.id)
            }
        }
        inFlight = 0
        load = Array(repeating: 0, count: config.ranks)
        freeGPUs = (0..<config.ranks).map { $0 < config.gpus.count ? config.gpus[$0] : [] }
    }

    /// Stop at once because the run cannot go on (a rank sent what rank 0 cannot use): as `abort`,
    /// but the run ends `failed`.
    package mutating func abandon() {
        abort(signal: 0)
        abandoned = true
    }

    /// The outcome once nothing is in flight and nothing more can be launched; nil while the run
    /// still has work. `.stalled` means only a release from outside (a `stepsCheck` hook) can help.
    package mutating func outcome() -> RunOutcome? {
        guard inFlight == 0 else { return nil }
        if abandoned { return .failed }
        // Stopped for the time limit with nothing left: the run simply finished.
        if timeLimited && graph.unfinishedCount == 0 && graph.count(.failed) == 0 { return .finished }
        if let abortSignal { return .aborted(signal: abortSignal) }
        if timeLimited { return .stoppedForTimeLimit }
        if !stopping && graph.hasReady() { return nil }
        if !stopping && graph.unfinishedCount > 0 {
            return .stalled(waiting: graph.waitingSteps, blocked: graph.blockedSteps)
        }
        // Stopped with steps left undone (a failure, a hook that threw, a database that failed): failed.
        return graph.count(.failed) > 0 || graph.unfinishedCount > 0 ? .failed : .finished
    }
}

extension Scheduler {
    /// The outcome once the run is over; nil while it goes on. A stalled run waits while a live
    /// `stepsCheck` hook could still release its steps (`hookWaiting`), except after a failure that
    /// stops the run (S7): nothing the hook releases could run then.
    public mutating func endingOutcome(hookWaiting: Bool) -> RunOutcome? {
        guard let done = outcome() else { return nil }
        if case .stalled = done, hookWaiting, config.failurePolicy != .stop || graph.count(.failed) == 0 { return nil }
        return done
    }

    /// The outcome recorded for an ended run: one that stops with failed steps is failed, even when it
    /// also holds waiting steps the failed step would have released (S7); a hook that threw fails a
    /// run whose steps all finished.
    public func recordedOutcome(_ outcome: RunOutcome, hookError: String?) -> RunOutcome {
        if case .stalled = outcome, graph.count(.failed) > 0 { return .failed }
        if hookError != nil, outcome == .finished { return .failed }
        return outcome
    }

    /// Why a run stopped starting steps before its launch deadline; `message` is nil when nothing was
    /// left to start (the run simply finishes).
    public struct LaunchDeadlineStop: Sendable, Equatable {
        public var message: String?
    }

    /// At `now`, stops starting steps (`stopForTimeLimit`) once the launch deadline has passed, or
    /// earlier when nothing runs and every ready step is expected to outlast it and no hook could
    /// insert a shorter one (waiting would only waste the allocation). Returns nil while the run goes
    /// on; the caller takes back steps sent ahead.
    /// - Parameter why: where the deadline comes from, for the message.
    public mutating func stopAtLaunchDeadline(now: Double, why: String, hookActive: Bool) -> LaunchDeadlineStop? {
        guard let launchDeadline, !timeLimited else { return nil }
        let onlyTooLong = !hookActive && inFlight == 0 && heldForTimeLimit > 0
        guard onlyTooLong || now >= launchDeadline else { return nil }
        stopForTimeLimit()
        let left = graph.unfinishedCount - inFlight
        let reason = onlyTooLong ? "every step ready to start is expected to run past the launch deadline (\(why))" : why
        return LaunchDeadlineStop(message: left > 0
            ? "stopped starting steps: \(reason). Running steps finished; \(left) step(s) left for a resubmission with --continue"
            : nil)
    }
}

extension Scheduler {
    /// Applies a graph edit for `inserter`: an insert returns the new id.
    @discardableResult
    package mutating func apply(_ edit: GraphEdit, by inserter: Inserter) throws(StepGraphError) -> StepID? {
        switch edit {
        case .insert(let spec, let prerequisites, let at):
            return try insert(spec, prerequisites: prerequisites, insertedBy: inserter, at: at)
        case .addPrerequisites(let target, let prerequisites, let at):
            try addPrerequisites(to: target, prerequisites, by: inserter, at: at)
            return nil
        case .release(let id, let at):
            try release(id, by: inserter, at: at)
            return nil
        }
    }
}
