import CTaskBenchKernel
import Foundation
import Synchronization

/// A task input that is not what its producer wrote: wrong size, or a pair of another point.
package struct TaskBenchInputError: Error, CustomStringConvertible, Sendable, Equatable {
    package let message: String
    package var description: String { message }
}

/// Running one Task Bench task as Task Bench's core does (`TaskGraph::execute_point`): check every
/// input came from the right producer, write the output, check the scratch area, run the kernel.
package enum TaskBenchTask {
    /// What a task's output holds: its (timestep, point) pair, as many times as fit, then zeros.
    package static func output(graph: TaskBenchGraph, timestep t: Int, point p: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: graph.outputBytes)
        out.withUnsafeMutableBytes { writeOutput(graph: graph, timestep: t, point: p, into: $0) }
        return out
    }

    /// The output as a step's result carries it (`StepResult.encoded` of `.bytes`): the kind byte
    /// 0, then `output`, made in one allocation.
    package static func encodedOutput(graph: TaskBenchGraph, timestep t: Int, point p: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: graph.outputBytes + 1)
        out.withUnsafeMutableBytes { writeOutput(graph: graph, timestep: t, point: p, into: UnsafeMutableRawBufferPointer(rebasing: $0[1...])) }
        return out
    }

    private static func writeOutput(graph: TaskBenchGraph, timestep t: Int, point p: Int, into raw: UnsafeMutableRawBufferPointer) {
        for k in 0..<(graph.outputBytes / 16) {
            raw.storeBytes(of: Int64(t).littleEndian, toByteOffset: 16 * k, as: Int64.self)
            raw.storeBytes(of: Int64(p).littleEndian, toByteOffset: 16 * k + 8, as: Int64.self)
        }
    }

    /// Checks task (t, p)'s inputs, given in its inputs' order (`TaskBenchGraph.inputs`): each must be
    /// the output of the point it stands for, at t - 1.
    /// - Throws: `TaskBenchInputError` naming the task, the input, and what was expected and found.
    package static func checkInputs(graph g: TaskBenchGraph, timestep t: Int, point p: Int, inputs: [[UInt8]?]) throws(TaskBenchInputError) {
        let expected = g.inputs(timestep: t, point: p)
        guard inputs.count >= expected.count else {
            throw TaskBenchInputError(message: "\(taskName(g, t, p)) has \(inputs.count) inputs, and needs \(expected.count) (from points \(expected.map(String.init).joined(separator: ", ")) at timestep \(t - 1))")
        }
        for (i, dep) in expected.enumerated() {
            if let input = inputs[i] {
                let checked = input.withUnsafeBytes { raw in
                    Result { () throws(TaskBenchInputError) in try checkInput(graph: g, timestep: t, point: p, index: i, from: dep, raw) }
                }
                try checked.get()
            } else {
                try checkInput(graph: g, timestep: t, point: p, index: i, from: dep, nil)
            }
        }
    }

    /// Checks input `i` of task (t, p), which should be the output of point `dep` at t - 1; nil: none came.
    /// - Throws: `TaskBenchInputError` naming the task, the input, and what was expected and found.
    package static func checkInput(graph g: TaskBenchGraph, timestep t: Int, point p: Int, index i: Int, from dep: Int,
                                   _ input: UnsafeRawBufferPointer?) throws(TaskBenchInputError) {
        guard let input else {
            throw TaskBenchInputError(message: "\(taskName(g, t, p)) input \(i): point \(dep) at timestep \(t - 1) handed no output")
        }
        guard input.count == g.outputBytes else {
            throw TaskBenchInputError(message: "\(taskName(g, t, p)) input \(i) from point \(dep) at timestep \(t - 1) holds \(input.count) bytes, not \(g.outputBytes)")
        }
        for k in 0..<(input.count / 16) {
            let gotT = Int(Int64(littleEndian: input.loadUnaligned(fromByteOffset: 16 * k, as: Int64.self)))
            let gotP = Int(Int64(littleEndian: input.loadUnaligned(fromByteOffset: 16 * k + 8, as: Int64.self)))
            if gotT != t - 1 || gotP != dep {
                throw TaskBenchInputError(message: "Task Bench detected corrupted value in \(taskName(g, t, p)) input \(i): at position \(k) within the buffer, expected value (timestep \(t - 1) point \(dep)) but got (timestep \(gotT) point \(gotP))")
            }
        }
    }

    /// Made only for a message: interpolating it for every task cost more than the check.
    private static func taskName(_ g: TaskBenchGraph, _ t: Int, _ p: Int) -> String { "task (graph \(g.index) timestep \(t) point \(p))" }

    /// Task Bench's scratch filler: the area is full of it before the first task, and every kernel
    /// keeps it there.
    package static let scratchMagic: UInt64 = 0x5C4A_7C8B

    /// Runs task (t, p): checks its inputs, makes its output, runs its kernel in `scratch` (the task's
    /// scratch area, `graph.scratchBytes`, prepared by `prepare`). Returns the output. The protocol's
    /// tasks run the same pieces (`checkInput`, `runKernel`, `encodedOutput`) on their inputs in place.
    /// - Throws: `TaskBenchInputError` for a wrong input or a scratch area that lost its magic.
    package static func execute(graph g: TaskBenchGraph, timestep t: Int, point p: Int, inputs: [[UInt8]?],
                                scratch: UnsafeMutableRawBufferPointer?) throws(TaskBenchInputError) -> [UInt8] {
        try checkInputs(graph: g, timestep: t, point: p, inputs: inputs)
        let output = output(graph: g, timestep: t, point: p)
        try runKernel(graph: g, timestep: t, point: p, scratch: scratch)
        return output
    }

    /// Checks the scratch area still starts with the magic value, then runs the graph's kernel in it.
    /// - Throws: `TaskBenchInputError` for a scratch area that lost its magic.
    package static func runKernel(graph g: TaskBenchGraph, timestep t: Int, point p: Int,
                                  scratch: UnsafeMutableRawBufferPointer?) throws(TaskBenchInputError) {
        if g.scratchBytes > 0 {
            guard let scratch, scratch.count >= g.scratchBytes,
                  scratch.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == scratchMagic else {
                throw TaskBenchInputError(message: "\(taskName(g, t, p)): its scratch area does not start with Task Bench's magic value")
            }
        }
        switch g.kernel {
        case .empty: break
        case .busy_wait: sink(Double(stepflow_tb_busy_wait(g.iterations)))
        case .compute_bound: sink(stepflow_tb_compute(g.iterations))
        case .compute_bound2: sink(stepflow_tb_compute2(g.iterations))
        case .load_imbalance: sink(stepflow_tb_compute(g.imbalanceIterations(timestep: t, point: p)))
        case .memory_bound:
            if let scratch, let base = scratch.baseAddress {
                _ = stepflow_tb_memory(base.assumingMemoryBound(to: CChar.self), g.scratchBytes, g.iterations, Int32(g.samples), t)
            }
        case .compute_dgemm, .memory_daxpy, .io_bound: break // refused by the configuration's check
        }
    }

    /// Fills a scratch area with Task Bench's magic value.
    package static func prepare(_ scratch: UnsafeMutableRawBufferPointer) {
        for i in 0..<(scratch.count / 8) { scratch.storeBytes(of: scratchMagic, toByteOffset: 8 * i, as: UInt64.self) }
    }

    /// Keeps a kernel's result alive, so the optimizer cannot drop the loop that made it.
    private static let kept = Atomic<UInt64>(0)
    private static func sink(_ value: Double) { kept.store(value.bitPattern, ordering: .relaxed) }
}
