import Foundation
import Synchronization

/// A flag a running step polls to learn that the run was stopped (a signal, a time limit).
package final class Cancellation: Sendable {
    private let flag = Atomic<Bool>(false)

    package init() {}

    package var isCancelled: Bool { flag.load(ordering: .acquiring) }

    package func cancel() { flag.store(true, ordering: .releasing) }
}

/// The process groups that steps of this process started (commands), so that none outlives the rank:
/// a stopped run ends them before the process exits.
package enum ChildProcesses {
    private static let groups = Mutex<Set<pid_t>>([])

    /// Records a process group a step started.
    package static func add(_ group: pid_t) { groups.withLock { _ = $0.insert(group) } }

    /// Forgets a process group that ended.
    package static func remove(_ group: pid_t) { groups.withLock { _ = $0.remove(group) } }

    /// The groups still recorded.
    package static var live: Set<pid_t> { groups.withLock { $0 } }

    /// Ends every recorded group: SIGTERM, then SIGKILL for those still there after `grace`.
    /// Returns once none is left or after the SIGKILL.
    package static func terminateAll(grace: Duration = .seconds(2)) {
        let all = live
        guard !all.isEmpty else { return }
        for g in all { kill(-g, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if all.allSatisfy({ kill(-$0, 0) != 0 }) { return }
            usleep(20_000)
        }
        for g in all { kill(-g, SIGKILL) }
    }
}
