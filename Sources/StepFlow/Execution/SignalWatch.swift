import Foundation
import Synchronization

/// SIGINT and SIGTERM as a flag the coordinator polls (S10): the handler only stores the signal
/// number and its time, which is all a signal handler may safely do, or ends the process.
package enum SignalWatch {
    private static let pending = Atomic<Int32>(0)
    /// CLOCK_MONOTONIC nanoseconds of the first signal; 0 until it is stored.
    private static let firstAt = Atomic<Int64>(0)
    /// A repeat sooner than this is the same stop reaching the process by a second path (Slurm signals
    /// every task and srun forwards the batch script's signal too); a later one is a user who will not
    /// wait for the abort, so the process exits at once.
    private static let repeatWindowNanoseconds: Int64 = 500_000_000

    /// Catches SIGINT and SIGTERM on rank 0; the run stops launching and ends `aborted`. A second
    /// signal half a second or more after the first exits at once with 128+signal, committing nothing
    /// more: for a run that does not get to its abort (stuck in setup, a hook, a slow database).
    package static func install() {
        signal(SIGINT) { SignalWatch.handle($0) }
        signal(SIGTERM) { SignalWatch.handle($0) }
        // A launcher may hand down a mask that blocks them (a program spawned from a thread that
        // blocks signals inherits its mask); threads started from here on inherit this one.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The handler: only atomics, clock_gettime and _exit, all async-signal-safe.
    private static func handle(_ signal: Int32) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nanoseconds = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        if pending.compareExchange(expected: 0, desired: signal, ordering: .relaxed).exchanged {
            firstAt.store(nanoseconds, ordering: .relaxed)
            return
        }
        // 0: the first handler, on another thread, has not stored its time yet; a repeat that close is
        // a duplicate.
        let first = firstAt.load(ordering: .relaxed)
        if first != 0, nanoseconds - first >= repeatWindowNanoseconds { _exit(128 + signal) }
    }

    /// On worker ranks: mpirun and Slurm send the signal to every rank, but only rank 0 decides;
    /// it tells the workers to stop once the database is flushed.
    package static func ignoreOnWorker() {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
    }

    /// The signal received, or nil.
    package static var received: Int32? {
        let s = pending.load(ordering: .relaxed)
        return s == 0 ? nil : s
    }

    /// For tests: forget a received signal.
    package static func reset() {
        pending.store(0, ordering: .relaxed)
        firstAt.store(0, ordering: .relaxed)
    }
}

/// Where the coordinator hands step records to be kept (the run database), behind the run.
package protocol RunJournal: Sendable {
    /// Queues records to be committed in order.
    func record(_ steps: [StepRecord])
    /// Queues a pull: when the journal writes it, it calls `changes` once and commits what it returns.
    /// `changes` takes the steps changed since its last call and copies their records in one go (one
    /// lock hold), so every commit is a state the run was in: a step is never recorded finished
    /// without the steps it inserted or released. Pulling when written, not when queued, keeps one
    /// copy of the changed records at a time instead of one per queued batch.
    func record(pulling changes: @escaping ChangeSource)
    /// Waits until everything queued is committed; returns the failure to report, if any.
    @discardableResult func sync() -> String?
}

/// Takes the steps changed since its last call and shows `visit` each one's record in place, as the
/// steps all were at one moment (under the scheduler's lock, taken for a chunk of steps at a time:
/// `visit` must be quick and keep no pointer); called on the journal's own thread. In place: copying
/// the records cost more than the journal's use of them.
package typealias ChangeSource = @Sendable (_ visit: (UnsafePointer<StepRecord>) -> Void) -> Void

extension RunStore: RunJournal {}
