import Foundation
import Synchronization

/// SIGINT and SIGTERM as a flag the coordinator polls (S10): the handler only stores the signal
/// number, which is all a signal handler may safely do.
public enum SignalWatch {
    private static let pending = Atomic<Int32>(0)

    /// Catches SIGINT and SIGTERM on rank 0; the run stops launching and ends `aborted`.
    public static func install() {
        signal(SIGINT) { SignalWatch.pending.store($0, ordering: .relaxed) }
        signal(SIGTERM) { SignalWatch.pending.store($0, ordering: .relaxed) }
        // A launcher may hand down a mask that blocks them (a program spawned from a thread that
        // blocks signals inherits its mask); threads started from here on inherit this one.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// On worker ranks: mpirun and Slurm send the signal to every rank, but only rank 0 decides;
    /// it tells the workers to stop once the database is flushed.
    public static func ignoreOnWorker() {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
    }

    /// The signal received, or nil.
    public static var received: Int32? {
        let s = pending.load(ordering: .relaxed)
        return s == 0 ? nil : s
    }

    /// For tests: forget a received signal.
    public static func reset() { pending.store(0, ordering: .relaxed) }
}

/// Where the coordinator hands step records to be kept (the run database), behind the run.
public protocol RunJournal: Sendable {
    /// Queues records to be committed in order.
    func record(_ steps: [StepRecord])
    /// Waits until everything queued is committed; returns the failure to report, if any.
    @discardableResult func sync() -> String?
}

extension RunStore: RunJournal {}
