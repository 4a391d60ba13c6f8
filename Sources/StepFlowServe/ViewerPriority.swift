import Foundation

/// The lowest CPU priority for a live viewer (`top`, `serve`): on a machine the run shares, a viewer
/// gets only what the run leaves and catches up when it can. On Linux a thread's nice value is its
/// own, and libdispatch gives its worker threads nice values from their QoS (−2 for
/// user-initiated, as root), so one `setpriority` at start left the threads that do the work above
/// the run's ranks: serve, following a million steps a second, took 15 % of the run's throughput.
package enum ViewerPriority {
    private static let lowest: Int32 = 19

    /// Every thread of the process, now, and the ones they start later (which inherit it).
    package static func lowerEveryThread() {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        for tid in tasks.compactMap({ id_t($0) }) {
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid, lowest)
        }
        lowerThisThread()
    }

    /// The calling thread (Linux reads `who` 0 as the calling thread, not the process): a pool thread about to do a viewer's work (a pool may have started it
    /// with another priority).
    package static func lowerThisThread() {
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, lowest)
    }
}
