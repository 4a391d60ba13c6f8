import Foundation

/// One Task Bench task graph (Slaughter et al., SC20; StanfordLegion/task-bench): `timesteps` rows of
/// up to `maxWidth` points, each task depending on points of the row before by its dependence type,
/// running a kernel and writing `outputBytes` for its dependents. Written from Task Bench's published
/// definitions (core.cc, core_kernel.cc); the totals match Task Bench's for the same flags.
package struct TaskBenchGraph: Sendable, Equatable {
    /// How tasks of one timestep depend on the points of the one before.
    package enum Dependence: String, CaseIterable, Sendable {
        case trivial, no_comm, stencil_1d, stencil_1d_periodic, dom, tree, fft, all_to_all, nearest, spread, random_nearest, random_spread

        /// Only these take `-period` (and need one).
        var needsPeriod: Bool { self == .spread || self == .random_nearest }
    }

    /// What each task runs.
    package enum KernelType: String, CaseIterable, Sendable {
        case empty, busy_wait, memory_bound, compute_dgemm, memory_daxpy, compute_bound, compute_bound2, io_bound, load_imbalance
    }

    /// The graph's place among `-and` graphs: it enters the random draws.
    package var index = 0
    package var timesteps = 4
    package var maxWidth = 4
    package var dependence = Dependence.trivial
    package var radix = 3
    /// -1 until resolved: 3 for the types that need one, else 0.
    package var period = -1
    package var fraction = 0.25
    package var kernel = KernelType.empty
    package var iterations = 0
    package var samples = 16
    package var imbalance = 0.0
    package var outputBytes = 16
    package var scratchBytes = 0

    package init(index: Int = 0) { self.index = index }

    /// The first point of timestep `t` (0 before the first timestep).
    package func offset(_ t: Int) -> Int {
        guard t >= 0 else { return 0 }
        return dependence == .dom ? max(0, t + maxWidth - timesteps) : 0
    }

    /// How many points timestep `t` has (0 before the first timestep).
    package func width(_ t: Int) -> Int {
        guard t >= 0 else { return 0 }
        switch dependence {
        case .dom: return min(maxWidth, min(t + 1, timesteps - t))
        case .tree: return min(maxWidth, 1 << min(t, 62))
        default: return maxWidth
        }
    }

    /// The live points of timestep `t`.
    package func points(_ t: Int) -> Range<Int> { offset(t)..<(offset(t) + width(t)) }

    /// How many dependence sets the graph cycles through.
    package var maxDependenceSets: Int {
        switch dependence {
        case .fft: return Int(ceil(log2(Double(maxWidth))))
        case .spread, .random_nearest, .random_spread: return period
        default: return 1
        }
    }

    /// The dependence set of timestep `t`.
    package func dependenceSet(_ t: Int) -> Int {
        switch dependence {
        case .fft:
            let m = maxDependenceSets
            return (t + m - 1) % m
        case .spread, .random_nearest, .random_spread: return t % period
        default: return 0
        }
    }

    /// The points of the timestep before that task (t, `point`) reads, as inclusive intervals in Task
    /// Bench's order (which is also the order of its inputs); points outside that timestep's live
    /// range are not dependencies (`inputs` drops them).
    package func dependencies(set dset: Int, point p: Int) -> [ClosedRange<Int>] {
        let w = maxWidth, r = radix
        switch dependence {
        case .trivial, .random_spread: return []
        case .no_comm: return [p...p]
        case .stencil_1d: return [max(0, p - 1)...min(p + 1, w - 1)]
        case .stencil_1d_periodic:
            var d = [max(0, p - 1)...min(p + 1, w - 1)]
            if p - 1 < 0 { d.append((w - 1)...(w - 1)) }
            if p + 1 >= w { d.append(0...0) }
            return d
        case .dom: return [max(0, p - 1)...p]
        case .tree: return [(p / 2)...(p / 2)]
        case .fft:
            let s = 1 << dset
            var d: [ClosedRange<Int>] = []
            if p - s >= 0 { d.append((p - s)...(p - s)) }
            d.append(p...p)
            if p + s < w { d.append((p + s)...(p + s)) }
            return d
        case .all_to_all: return [0...(w - 1)]
        case .nearest:
            return r > 0 ? [max(0, p - r / 2)...min(p + (r - 1) / 2, w - 1)] : []
        case .spread:
            return (0..<r).map { i in
                let d = (p + i * w / r + (i > 0 ? dset : 0)) % w
                return d...d
            }
        case .random_nearest:
            let lo = max(0, p - r / 2), hi = min(p + (r - 1) / 2, w - 1)
            guard lo <= hi else { return [] }
            var d: [ClosedRange<Int>] = []
            var run = -1
            for i in lo...hi {
                let u = TaskBenchRandom.uniform([index, r, dset, i, p])
                if u < fraction || (r > 0 && i == p) {
                    if run < 0 { run = i }
                } else {
                    if run >= 0 { d.append(run...(i - 1)) }
                    run = -1
                }
            }
            if run >= 0 { d.append(run...hi) }
            return d
        }
    }

    /// The points task (t, `point`) takes inputs from, in its inputs' order: its dependencies inside
    /// the live range of timestep t - 1.
    package func inputs(timestep t: Int, point p: Int) -> [Int] {
        guard t > 0 else { return [] }
        return inputs(set: dependenceSet(t), point: p, among: points(t - 1))
    }

    /// The inputs of a point of dependence set `dset` whose timestep follows one with points `live`.
    package func inputs(set dset: Int, point p: Int, among live: Range<Int>) -> [Int] {
        var out: [Int] = []
        for interval in dependencies(set: dset, point: p) {
            for d in interval where live.contains(d) { out.append(d) }
        }
        return out
    }

    /// `load_imbalance`'s iterations for task (t, p): the graph's iterations scaled by a draw.
    package func imbalanceIterations(timestep t: Int, point p: Int) -> Int {
        let u = TaskBenchRandom.uniform([index, t, p])
        return Int(((1 + (u - 0.5) * imbalance) * Double(iterations)).rounded())
    }

    /// The iterations task (t, p) runs.
    package func iterations(timestep t: Int, point p: Int) -> Int {
        kernel == .load_imbalance ? imbalanceIterations(timestep: t, point: p) : iterations
    }

    /// Floating-point operations task (t, p) counts for (Task Bench's `count_flops_per_task`).
    package func flops(timestep t: Int, point p: Int) -> Int {
        switch kernel {
        case .compute_bound: return 128 * iterations + 64
        case .compute_bound2: return 64 * iterations
        case .load_imbalance: return 128 * imbalanceIterations(timestep: t, point: p) + 64
        case .compute_dgemm:
            let n = Int(Double(scratchBytes / 24).squareRoot())
            return 2 * n * n * n * iterations
        default: return 0
        }
    }

    /// Bytes task (t, p) counts for (Task Bench's `count_bytes_per_task`).
    package func bytes(timestep t: Int, point p: Int) -> Int {
        switch kernel {
        case .memory_bound, .memory_daxpy: return samples > 0 ? scratchBytes * iterations / samples : 0
        default: return 0
        }
    }
}

/// Every task's inputs in a graph (`TaskBenchGraph.inputs`), looked up: by dependence set and point
/// for a timestep after a full-width one (all but dom's and tree's first ones), computed otherwise.
/// Computing them for every task cost ~1,200 instructions of the ~6,000 Task Bench's part of a step
/// took with the empty kernel (callgrind, stencil_1d).
package struct TaskBenchInputs: Sendable {
    private let graph: TaskBenchGraph
    /// By dependence set, then point; empty when the graph has more than `limit` points × sets.
    private let table: [[[Int]]]

    package init(_ graph: TaskBenchGraph, limit: Int = 1 << 16) {
        self.graph = graph
        let sets = graph.maxDependenceSets, w = graph.maxWidth
        table = sets > 0 && sets <= limit / max(w, 1)
            ? (0..<sets).map { dset in (0..<w).map { graph.inputs(set: dset, point: $0, among: 0..<w) } }
            : []
    }

    /// Task (t, p)'s inputs, as `TaskBenchGraph.inputs(timestep:point:)` gives them.
    package func of(timestep t: Int, point p: Int) -> [Int] {
        guard t > 0, !table.isEmpty, graph.width(t - 1) == graph.maxWidth, graph.offset(t - 1) == 0 else {
            return graph.inputs(timestep: t, point: p)
        }
        return table[graph.dependenceSet(t)][p]
    }
}

