import Foundation

/// Every rank in this process: `ranks` worker pools of `threads` workers, wired straight to the
/// coordinator. The in-process twin of the MPI transport, so engine tests run without MPI and can
/// still exercise several ranks.
public final class LocalTransport: CoordinatorTransport {
    public let rankCount: Int
    private let events = EventQueue<RankEvent>()
    // Set once in init, read-only afterwards.
    private let pools: [WorkerPool]

    public init(ranks: Int, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int = 1) {
        self.rankCount = ranks
        let events = self.events
        let channel = LocalRequestChannel(events: events)
        self.pools = (0..<ranks).map { rank in
            WorkerPool(rank: rank, threads: threads, executor: executor, runDirectory: runDirectory, launch: launch,
                       channel: channel, report: { events.push($0) })
        }
    }

    public func assign(_ steps: [StepAssignment], to rank: Int) { pools[rank].submit(steps) }

    public func takeBackUnstarted() { pools.forEach { $0.takeBackUnstarted() } }

    public func takeBack(_ steps: [StepID], from rank: Int) { pools[rank].takeBack(steps) }

    /// Every rank lives in this process: all answer at once.
    public func checkAlive(_ ranks: [Int]) { for r in ranks { events.push(.alive(rank: r)) } }

    /// Ranks in this process never go silent.
    public func silentRanks(longerThan timeout: Duration) -> [Int] { [] }

    public func host(of rank: Int) -> String? { nil }

    public func reply(_ result: EditResult, to address: ReplyAddress) {
        if case .local(let slot) = address { slot.fill(result) }
    }

    public func nextEvents(timeout: Duration) -> [RankEvent] { events.drain(waitingUpTo: timeout) }

    public func shutdown() { pools.forEach { $0.shutdown() } }

    public func abort() { pools.forEach { $0.stopLaunching() } }
}

/// A running step's requests in this process: queued for the coordinator, answered through a slot.
public struct LocalRequestChannel: StepRequestChannel {
    let events: EventQueue<RankEvent>

    public init(events: EventQueue<RankEvent>) { self.events = events }

    public func send(_ request: StepRequest) -> EditResult {
        let slot = ReplySlot()
        events.push(.request(request, replyTo: .local(slot)))
        return slot.wait()
    }
}
