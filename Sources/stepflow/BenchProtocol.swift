import ArgumentParser
import Foundation
import StepFlow

/// The graph shapes the benchmark runs.
enum BenchShape: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// N steps, no prerequisites: throughput.
    case independent
    /// N steps, each after the previous: dependency latency (consecutive steps alternate ranks).
    case chain
    /// One source, N-2 steps after it, one sink after them all.
    case diamond
    /// Each step after 0–3 random earlier steps among the last 100 (seeded).
    case random
    /// One step that sleeps `--idle-ms` while every other rank waits, then an empty step after it:
    /// the idle cost of waiting ranks, and how long the engine takes to wake up after a long idle.
    case idle
    /// N independent steps, long (`--long-work-us`) and short (`--work-us`) alternately: packing, where
    /// sending ahead must not queue a short step behind a long one while another slot idles.
    case mixed
}

/// N steps of a given shape whose bodies do nothing, or sleep `workMicroseconds`.
struct BenchProtocol: StepProtocol {
    struct Params: ParsableArguments, Sendable {
        @Option(help: "Graph shape: \(BenchShape.allCases.map(\.rawValue).joined(separator: ", ")).")
        var shape: BenchShape = .independent
        @Option(help: "Number of steps.")
        var steps: Int = 100_000
        @Option(name: .customLong("work-us"), help: "Each step sleeps this many microseconds (0: empty steps).")
        var workMicroseconds: Int = 0
        @Option(name: .customLong("long-work-us"), help: "With --shape mixed: how long every other step sleeps, in microseconds.")
        var longWorkMicroseconds: Int = 200_000
        @Option(name: .customLong("idle-ms"), help: "How long the idle measurement waits.")
        var idleMilliseconds: Int = 1000

        func validate() throws {
            guard steps >= 1 else { throw ValidationError("--steps must be at least 1 (got \(steps)).") }
            guard steps <= 50_000_000 else { throw ValidationError("--steps must be at most 50000000 (got \(steps)); rank 0 keeps every step in memory.") }
            guard (0...60_000_000).contains(workMicroseconds) else {
                throw ValidationError("--work-us must be between 0 and 60000000 (one minute) (got \(workMicroseconds)).")
            }
            guard (0...60_000_000).contains(longWorkMicroseconds) else {
                throw ValidationError("--long-work-us must be between 0 and 60000000 (one minute) (got \(longWorkMicroseconds)).")
            }
            guard (0...600_000).contains(idleMilliseconds) else {
                throw ValidationError("--idle-ms must be between 0 and 600000 (ten minutes) (got \(idleMilliseconds)).")
            }
        }
    }

    let params: Params
    init(params: Params) { self.params = params }

    static let protocolName = "Bench"

    /// The idle shape's sleeping step and the step after it. Ids are numbered 1, 2, … in the order
    /// `insertAllSteps` inserts, so they are known before the run.
    static let idleSleeperID: StepID = 1
    static let idleWakeID: StepID = 2

    static let functions: StepFunctions<BenchProtocol> = [
        "noop": { _, _ in },
        "work": { p, _ in usleep(UInt32(p.params.workMicroseconds)) },
        "idle": { p, _ in usleep(UInt32(p.params.idleMilliseconds * 1000)) },
        "long": { p, _ in usleep(UInt32(p.params.longWorkMicroseconds)) },
    ]

    mutating func insertAllSteps(_ steps: StepInserter) throws {
        let body = params.workMicroseconds > 0 ? "work" : "noop"
        let n = params.steps
        switch params.shape {
        case .independent:
            for _ in 0..<n { try steps.insertFunctionStep(body, arguments: [], prerequisites: []) }
        case .chain:
            for _ in 0..<n { try steps.insertFunctionStep(body, arguments: []) }
        case .diamond:
            let source = try steps.insertFunctionStep(body, arguments: [], prerequisites: [])
            var middle: [StepID] = []
            middle.reserveCapacity(max(n - 2, 0))
            for _ in 0..<max(n - 2, 0) { middle.append(try steps.insertFunctionStep(body, arguments: [], prerequisites: [source])) }
            try steps.insertFunctionStep(body, arguments: [], prerequisites: middle)
        case .random:
            var rng = SeededRandom(seed: 0x5EED)
            for i in 0..<n {
                let k = i == 0 ? 0 : Int.random(in: 0...3, using: &rng)
                let prereqs = (0..<k).map { _ in max(1, i - Int.random(in: 0..<100, using: &rng)) }
                try steps.insertFunctionStep(body, arguments: [], prerequisites: prereqs)
            }
        case .mixed:
            for i in 0..<n { try steps.insertFunctionStep(i % 2 == 0 ? "long" : body, arguments: [], prerequisites: []) }
        case .idle:
            let sleeper = try steps.insertFunctionStep("idle", arguments: [], prerequisites: [])
            let next = try steps.insertFunctionStep("noop", arguments: [], prerequisites: [sleeper])
            precondition(sleeper == Self.idleSleeperID && next == Self.idleWakeID, "the idle shape's steps are numbered 1, 2")
        }
    }
}
