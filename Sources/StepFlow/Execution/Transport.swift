import Foundation
import Synchronization

/// What rank 0 sends a rank so it can run a step.
package struct StepAssignment: Sendable, Equatable {
    package var id: StepID
    package var function: String
    package var args: [StepValue]
    package var threads: Int
    package var gpus: [Int]
    package var attempt: Int

    package init(id: StepID, function: String, args: [StepValue], threads: Int, gpus: [Int], attempt: Int) {
        self.id = id
        self.function = function
        self.args = args
        self.threads = threads
        self.gpus = gpus
        self.attempt = attempt
    }
}

/// What a rank reports when it is done with a step it was given.
package struct StepOutcome: Sendable, Equatable {
    package var id: StepID
    package var rank: Int
    package var slot: Int
    package var report: Scheduler.Report
    /// Seconds since the epoch; nil for a step handed back unstarted.
    package var start: Double?
    package var end: Double?
    package var logPath: String?

    package init(id: StepID, rank: Int, slot: Int, report: Scheduler.Report, start: Double?, end: Double?, logPath: String?) {
        self.id = id
        self.rank = rank
        self.slot = slot
        self.report = report
        self.start = start
        self.end = end
        self.logPath = logPath
    }
}

/// A rank's note that a step it was sent has started (until then it may be waiting in the rank's queue).
package struct StepStart: Sendable, Equatable {
    package var id: StepID
    package var rank: Int
    package var slot: Int
    /// Seconds since the epoch.
    package var start: Double

    package init(id: StepID, rank: Int, slot: Int, start: Double) {
        self.id = id
        self.rank = rank
        self.slot = slot
        self.start = start
    }
}

/// A graph edit asked for by a running step, on its way to rank 0.
package struct StepRequest: Sendable, Equatable {
    package var from: StepID
    package var edit: GraphEdit

    package init(from: StepID, edit: GraphEdit) {
        self.from = from
        self.edit = edit
    }
}

/// Where rank 0's answer to a `StepRequest` goes.
package enum ReplyAddress: Sendable {
    /// A step in this process waits on this slot.
    case local(ReplySlot)
    /// A step on another rank waits for the answer tagged `token`.
    case remote(rank: Int, token: UInt32)

    /// The rank that asked, when it is another process.
    package var rank: Int? {
        if case .remote(let rank, _) = self { return rank }
        return nil
    }
}

/// Rank 0's answer to a graph edit: the new id (for an insert), or why it was refused.
package typealias EditResult = Result<StepID?, GraphEditError>

/// A one-shot slot a step thread blocks on until rank 0 answers its request.
package final class ReplySlot: Sendable {
    private let value = Mutex<EditResult?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    package init() {}

    package func fill(_ result: EditResult) {
        value.withLock { $0 = result }
        ready.signal()
    }

    package func wait() -> EditResult {
        ready.wait()
        return value.withLock { $0! }
    }
}

/// What reaches rank 0's coordinator from the ranks (itself included).
package enum RankEvent: Sendable {
    case started(StepStart)
    case ended(StepOutcome)
    case request(StepRequest, replyTo: ReplyAddress)
    /// A rank sent something rank 0 cannot use (a malformed message): the run cannot go on.
    case broken(rank: Int?, message: String)
    /// A rank answered `checkAlive`.
    case alive(rank: Int)
}

/// How rank 0's coordinator reaches the ranks. Two implementations share the engine and its tests:
/// `LocalTransport` (every rank in this process) and the MPI transport (one rank per process).
package protocol CoordinatorTransport: AnyObject, Sendable {
    /// The number of ranks, rank 0 included.
    var rankCount: Int { get }
    /// Sends steps to a rank's workers.
    func assign(_ steps: [StepAssignment], to rank: Int)
    /// Asks every rank to hand back the steps it was sent but has not started (they come back as
    /// `.notStarted`).
    func takeBackUnstarted()
    /// Asks `rank` to hand back these steps if it has not started them (they come back as
    /// `.notStarted`; a step already started reports `.started` as usual).
    func takeBack(_ steps: [StepID], from rank: Int)
    /// Asks these ranks to show they are alive: each that is answers with an `.alive` event.
    func checkAlive(_ ranks: [Int])
    /// Ranks rank 0 has not heard from (not even a heartbeat) for longer than `timeout`.
    func silentRanks(longerThan timeout: Duration) -> [Int]
    /// A rank's host name, when known, for messages about it.
    func host(of rank: Int) -> String?
    /// Answers a running step's graph edit.
    func reply(_ result: EditResult, to address: ReplyAddress)
    /// Waits up to `timeout` for events and returns those that arrived (possibly none).
    func nextEvents(timeout: Duration) -> [RankEvent]
    /// Ends every rank's workers after the run; returns when they have stopped.
    func shutdown()
    /// Ends every rank at once after a signal, without waiting for running steps (they are `aborted`).
    func abort()
}

/// A running step's way to rank 0: it sends a graph edit and blocks until rank 0 answers.
package protocol StepRequestChannel: Sendable {
    func send(_ request: StepRequest) -> EditResult
}

/// The graph editor a running step uses: every edit goes to rank 0 through the channel.
struct ChannelEditor: GraphEditor {
    let channel: any StepRequestChannel

    func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
        guard let from = inserter.stepID else { throw GraphEditError("only a running step edits through a channel") }
        return try channel.send(StepRequest(from: from, edit: edit)).get()
    }
}

/// Events from worker threads to the loop that forwards them, with a wake-up for a loop that waits.
package final class EventQueue<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])
    private let wakeUp = DispatchSemaphore(value: 0)
    private let sleeping = Atomic<Bool>(false)

    package init() {}

    package func push(_ element: Element) {
        items.withLock { $0.append(element) }
        // One signal per sleep: the first push after the waiter went to sleep wakes it.
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) { wakeUp.signal() }
    }

    /// Everything queued, without waiting.
    package func drain() -> [Element] {
        items.withLock { items in
            if items.isEmpty { return [] }
            var out: [Element] = []
            swap(&out, &items)
            return out
        }
    }

    /// Everything queued, waiting up to `timeout` for the first element.
    package func drain(waitingUpTo timeout: Duration) -> [Element] {
        let now = drain()
        if !now.isEmpty || timeout <= .zero { return now }
        sleeping.store(true, ordering: .sequentiallyConsistent)
        // A push between the drain above and the store would not signal: look once more.
        let raced = drain()
        if !raced.isEmpty {
            sleeping.store(false, ordering: .sequentiallyConsistent)
            return raced
        }
        let nanos = Int(timeout.components.seconds) * 1_000_000_000 + Int(timeout.components.attoseconds / 1_000_000_000)
        if wakeUp.wait(timeout: .now() + .nanoseconds(nanos)) == .timedOut,
           !sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            // A push cleared the flag and is about to signal: take that signal now, not on the next wait.
            wakeUp.wait()
        }
        return drain()
    }
}
