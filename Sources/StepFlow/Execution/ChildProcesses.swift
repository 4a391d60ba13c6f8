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
    /// Returns once none is left, or a second after the SIGKILL. Groups that are gone are forgotten.
    package static func terminateAll(grace: Duration = .seconds(2)) {
        let all = live
        guard !all.isEmpty else { return }
        for g in all { kill(-g, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, all.contains(where: isAlive) { usleep(20_000) }
        let left = all.filter(isAlive)
        for g in left { kill(-g, SIGKILL) }
        let killDeadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < killDeadline, left.contains(where: isAlive) { usleep(20_000) }
        for g in all where !isAlive(g) { remove(g) }
    }

    /// Ends one group: SIGTERM, then SIGKILL to what is left after `grace`. Returns whether the
    /// group is gone (a process stuck in the kernel can outlive even SIGKILL for a while).
    package static func end(_ group: pid_t, grace: Duration) -> Bool {
        guard isAlive(group) else { return true }
        kill(-group, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if !isAlive(group) { return true }
            usleep(20_000)
        }
        kill(-group, SIGKILL)
        let killDeadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < killDeadline {
            if !isAlive(group) { return true }
            usleep(20_000)
        }
        return false
    }

    /// Whether process group `group` has a member that is not a zombie. A zombie is dead already, and
    /// one whose new parent never reaps it (PID 1 in some containers) would otherwise look alive forever.
    package static func isAlive(_ group: pid_t) -> Bool {
        guard kill(-group, 0) == 0 else { return false }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return true }
        for name in entries {
            guard let pid = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // After the command name: state ppid pgrp …
            let fields = stat[stat.index(after: close)...].split(separator: " ", maxSplits: 4)
            if fields.count > 2, pid_t(fields[2]) == group, fields[0] != "Z", pid > 0 { return true }
        }
        return false
    }
}
