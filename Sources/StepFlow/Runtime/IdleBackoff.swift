import Foundation

/// How long a rank's message loop waits when it finds nothing to do. Measured on 2-core VMs (and by the
/// benchmark's idle line): every wake-up of a sleeping thread costs ~30 µs of CPU on these VMs, so a
/// 200 µs sleep costs ~11% of a core and a 1 ms sleep ~4%. Hence three stages:
/// - right after activity, poll without sleeping for `spinWindow`: the next message of a busy run
///   (a chain's next link) usually comes within microseconds;
/// - then sleep 10 µs, doubling up to `activeSleep` (200 µs): wakes within 200 µs;
/// - after `longIdle` (20 ms) without activity, sleep `idleSleep` (1 ms): a rank with nothing to do stays
///   under 5% of a core, and wakes within a millisecond.
package struct IdleBackoff: Sendable {
    /// `STEPFLOW_SPIN_US` overrides it (to measure what polling costs ranks that share cores).
    package static let spinWindow: Duration = .microseconds(
        ProcessInfo.processInfo.environment["STEPFLOW_SPIN_US"].flatMap { Int($0) }.map { max($0, 0) } ?? 100)
    package static let activeSleep: Duration = .microseconds(200)
    /// How long a rank whose slots all run steps sleeps between looks at MPI: nothing it could receive
    /// would start before a step ends, and a step's end wakes it at once. Measured: a worker rank
    /// waking every 200 µs beside a compute-bound step took ~15% of its core (each wake-up of a
    /// sleeping thread costs ~30 µs on these VMs), and Task Bench's efficiency with it.
    /// `STEPFLOW_SATURATED_SLEEP_US` overrides it.
    package static let saturatedSleep: Duration = .microseconds(
        ProcessInfo.processInfo.environment["STEPFLOW_SATURATED_SLEEP_US"].flatMap { Int($0) }.map { max($0, 10) } ?? 2000)
    package static let longIdle: Duration = .milliseconds(20)
    /// `STEPFLOW_IDLE_SLEEP_US` overrides it (to measure the trade-off between idle CPU and wake-up).
    package static let idleSleep: Duration = .microseconds(
        ProcessInfo.processInfo.environment["STEPFLOW_IDLE_SLEEP_US"].flatMap { Int($0) }.map { max($0, 10) } ?? 1000)

    private var idleSince: ContinuousClock.Instant?
    private var sleep: Duration = .zero

    package init() {}

    /// Something happened: start over with polling.
    package mutating func reset() {
        idleSince = nil
        sleep = .zero
    }

    /// How long to wait now, having found nothing again.
    package mutating func next() -> Duration {
        let now = ContinuousClock.now
        guard let since = idleSince else {
            idleSince = now
            return .zero
        }
        let idle = now - since
        if idle < Self.spinWindow { return .zero }
        if idle >= Self.longIdle { return Self.idleSleep }
        sleep = sleep == .zero ? .microseconds(10) : min(sleep * 2, Self.activeSleep)
        return sleep
    }

    /// Waits as `next()` says (yielding the core while polling).
    package mutating func pause() {
        let d = next()
        if d > .zero {
            usleep(UInt32(d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000))
        } else {
            sched_yield()
        }
    }
}
