import Foundation
import StepFlow

/// The benchmark's arithmetic, free of MPI and I/O, so each figure's definition is in one place.
enum BenchFigures {
    /// The shortest possible wall time of `steps` steps of `work` seconds each on `slots` slots
    /// (M ranks × T threads), with no overhead: what `makespan_over_ideal` divides by.
    /// For `mixed` (`longWork` every other step) it is a lower bound: all the work spread evenly, or
    /// the longest step, whichever is longer.
    static func idealMakespan(shape: BenchShape, steps: Int, slots: Double, work: Double, longWork: Double = 0) -> Double {
        switch shape {
        case .mixed:
            let long = Double((steps + 1) / 2), short = Double(steps / 2)
            return max((long * longWork + short * work) / slots, steps > 0 ? longWork : 0, steps > 1 ? work : 0)
        case .chain: return Double(steps) * work
        case .diamond: return 2 * work + (Double(max(steps - 2, 0)) / slots).rounded(.up) * work
        case .idle: return work
        case .independent, .random: return (Double(steps) / slots).rounded(.up) * work
        }
    }

    /// The middle value (the mean of the two middle ones for an even count); nil for none.
    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// What the run database costs in throughput, as a fraction: 1 − (steps/s with the store) ÷
    /// (steps/s without it). 0.25 means the store makes the run 25 % slower; a small negative value
    /// is noise (the store-on run happened to be faster). Nil when either rate is not positive.
    static func storeCost(stepsPerSecondWithStore on: Double, withoutStore off: Double) -> Double? {
        guard on > 0, off > 0, on.isFinite, off.isFinite else { return nil }
        return 1 - on / off
    }

    /// Rank 0's memory growth per step: (peak − baseline) ÷ steps, in bytes. The baseline is rank 0's
    /// resident memory just before the run, so start-up, MPI's buffers and the raw measurement
    /// are not charged to the steps.
    static func bytesPerStepAboveBaseline(peak: Int, baseline: Int, steps: Int) -> Double {
        Double(peak - baseline) / Double(max(steps, 1))
    }

    /// The idle run's wake-up: how long after the sleeping step ended the step waiting for it started.
    struct WakeUp: Equatable, Sendable {
        /// From the sleeping step's `end` to the next step's `start`.
        let microseconds: Double
        /// The rank the sleeping step ran on, and the rank the next step ran on (nil: not recorded).
        let fromRank: Int?, toRank: Int?
        /// When the sleeping step started and ended (seconds since the epoch): the idle window.
        let sleepStart: Double, sleepEnd: Double
    }

    /// The wake-up of the idle run from its records, found by id (`BenchProtocol.idleSleeperID` and
    /// `idleWakeID`) rather than by position; nil when either step did not run.
    static func wakeUp(_ records: [StepRecord]) -> WakeUp? {
        guard let sleeper = records.first(where: { $0.id == BenchProtocol.idleSleeperID }),
              let next = records.first(where: { $0.id == BenchProtocol.idleWakeID }),
              next.prerequisites.contains(sleeper.id),
              let sleepStart = sleeper.start, let sleepEnd = sleeper.end, let nextStart = next.start
        else { return nil }
        return WakeUp(microseconds: (nextStart - sleepEnd) * 1e6, fromRank: sleeper.rank, toRank: next.rank,
                      sleepStart: sleepStart, sleepEnd: sleepEnd)
    }

    /// The share of a core this process used between `from` and `to` (seconds since the epoch),
    /// from the first reading at or after `from` to the last at or before `to`; nil when those two
    /// are less than `minimumSpan` seconds apart (too few readings in the window).
    static func cpuShare(_ readings: [BenchSample], from: Double, to: Double, minimumSpan: Double) -> Double? {
        guard let first = readings.first(where: { $0.time >= from }),
              let last = readings.last(where: { $0.time <= to }),
              last.time - first.time >= minimumSpan
        else { return nil }
        return (last.cpuSeconds - first.cpuSeconds) / (last.time - first.time)
    }

    /// The largest resident memory read between `from` and `to`; nil without a reading there.
    static func peakRSS(_ readings: [BenchSample], from: Double, to: Double) -> Int? {
        readings.lazy.filter { $0.time >= from && $0.time <= to }.compactMap(\.rssBytes).max()
    }
}
