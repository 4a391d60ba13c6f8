import Foundation
import Synchronization

/// Rank 0's transport: rank 0's own workers in this process, every other rank through a `Messenger`
/// (MPI under `mpirun`, an `InMemoryNetwork` in one process). The coordinator's framing lives here once.
///
/// Outgoing events are buffered per rank and leave as one frame per rank each time the coordinator
/// waits for events, so many ready steps (or replies) travel together.
// @unchecked: the messenger, the outgoing buffers, `lastHeard` and `received` are touched only by the coordinator's
// thread (under MPI, the MPI thread); worker threads reach this object only through `localEvents`.
package final class RankLink: CoordinatorTransport, @unchecked Sendable {
    package let rankCount: Int
    private let localEvents = EventQueue<RankEvent>()
    private let localPool: WorkerPool
    /// Rank 0's own steps waiting for an answer.
    private let localReplies = ReplyTable()
    private let messenger: any Messenger
    private var outgoing: [ToRankFrame]
    private var backoff = IdleBackoff()
    /// When rank 0 last heard from each rank (any message; a quiet rank sends a heartbeat).
    private var lastHeard: [ContinuousClock.Instant]
    /// Events `silentRanks` received, for the next `nextEvents`.
    private var received: [RankEvent] = []
    /// Each rank's host, for messages about it.
    private let hosts: [String]
    /// How far back a local step's end looks for its start (`appendLocal`).
    private let pairingWindow: Int
    /// Runs after the ranks were told to shut down (the in-memory ranks' threads are joined there).
    private let afterShutdown: @Sendable () -> Void
    /// The coordinator's way to apply events, for rank 0's step run inline that waits for an answer.
    private let inlineApply = Mutex<(@Sendable ([RankEvent]) -> Bool)?>(nil)

    /// - Parameters:
    ///   - ranks: the run's ranks, rank 0 included; ranks 1... are reached through `messenger`.
    ///   - afterShutdown: called once the other ranks were told to shut down and every frame went.
    package init(ranks: Int, messenger: any Messenger, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int,
                 hosts: [String] = [], afterShutdown: @escaping @Sendable () -> Void = {}) {
        self.rankCount = ranks
        self.messenger = messenger
        self.lastHeard = Array(repeating: ContinuousClock.now, count: ranks)
        self.hosts = hosts
        self.pairingWindow = FromRank.startPairingWindow(threads: threads)
        self.outgoing = (0..<ranks).map { _ in ToRankFrame() }
        self.afterShutdown = afterShutdown
        let events = localEvents
        let toCoordinator: @Sendable (FromRank) -> Void = { events.push(.message(from: 0, $0)) }
        let link = WeakReference<RankLink>()
        localPool = WorkerPool(rank: 0, threads: threads, executor: executor, runDirectory: runDirectory, launch: launch,
                               inlineOwner: true, serveOwnerLoop: { link.target?.serveWhileInline() ?? false },
                               channel: TokenRequestChannel(replies: localReplies, push: toCoordinator), report: toCoordinator)
        messenger.notifyOnArrival { [events] in events.wake() }
        // The link holds the pool, so the pool reaches the link weakly.
        link.target = self
    }

    package func applyWhileInline(_ apply: @escaping @Sendable ([RankEvent]) -> Bool) {
        inlineApply.withLock { $0 = apply }
    }

    /// One look at the ranks for rank 0's step run inline that waits for an answer to its graph edit:
    /// what arrived is applied by the coordinator (which answers). False once the run is broken, or
    /// when no coordinator applies events.
    private func serveWhileInline() -> Bool {
        guard let apply = inlineApply.withLock({ $0 }) else { return false }
        flushOutgoing()
        let events = takeIn()
        return events.isEmpty || apply(events)
    }

    /// What has come, oldest first: what `silentRanks` took in earlier, rank 0's own workers' events,
    /// then the other ranks' frames.
    private func takeIn() -> [RankEvent] {
        var events = received
        received.removeAll()
        appendLocal(localEvents.drain(), to: &events)
        receive(into: &events)
        messenger.progressSends()
        return events
    }

    /// Appends rank 0's own workers' reports, less the starts of steps whose ends are among them: the
    /// end carries the start, as a worker rank's frame does (`FromRank.startsOfEndedSteps`): a step
    /// on a slot's thread that ended before the loop looked. (A step run on the loop reports no start
    /// unless it edits the graph: `WorkerPool`'s `HeldStart`.)
    private func appendLocal(_ local: [RankEvent], to events: inout [RankEvent]) {
        guard let paired = FromRank.startsOfEndedSteps(in: local, window: pairingWindow) else {
            events += local
            return
        }
        events.reserveCapacity(events.count + local.count)
        for i in local.indices where !paired[i] { events.append(local[i]) }
    }

    package func assign(_ steps: [StepAssignment], to rank: Int) {
        if rank == 0 { localPool.submit(steps) } else { for step in steps { outgoing[rank].append(assignment: step) } }
    }

    /// Encoded into the rank's next frame as it is handed out, read from the graph: no assignment is made.
    package func send(_ a: borrowing Assignment, from graph: borrowing StepGraph) {
        outgoing[a.rank].append(a, in: graph)
    }

    package func takeBackUnstarted() {
        localPool.takeBackUnstarted()
        for r in 1..<max(rankCount, 1) { outgoing[r].append(.takeBackUnstarted) }
    }

    package func takeBack(_ steps: [StepID], from rank: Int) {
        if rank == 0 { localPool.takeBack(steps) } else { outgoing[rank].append(.takeBack(steps)) }
    }

    package func checkAlive(_ ranks: [Int]) {
        for r in ranks where r > 0 && r < rankCount { outgoing[r].append(.ping) }
    }

    package func reply(_ result: EditResult, to address: ReplyAddress) {
        if address.rank == 0 {
            localReplies.fill(address.token, with: result)
        } else {
            outgoing[address.rank].append(.reply(token: address.token, result))
        }
    }

    package func nextEvents(timeout: Duration) -> [RankEvent] {
        flushOutgoing()
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            // Rank 0's own short steps run here, once the frames to the other ranks went (above), for
            // up to `inlineBatch`: the coordinator then applies their ends and hands out what they freed.
            localPool.runInline(upTo: WorkerPool.inlineBatch)
            let events = takeIn()
            if !events.isEmpty { return found(events) }
            let now = clock.now
            if now >= deadline { return [] }
            var pause = min(backoff.next(), deadline - now)
            // Rank 0's own slots all run steps: spinning would take the core from them, and so does
            // each look (a wake-up costs ~30 µs of the core here: looking every 100 µs slowed rank 0's
            // own compute-bound steps by a third). Its steps' ends wake it at once; the other ranks'
            // reports wait for the next look: 100 µs after something came, the wait doubling while
            // looks find nothing, up to `saturatedLookLongest`.
            if localPool.isSaturated {
                pause = min(max(pause, saturatedPause), deadline - now)
                saturatedPause = min(saturatedPause * 2, Self.saturatedLookLongest)
            }
            if pause > .zero {
                // Sleep on the local queue, so rank 0's own workers (and, in memory, arriving frames)
                // wake us at once.
                let local = localEvents.drain(waitingUpTo: pause)
                if !local.isEmpty {
                    var more: [RankEvent] = []
                    appendLocal(local, to: &more)
                    receive(into: &more)
                    return found(more)
                }
            } else {
                sched_yield()
            }
        }
    }

    /// How soon rank 0 looks at MPI while its own slots are all busy, after something came.
    static let saturatedLook: Duration = .microseconds(100)
    /// The longest wait between looks while its slots are busy and nothing comes.
    static let saturatedLookLongest: Duration = .microseconds(800)
    /// The wait before the next look while rank 0's slots are all busy.
    private var saturatedPause = RankLink.saturatedLook

    /// Events came: the next wait starts short again.
    private func found(_ events: [RankEvent]) -> [RankEvent] {
        backoff.reset()
        saturatedPause = Self.saturatedLook
        return events
    }

    package func shutdown(within limit: Duration?) -> Bool {
        flushOutgoing()
        for r in 1..<max(rankCount, 1) { messenger.send(WireCodec.encode([ToRank.shutdown]), to: r) }
        let went = messenger.flush(within: limit)
        localPool.shutdown()
        afterShutdown()
        return went
    }

    package func abort(within limit: Duration) {
        for r in 1..<max(rankCount, 1) { messenger.send(WireCodec.encode([ToRank.abort]), to: r) }
        messenger.flush(within: limit)
        localPool.stopLaunching()
    }

    private func flushOutgoing() {
        for r in 1..<max(rankCount, 1) where !outgoing[r].isEmpty { messenger.send(outgoing[r].take(), to: r) }
    }

    package func silentRanks(longerThan timeout: Duration) -> [Int] {
        // Silence is judged on what reached this rank, not on when the coordinator last looked: what
        // arrived while it was busy (a slow stepsCheck hook, a database stall) is taken in first.
        receive(into: &received)
        messenger.progressSends()
        let now = ContinuousClock.now
        return (1..<max(rankCount, 1)).filter { now - lastHeard[$0] > timeout }
    }

    package func host(of rank: Int) -> String? { rank < hosts.count ? hosts[rank] : nil }

    private func receive(into events: inout [RankEvent]) {
        for (source, bytes) in messenger.receiveAll() {
            if source > 0 && source < rankCount { lastHeard[source] = ContinuousClock.now }
            let decoded: [FromRank]
            do {
                decoded = try WireCodec.decode(bytes, as: FromRank.self)
            } catch {
                events.append(.broken(rank: source, message: "rank \(source) sent a message rank 0 cannot read (\(error))"))
                continue
            }
            for message in decoded {
                let named: Int? = switch message {
                case .started(let start): start.rank
                case .ended(let outcome): outcome.rank
                case .request, .alive: nil
                }
                if let named, named != source {
                    events.append(.broken(rank: source, message: "rank \(source) sent rank 0 a message in rank \(named)'s name"))
                } else {
                    events.append(.message(from: source, message))
                }
            }
        }
    }
}
