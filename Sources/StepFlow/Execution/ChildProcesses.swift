import Foundation
import Synchronization

/// A flag a running step polls to learn that the run was stopped (a signal, a time limit).
public final class Cancellation: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public var isCancelled: Bool { flag.load(ordering: .acquiring) }

    public func cancel() { flag.store(true, ordering: .releasing) }
}

/// The process groups that steps of this process started (commands), so that none outlives the rank:
/// a stopped run ends them before the process exits.
public enum ChildProcesses {
    private static let groups = Mutex<Set<pid_t>>([])

    /// Records a process group a step started.
    public static func add(_ group: pid_t) { groups.withLock { _ = $0.insert(group) } }

    /// Forgets a process group that ended.
    public static func remove(_ group: pid_t) { groups.withLock { _ = $0.remove(group) } }

    /// The groups still recorded.
    public static var live: Set<pid_t> { groups.withLock { $0 } }

    /// Ends every recorded group: SIGTERM, then SIGKILL for those still there after `grace`.
    /// Returns once none is left or after the SIGKILL.
    public static func terminateAll(grace: Duration = .seconds(2)) {
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
