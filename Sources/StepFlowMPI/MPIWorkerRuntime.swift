import Foundation
import StepFlow
import Synchronization

/// A worker rank (rank > 0): runs the steps rank 0 sends on T workers and sends back results and the
/// graph edits its steps ask for, in the order they happened (S3). Runs on the MPI thread until rank 0
/// says shut down; sleeps with a short adaptive backoff when idle.
package final class MPIWorkerRuntime {
    private let world: MPIWorld
    private let outbox = EventQueue<WireEvent>()
    private let replies = ReplyTable()
    private let messenger = MPIMessenger()
    private let pool: WorkerPool

    package init(world: MPIWorld, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int) {
        self.world = world
        let outbox = self.outbox
        let channel = MPIRequestChannel(outbox: outbox, replies: replies)
        pool = WorkerPool(rank: world.rank, threads: threads, executor: executor, runDirectory: runDirectory, launch: launch,
                          channel: channel, report: { event in
                              switch event {
                              case .started(let start): outbox.push(.started(start))
                              case .ended(let outcome): outbox.push(.ended(outcome))
                              case .request, .broken, .alive: break
                              }
                          })
    }

    /// Serves rank 0 until it sends `shutdown` (or `abort`, after a signal: then running steps are
    /// left behind, as the process is about to end).
    /// How a worker rank's service ended.
    package enum Ending: Sendable { case shutdown, aborted }

    @discardableResult
    package func run() -> Ending {
        var backoff = IdleBackoff()
        var stopping = false
        var aborting = false
        while !stopping {
            var busy = false
            for (_, bytes) in messenger.receiveAll() {
                busy = true
                let events: [WireEvent]
                do {
                    events = try WireCodec.decode(bytes)
                } catch {
                    FileHandle.standardError.write(Data("stepflow rank \(world.rank): \(error)\n".utf8))
                    world.abort(70)
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
                    default: break
                    }
                }
                pool.submit(batch)
            }
            if sendOutbox(outbox.drain()) { busy = true }
            // A rank that has said nothing for a while says it is alive, so rank 0 can tell a quiet
            // rank (its steps are long) from one that stopped (--rank-timeout).
            if ContinuousClock.now - lastSent >= Self.heartbeat { _ = sendOutbox([.alive]) }
            messenger.progressSends()
            if busy {
                backoff.reset()
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
        messenger.flush()
        return .shutdown
    }

    /// How often a quiet rank tells rank 0 it is alive.
    static let heartbeat: Duration = .seconds(1)
    private var lastSent = ContinuousClock.now

    private func sendOutbox(_ events: [WireEvent]) -> Bool {
        guard !events.isEmpty else { return false }
        lastSent = ContinuousClock.now
        messenger.send(WireCodec.encode(events), to: 0)
        return true
    }
}

/// Steps on this rank waiting for rank 0's answer, by token.
final class ReplyTable: Sendable {
    private let slots = Mutex<[UInt32: ReplySlot]>([:])
    private let nextToken = Atomic<UInt32>(1)

    /// A new token and the slot its answer will fill.
    func open() -> (UInt32, ReplySlot) {
        let slot = ReplySlot()
        let token = nextToken.wrappingAdd(1, ordering: .relaxed).oldValue
        slots.withLock { $0[token] = slot }
        return (token, slot)
    }

    func fill(_ token: UInt32, with result: EditResult) {
        slots.withLock { $0.removeValue(forKey: token) }?.fill(result)
    }
}

/// A running step's requests on a worker rank: queued for the MPI thread (after every result and
/// request before it, so rank 0 sees them in order), answered by token.
struct MPIRequestChannel: StepRequestChannel {
    let outbox: EventQueue<WireEvent>
    let replies: ReplyTable

    func send(_ request: StepRequest) -> EditResult {
        let (token, slot) = replies.open()
        outbox.push(.request(token: token, request))
        return slot.wait()
    }
}
