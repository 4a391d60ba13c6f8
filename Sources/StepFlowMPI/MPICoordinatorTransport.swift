import Foundation
import StepFlow

/// Rank 0's transport: rank 0's own workers in this process, every other rank over MPI.
///
/// Outgoing events are buffered per rank and leave as one message per rank each time the coordinator
/// waits for events, so many ready steps (or replies) travel together.
// @unchecked: the messenger and the outgoing buffers are touched only by the coordinator thread, which is
// the MPI thread (MPI_THREAD_FUNNELED); worker threads reach this object only through `localEvents`.
package final class MPICoordinatorTransport: CoordinatorTransport, @unchecked Sendable {
    package let rankCount: Int
    private let localEvents = EventQueue<RankEvent>()
    private let localPool: WorkerPool
    private let messenger = MPIMessenger()
    private var outgoing: [[WireEvent]]
    private var backoff = IdleBackoff()
    /// When rank 0 last heard from each rank (any message; a quiet rank sends a heartbeat).
    private var lastHeard: [ContinuousClock.Instant]
    /// Each rank's host, for messages about it.
    private let hosts: [String]

    package init(world: MPIWorld, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int, hosts: [String] = []) {
        precondition(world.rank == 0, "the coordinator runs on rank 0")
        self.rankCount = world.size
        self.lastHeard = Array(repeating: ContinuousClock.now, count: world.size)
        self.hosts = hosts
        self.outgoing = Array(repeating: [], count: world.size)
        let events = localEvents
        localPool = WorkerPool(rank: 0, threads: threads, executor: executor, runDirectory: runDirectory, launch: launch,
                               channel: LocalRequestChannel(events: events), report: { events.push($0) })
    }

    package func assign(_ steps: [StepAssignment], to rank: Int) {
        if rank == 0 { localPool.submit(steps) } else { outgoing[rank].append(contentsOf: steps.map { .assign($0) }) }
    }

    package func takeBackUnstarted() {
        localPool.takeBackUnstarted()
        for r in 1..<rankCount { outgoing[r].append(.takeBackUnstarted) }
    }

    package func takeBack(_ steps: [StepID], from rank: Int) {
        if rank == 0 { localPool.takeBack(steps) } else { outgoing[rank].append(.takeBack(steps)) }
    }

    package func checkAlive(_ ranks: [Int]) {
        for r in ranks where r > 0 && r < rankCount { outgoing[r].append(.ping) }
    }

    package func reply(_ result: EditResult, to address: ReplyAddress) {
        switch address {
        case .local(let slot): slot.fill(result)
        case .remote(let rank, let token): outgoing[rank].append(.reply(token: token, result))
        }
    }

    package func nextEvents(timeout: Duration) -> [RankEvent] {
        flushOutgoing()
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            var events = localEvents.drain()
            receive(into: &events)
            messenger.progressSends()
            if !events.isEmpty {
                backoff.reset()
                return events
            }
            let now = clock.now
            if now >= deadline { return [] }
            let pause = min(backoff.next(), deadline - now)
            if pause > .zero {
                // Sleep on the local queue, so rank 0's own workers wake us at once.
                let local = localEvents.drain(waitingUpTo: pause)
                if !local.isEmpty {
                    var more = local
                    receive(into: &more)
                    backoff.reset()
                    return more
                }
            } else {
                sched_yield()
            }
        }
    }

    package func shutdown() {
        flushOutgoing()
        for r in 1..<max(rankCount, 1) { messenger.send(WireCodec.encode([.shutdown]), to: r) }
        messenger.flush()
        localPool.shutdown()
    }

    package func abort() {
        for r in 1..<max(rankCount, 1) { messenger.send(WireCodec.encode([.abort]), to: r) }
        messenger.flush()
        localPool.stopLaunching()
    }

    private func flushOutgoing() {
        for r in 1..<max(rankCount, 1) where !outgoing[r].isEmpty {
            messenger.send(WireCodec.encode(outgoing[r]), to: r)
            outgoing[r].removeAll(keepingCapacity: true)
        }
    }

    package func silentRanks(longerThan timeout: Duration) -> [Int] {
        let now = ContinuousClock.now
        return (1..<max(rankCount, 1)).filter { now - lastHeard[$0] > timeout }
    }

    package func host(of rank: Int) -> String? { rank < hosts.count ? hosts[rank] : nil }

    private func receive(into events: inout [RankEvent]) {
        for (source, bytes) in messenger.receiveAll() {
            if source > 0 && source < rankCount { lastHeard[source] = ContinuousClock.now }
            let decoded: [WireEvent]
            do {
                decoded = try WireCodec.decode(bytes)
            } catch {
                events.append(.broken(rank: source, message: "rank \(source) sent a message rank 0 cannot read (\(error))"))
                continue
            }
            for e in decoded {
                switch e {
                case .started(let start) where start.rank == source: events.append(.started(start))
                case .ended(let outcome) where outcome.rank == source: events.append(.ended(outcome))
                case .request(let token, let request): events.append(.request(request, replyTo: .remote(rank: source, token: token)))
                case .alive: events.append(.alive(rank: source))
                default:
                    events.append(.broken(rank: source, message: "rank \(source) sent rank 0 a message only rank 0 sends, or one in another rank's name"))
                }
            }
        }
    }
}
