import Foundation

/// A run's started steps laid out in time, one lane per rank and worker slot: what the trace export
/// and the HTML report both draw. Times are seconds from `origin`.
package struct RunTimeline: Sendable {
    /// One worker thread of one rank.
    package struct Lane: Hashable, Comparable, Sendable {
        package var rank: Int
        package var slot: Int

        package init(rank: Int, slot: Int) {
            self.rank = rank
            self.slot = slot
        }

        package static func < (a: Lane, b: Lane) -> Bool { (a.rank, a.slot) < (b.rank, b.slot) }
    }

    /// One started step.
    package struct Slice: Sendable {
        /// The step's index in `StoredRun.steps`.
        package var index: Int
        package var id: StepID
        package var lane: Lane
        package var status: StepStatus
        /// Seconds from the timeline's origin.
        package var start: Double
        package var end: Double
        /// False when the database has no end for the step (its launch died, or the run is live): the
        /// slice is drawn up to the run's last known time.
        package var endKnown: Bool

        package var duration: Double { end - start }
    }

    /// Seconds since the epoch at time 0: the earliest of the run's start and its steps' starts (a
    /// continued run keeps steps that started before its latest launch).
    package let origin: Double
    /// Seconds from the origin to the last known time of the run.
    package let span: Double
    /// Every lane some started step ran on, in rank then slot order.
    package let lanes: [Lane]
    /// Every step that started, in id order.
    package let slices: [Slice]
    /// The slice of each step, by index in `StoredRun.steps` (nil: never started).
    package let sliceOfStep: [Int?]

    /// Lays out every step of `run` that has a start time; steps that never started have no slice.
    package init(_ run: StoredRun) {
        let starts = run.steps.compactMap(\.start)
        let origin = min(starts.min() ?? run.started ?? 0, run.started ?? .infinity)
        var last = run.ended ?? origin
        for r in run.steps {
            if let s = r.start { last = max(last, s) }
            if let e = r.end { last = max(last, e) }
        }
        var slices: [Slice] = []
        var sliceOfStep = [Int?](repeating: nil, count: run.steps.count)
        var lanes = Set<Lane>()
        for (i, r) in run.steps.enumerated() {
            guard let s = r.start else { continue }
            // A started step always has both; -1 keeps a damaged row visible instead of dropping it.
            let lane = Lane(rank: r.rank ?? -1, slot: r.slot ?? -1)
            lanes.insert(lane)
            // Clocks of different nodes can disagree: never draw an end before its start.
            let end = max(r.end ?? last, s)
            sliceOfStep[i] = slices.count
            slices.append(Slice(index: i, id: r.id, lane: lane, status: r.status, start: s - origin, end: end - origin,
                                endKnown: r.end != nil))
        }
        self.origin = origin
        self.span = max(last - origin, 0)
        self.lanes = lanes.sorted()
        self.slices = slices
        self.sliceOfStep = sliceOfStep
    }

    /// The critical path: the chain of prerequisites ending at the last step to end, chosen among all
    /// such chains as the one whose steps' durations add up to the most (ties go to the prerequisite
    /// that ended last, the one the step most likely waited for). A step inserted at run time counts
    /// its inserter as a prerequisite too: it could not run before its inserter made it. Step indexes
    /// in `run.steps`, first step first; empty when no step started.
    package func criticalPath(_ run: StoredRun) -> [Int] {
        guard let last = slices.max(by: { ($0.end, -$0.index) < ($1.end, -$1.index) }) else { return [] }
        // A dictionary, not an array indexed by id: a damaged database's huge id must not size memory.
        var indexOfID: [StepID: Int] = [:]
        indexOfID.reserveCapacity(run.steps.count)
        for (i, r) in run.steps.enumerated() { indexOfID[r.id] = i }
        func duration(_ i: Int) -> Double { sliceOfStep[i].map { slices[$0].duration } ?? 0 }
        func endTime(_ i: Int) -> Double { sliceOfStep[i].map { slices[$0].end } ?? -.infinity }
        func prerequisites(_ i: Int) -> [Int] {
            var ids = run.steps[i].prerequisites
            if let inserter = run.steps[i].insertedBy.stepID { ids.append(inserter) }
            return ids.compactMap { indexOfID[$0] }
        }
        // Longest chain ending at each step, by an explicit stack: a 20,000-step chain would overflow a
        // thread's stack if this recursed.
        var best = [Double](repeating: .nan, count: run.steps.count)
        var next = [Int](repeating: -1, count: run.steps.count)
        var onStack = [Bool](repeating: false, count: run.steps.count)
        var stack: [(step: Int, expanded: Bool)] = [(last.index, false)]
        while let top = stack.popLast() {
            let (i, expanded) = top
            if !best[i].isNaN || (!expanded && onStack[i]) { continue }
            if expanded {
                var chosen = -1
                var chosenLength = 0.0
                for p in prerequisites(i) where !best[p].isNaN {
                    if chosen < 0 || best[p] > chosenLength || (best[p] == chosenLength && endTime(p) > endTime(chosen)) {
                        chosen = p
                        chosenLength = best[p]
                    }
                }
                best[i] = duration(i) + chosenLength
                next[i] = chosen
                onStack[i] = false
                continue
            }
            onStack[i] = true
            stack.append((i, true))
            // A cycle cannot be in a valid graph; a damaged database must not loop forever.
            for p in prerequisites(i) where best[p].isNaN && !onStack[p] { stack.append((p, false)) }
        }
        var chain: [Int] = []
        var i = last.index
        while i >= 0 && chain.count <= run.steps.count {
            chain.append(i)
            i = next[i]
        }
        return chain.reversed()
    }
}
