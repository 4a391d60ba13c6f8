import Foundation

/// Every rank in this process: `ranks` worker pools of `threads` workers, wired straight to the
/// coordinator. The in-process twin of the MPI transport, so engine tests run without MPI and can
/// still exercise several ranks.
package final class LocalTransport: CoordinatorTransport {
    package let rankCount: Int
    private let events = EventQueue<RankEvent>()
    // Set once in init, read-only afterwards.
    private let pools: [WorkerPool]

    package init(ranks: Int, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int = 1) {
        self.rankCount = ranks
        let events = self.events
        let channel = LocalRequestChannel(events: events)
        self.pools = (0..<ranks).map { rank in
            WorkerPool(rank: rank, threads: threads, executor: executor, runDirectory: runDirectory, launch: launch,
                       channel: channel, report: { events.push($0) })
        }
    }

    package func assign(_ steps: [StepAssignment], to rank: Int) { pools[rank].submit(steps) }

    package func takeBackUnstarted() { pools.forEach { $0.takeBackUnstarted() } }

    package func takeBack(_ steps: [StepID], from rank: Int) { pools[rank].takeBack(steps) }

    /// Every rank lives in this process: all answer at once.
    package func checkAlive(_ ranks: [Int]) { for r in ranks { events.push(.alive(rank: r)) } }

    /// Ranks in this process never go silent.
    package func silentRanks(longerThan timeout: Duration) -> [Int] { [] }

    package func host(of rank: Int) -> String? { nil }

    package func reply(_ result: EditResult, to address: ReplyAddress) {
        if case .local(let slot) = address { slot.fill(result) }
    }

    package func nextEvents(timeout: Duration) -> [RankEvent] { events.drain(waitingUpTo: timeout) }

    package func shutdown() { pools.forEach { $0.shutdown() } }

    package func abort() { pools.forEach { $0.stopLaunching() } }
}

/// A running step's requests in this process: queued for the coordinator, answered through a slot.
package struct LocalRequestChannel: StepRequestChannel {
    let events: EventQueue<RankEvent>

    package init(events: EventQueue<RankEvent>) { self.events = events }

    package func send(_ request: StepRequest) -> EditResult {
        let slot = ReplySlot()
        events.push(.request(request, replyTo: .local(slot)))
        return slot.wait()
    }
}
