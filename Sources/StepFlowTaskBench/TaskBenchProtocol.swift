import ArgumentParser
import Foundation
import StepFlow
import Synchronization

/// Task Bench's graphs as StepFlow steps: every task a step, its dependencies its prerequisites, its
/// output its result (S13), which each dependent checks came from the right producer.
package struct TaskBenchProtocol: StepProtocol {
    package struct Params: ParsableArguments, Sendable {
        @Argument(parsing: .allUnrecognized, help: "Task Bench's flags: -steps -width -type -radix -period -fraction -kernel -iter -output -scratch -sample -imbalance -nodes -and -v.")
        package var flags: [String] = []

        package init() {}
        package init(flags: [String]) { self.flags = flags }
    }

    package static let protocolName = "TaskBench"

    package let params: Params
    package let configuration: TaskBenchConfiguration?
    /// The step of each task: by graph, then timestep, then point minus the timestep's offset. The
    /// same on every rank (every rank inserts the same steps in the same order, S3).
    private var ids: [[[StepID]]] = []
    /// Each graph's tasks' inputs, looked up.
    private var inputs: [TaskBenchInputs] = []
    private let scratch = ScratchPool()

    package init(params: Params) {
        self.params = params
        configuration = try? TaskBenchConfiguration(arguments: params.flags)
    }

    package static let functions: StepFunctions<TaskBenchProtocol> = ["task": { p, step in try p.task(step) }]

    package mutating func insertAllSteps(_ steps: StepInserter) throws {
        guard let configuration else { throw TaskBenchError("the Task Bench flags cannot run (checked before the run)") }
        ids = []
        inputs = []
        for g in configuration.graphs {
            let graphInputs = TaskBenchInputs(g)
            inputs.append(graphInputs)
            var graphIDs: [[StepID]] = []
            graphIDs.reserveCapacity(g.timesteps)
            for t in 0..<g.timesteps {
                var row: [StepID] = []
                row.reserveCapacity(g.width(t))
                for p in g.points(t) {
                    let prerequisites = graphInputs.of(timestep: t, point: p).map { graphIDs[t - 1][$0 - g.offset(t - 1)] }
                    row.append(try steps.insertFunctionStep("task", [.int(g.index), .int(t), .int(p)], prerequisites: prerequisites))
                }
                graphIDs.append(row)
            }
            ids.append(graphIDs)
        }
    }

    /// One task: its inputs from its prerequisites' results, in Task Bench's order, checked; its
    /// output as its result.
    func task(_ step: StepContext) throws {
        guard let configuration, let gi = step.arg(0)?.intValue, let t = step.arg(1)?.intValue, let p = step.arg(2)?.intValue,
              gi >= 0, gi < configuration.graphs.count else {
            throw TaskBenchError("step \(step.id) is not a Task Bench task (its arguments are \(step.args))")
        }
        let g = configuration.graphs[gi]
        // Each input checked where it lies (`withResultBytes`), and the output built as the result is
        // carried. Copying both, and computing the inputs, made Task Bench's part of a step ~6,000
        // instructions (callgrind, stencil_1d, empty kernel); ~2,100 now.
        for (i, dep) in inputs[gi].of(timestep: t, point: p).enumerated() {
            try step.withResultBytes(of: ids[gi][t - 1][dep - g.offset(t - 1)]) { raw in
                try TaskBenchTask.checkInput(graph: g, timestep: t, point: p, index: i, from: dep, raw)
            }
        }
        try scratch.using(bytes: g.scratchBytes) { area in try TaskBenchTask.runKernel(graph: g, timestep: t, point: p, scratch: area) }
        try step.setEncodedResult(TaskBenchTask.encodedOutput(graph: g, timestep: t, point: p))
    }
}

/// Scratch areas of a size, prepared with Task Bench's magic once and reused (Task Bench keeps one per
/// point and reuses it every timestep; here a task takes any free one of its size).
package final class ScratchPool: Sendable {
    // Raw addresses: the pool owns the areas for the process's life (a benchmark's), handing each to one task at a time.
    private let free = Mutex<[Int: [UInt]]>([:])

    package func using<T>(bytes: Int, _ body: (UnsafeMutableRawBufferPointer?) throws -> T) throws -> T {
        guard bytes > 0 else { return try body(nil) }
        let address = free.withLock { $0[bytes]?.popLast() }
        let area: UnsafeMutableRawBufferPointer
        if let address, let pointer = UnsafeMutableRawPointer(bitPattern: address) {
            area = UnsafeMutableRawBufferPointer(start: pointer, count: bytes)
        } else {
            area = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
            TaskBenchTask.prepare(area)
        }
        defer { free.withLock { $0[bytes, default: []].append(UInt(bitPattern: area.baseAddress)) } }
        return try body(area)
    }
}
