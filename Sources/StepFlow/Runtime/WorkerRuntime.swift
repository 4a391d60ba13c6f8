import Foundation

/// A worker rank (rank > 0): runs the steps rank 0 sends on its T workers and sends back what happened
/// — started, ended, and the graph edits its steps ask for — in the order it happened (S3). The same
/// code serves `mpirun` (over the MPI messenger) and in-process runs (over `InMemoryNetwork`).
///
/// `run()` is the rank's message loop: it owns the messenger, batches outgoing events into one frame
/// per pass, and sleeps with `IdleBackoff` when there is nothing to do.
package final class WorkerRuntime {
    private let rank: Int
    private let messenger: any Messenger
    private let outbox = EventQueue<FromRank>()
    private let replies = ReplyTable()
    private let pool: WorkerPool
    /// How far back a step's end looks for its start in a batch (`FromRank.startsOfEndedSteps`).
    private let pairingWindow: Int

    /// How a worker rank's service ended.
    package enum Ending: Sendable, Equatable {
        /// Rank 0 said the run is over; every step this rank started has been reported.
        case shutdown
        /// Rank 0 stopped the run at once (a signal): running steps are left behind.
        case aborted
        /// Rank 0 sent a frame this rank cannot read: the ranks do not run the same build.
        case unreadable(String)
    }

    package init(rank: Int, messenger: any Messenger, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int) {
        self.rank = rank
        self.messenger = messenger
        pairingWindow = FromRank.startPairingWindow(threads: threads)
        let outbox = self.outbox
        let loop = WeakReference<WorkerRuntime>()
        pool = WorkerPool(rank: rank, threads: threads, executor: executor, runDirectory: runDirectory, launch: launch,
                          inlineOwner: true, serveOwnerLoop: { loop.target?.serveWhileInline() ?? false },
                          channel: TokenRequestChannel(replies: replies, push: { outbox.push($0) }), report: { outbox.push($0) })
        messenger.notifyOnArrival { [outbox] in outbox.wake() }
        // The runtime holds the pool, so the pool reaches the runtime's loop weakly.
        loop.target = self
    }

    /// Set by a pass that read `shutdown` or `abort`, or a frame it could not read.
    private var stopping = false
    private var aborting = false
    private var unreadable: String?

    /// Serves rank 0 until it sends `shutdown` or `abort`.
    @discardableResult
    package func run() -> Ending {
        var backoff = IdleBackoff()
        while !stopping {
            var busy = pass()
            if let unreadable { return .unreadable(unreadable) }
            // Short steps run here, for up to `inlineBatch` before rank 0's messages are read again,
            // and their ends go out at once, in one frame.
            if !stopping, pool.runInline(upTo: WorkerPool.inlineBatch) {
                busy = true
                _ = sendOutbox(outbox.drain())
            }
            if let unreadable { return .unreadable(unreadable) }
            if busy {
                backoff.reset()
            } else if pool.isSaturated {
                // Every slot runs a step: sleep until one reports (its end wakes the outbox).
                if sendOutbox(outbox.drain(waitingUpTo: IdleBackoff.saturatedSleep)) { backoff.reset() }
            } else {
                let pause = backoff.next()
                if pause == .zero {
                    sched_yield()
                } else if sendOutbox(outbox.drain(waitingUpTo: pause)) {
                    backoff.reset()
                }
            }
        }
        if aborting {
            pool.stopLaunching()
            return .aborted
        }
        pool.shutdown()
        _ = sendOutbox(outbox.drain())
        messenger.flush(within: nil)
        return .shutdown
    }

    /// One pass of the loop, less running a step: takes in what rank 0 sent, sends what the workers
    /// reported, keeps the heartbeat. Returns whether anything happened.
    private func pass() -> Bool {
        var busy = false
        for (_, bytes) in messenger.receiveAll() {
            busy = true
            let events: [ToRank]
            do {
                events = try WireCodec.decode(bytes, as: ToRank.self)
            } catch {
                pool.stopLaunching()
                unreadable = "rank \(rank) cannot read a message from rank 0: \(error)"
                stopping = true
                return true
            }
            var batch: [StepAssignment] = []
            for e in events {
                switch e {
                case .assign(let step): batch.append(step)
                case .takeBackUnstarted:
                    pool.submit(batch)
                    batch.removeAll()
                    pool.takeBackUnstarted()
                case .takeBack(let ids):
                    pool.submit(batch)
                    batch.removeAll()
                    pool.takeBack(ids)
                case .reply(let token, let result):
                    replies.fill(token, with: result)
                case .ping:
                    outbox.push(.alive)
                case .shutdown: stopping = true
                case .abort:
                    stopping = true
                    aborting = true
                }
            }
            pool.submit(batch)
        }
        if sendOutbox(outbox.drain()) { busy = true }
        // A rank that has said nothing for a while says it is alive, so rank 0 can tell a quiet
        // rank (its steps are long) from one that stopped (--rank-timeout).
        if ContinuousClock.now - lastSent >= Self.heartbeat { _ = sendOutbox([.alive]) }
        messenger.progressSends()
        return busy
    }

    /// A pass for a step run inline that waits for rank 0's answer (on this loop's thread); false once
    /// the run stopped (the answer will not come).
    private func serveWhileInline() -> Bool {
        _ = pass()
        return !aborting && unreadable == nil
    }

    /// How often a quiet rank tells rank 0 it is alive.
    package static let heartbeat: Duration = .seconds(1)
    private var lastSent = ContinuousClock.now

    private func sendOutbox(_ events: [FromRank]) -> Bool {
        guard !events.isEmpty else { return false }
        lastSent = ContinuousClock.now
        messenger.send(WireCodec.encode(events, skipping: FromRank.startsOfEndedSteps(in: events, window: pairingWindow)), to: 0)
        return true
    }
}
