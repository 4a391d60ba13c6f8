import ArgumentParser
import Foundation
import StepFlow
import Synchronization

/// A protocol for the integration tests: its steps write down, themselves, when and where they ran
/// and what they inserted, so tests can check the engine against records it did not make.
///
/// Scenarios:
/// - `random`: a seeded random DAG; some steps insert more steps at run time (on whatever rank runs them).
/// - `fail`: a fixed graph where step 8 fails (on a worker rank when there are several), for comparing
///   the failure policies across rank counts.
/// - `sleep`: `--steps` independent steps that sleep `--work-us`, for crash and signal tests; each
///   carries `--arg-bytes` of filler, so frames to the ranks can be made large.
/// - `slowhook`: as `sleep`, with a `stepsCheck` hook that takes `--hook-ms` on each of its first two calls.
/// - `gated`: as `sleep`, plus a step that waits (up to a minute) for `<run-dir>/go`, so a test can look
///   at a run that is certainly live.
/// - `stream`: the streaming pattern. The `stepsCheck` hook inserts `--chunks` chunks of `--steps` work
///   steps, one chunk per call, and makes the close step wait for them; each work step inserts a
///   follow-up step that needs the `pivot` step, which the hook releases only after its last chunk.
/// - `killer`: step 2 kills its own rank (SIGKILL) after 300 ms, unless `<run-dir>/spare` exists;
///   `--steps` sleep steps run beside it; step 3 depends on it.
/// - `takeback`: a step adds a prerequisite to a step that was sent ahead to a busy rank (S3).
/// - `nondeterministic`: rank 2 inserts one step more than the others.
/// - `slowinsert`: `insertAllSteps` takes `--work-us` per step and holds its last step until rank 0 got
///   a signal (up to a minute), so a signal always lands during it.
struct ProbeProtocol: StepProtocol {
    struct Params: ParsableArguments, Sendable {
        @Option var scenario: String = "random"
        @Option var steps: Int = 200
        @Option var seed: UInt64 = 1
        @Option(name: .customLong("work-us")) var workMicroseconds: Int = 0
        @Option var chunks: Int = 10
        /// Bytes of filler each `sleep` step carries as an argument (frames to the ranks grow with it).
        @Option(name: .customLong("arg-bytes")) var argumentBytes: Int = 0
        /// How long the `slowhook` scenario's hook takes, in milliseconds.
        @Option(name: .customLong("hook-ms")) var hookMilliseconds: Int = 0
    }

    let params: Params
    /// The ids `insertAllSteps` gave the stream's steps, the same on every rank.
    var streamClose: StepID = 0
    var streamPivot: StepID = 0
    /// How many chunks the hook inserted in this launch (it starts over in every launch: S12 matches).
    let chunksInserted = ChunkCounter()
    init(params: Params) { self.params = params }

    static let protocolName = "Probe"

    static let functions: StepFunctions<ProbeProtocol> = [
        "node": { p, step in try p.node(step) },
        "work": { p, step in try p.record(step) },
        "gate": { p, step in
            let go = step.runDirectory.appendingPathComponent("go").path
            for _ in 0..<3000 where !FileManager.default.fileExists(atPath: go) { usleep(20_000) }
            try p.record(step)
        },
        "fail": { p, step in
            try p.record(step)
            throw ProbeFailure(step: step.id, rank: step.rank)
        },
        "streamWork": { p, step in
            try p.record(step) {
                let follow = try step.insertFunctionStep("followUp", step.args[1], prerequisites: [p.streamPivot])
                try step.addPrerequisites(to: p.streamClose, [follow])
            }
        },
        "followUp": { p, step in try p.record(step) },
        "killer": { p, step in
            if !FileManager.default.fileExists(atPath: step.runDirectory.appendingPathComponent("spare").path) {
                usleep(300_000)
                kill(getpid(), SIGKILL)
            }
            try p.record(step)
        },
        "adder": { p, step in
            try p.record(step) {
                usleep(100_000)
                let extra = try step.insertFunctionStep("work", prerequisites: [])
                try step.addPrerequisites(to: 4, [extra])
            }
        },
        "sleeper": { p, step in try p.record(step) { usleep(1_000_000) } },
    ]

    var stepsCheckInterval: Duration { params.scenario == "stream" ? .milliseconds(100) : .seconds(1) }

    func stepsCheck(_ run: StepsCheck) throws {
        if params.scenario == "slowhook" {
            // A slow hook (a big folder listed on a shared filesystem), twice, while the steps run.
            if chunksInserted.next() < 2 {
                usleep(UInt32(max(params.hookMilliseconds, 0)) * 1000)
                ProbeLog.append(runDirectory, "hook \(Date().timeIntervalSince1970)")
                return
            }
            return run.declareNoHook()
        }
        guard params.scenario == "stream" else { return run.declareNoHook() }
        let chunk = chunksInserted.next()
        if chunk < params.chunks {
            var ids: [StepID] = []
            for i in 0..<params.steps {
                ids.append(try run.insertFunctionStep("streamWork", .int(chunk), .int(chunk * params.steps + i), prerequisites: []))
            }
            try run.addPrerequisites(to: streamClose, ids)
        } else if chunk == params.chunks {
            try run.release(streamPivot)
            try run.release(streamClose)
        }
    }

    mutating func insertAllSteps(_ steps: StepInserter) throws {
        // Every rank runs insertAllSteps: a good place to tell tests which process is which rank.
        let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0"
        try? FileManager.default.createDirectory(at: runDirectory.appendingPathComponent("pids"), withIntermediateDirectories: true)
        try? String(getpid()).write(to: runDirectory.appendingPathComponent("pids/rank-\(rank)"), atomically: true, encoding: .utf8)
        switch params.scenario {
        case "random":
            var rng = SeededRandom(seed: params.seed)
            var last: StepID?
            for _ in 0..<params.steps {
                last = try insertRandom(steps, rng: &rng, candidates: last.map { Array(1...$0) } ?? [], lastOwn: last, spawn: true)
            }
        case "fail":
            for _ in 1...6 { try steps.insertFunctionStep("work", prerequisites: []) }
            try steps.insertFunctionStep("work", prerequisites: Array(1...6))      // 7: the gate
            try steps.insertFunctionStep("fail", prerequisites: [7])              // 8
            try steps.insertFunctionStep("work", prerequisites: [8])              // 9
            try steps.insertFunctionStep("work", prerequisites: [9])              // 10
        case "fail-keep-going":
            for _ in 1...6 { try steps.insertFunctionStep("work", prerequisites: []) }
            try steps.insertFunctionStep("work", prerequisites: Array(1...6))
            try steps.insertFunctionStep("fail", prerequisites: [7])
            try steps.insertFunctionStep("work", prerequisites: [8])
            try steps.insertFunctionStep("work", prerequisites: [9])
            try steps.insertFunctionStep("work", prerequisites: [7])              // 11: independent of the failure
            try steps.insertFunctionStep("work", prerequisites: [11])             // 12
        case "sleep", "slowhook":
            let filler: [StepValue] = params.argumentBytes > 0 ? [.string(String(repeating: "x", count: params.argumentBytes))] : []
            for _ in 0..<params.steps { try steps.insertFunctionStep("work", filler, prerequisites: []) }
        case "stream":
            streamPivot = try steps.insertFunctionStep("work", prerequisites: [], wait: true)
            streamClose = try steps.insertFunctionStep("work", prerequisites: [streamPivot], wait: true)
        case "killer":
            // Step 2 goes to rank 1 (ranks take steps in turn): the killer kills a worker rank.
            try steps.insertFunctionStep("work", prerequisites: [])
            try steps.insertFunctionStep("killer", prerequisites: [])
            try steps.insertFunctionStep("work", prerequisites: [2])
            for _ in 0..<params.steps { try steps.insertFunctionStep("work", prerequisites: []) }
        case "takeback":
            // Ranks get steps in turn: 1 → rank 0, 2 → rank 1, 3 → rank 0, 4 → rank 1 behind the sleeper 2.
            try steps.insertFunctionStep("adder", prerequisites: [])
            try steps.insertFunctionStep("sleeper", prerequisites: [])
            try steps.insertFunctionStep("work", prerequisites: [])
            for _ in 0..<3 { try steps.insertFunctionStep("work", prerequisites: []) }
        case "slowinsert":
            // A long insertAllSteps: <run-dir>/inserting tells a test it is under way.
            FileManager.default.createFile(atPath: runDirectory.appendingPathComponent("inserting").path, contents: nil)
            for i in 0..<params.steps {
                usleep(UInt32(max(params.workMicroseconds, 0)))
                if i == params.steps - 1 && isRankZero {
                    for _ in 0..<3000 where SignalWatch.received == nil { usleep(20_000) }
                }
                try steps.insertFunctionStep("work", prerequisites: [])
            }
        case "nondeterministic":
            for _ in 0..<params.steps { try steps.insertFunctionStep("work", prerequisites: []) }
            if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] == "2" { try steps.insertFunctionStep("work") }
        case "gated":
            // The run stays live until the test creates <run-dir>/go.
            for _ in 0..<params.steps { try steps.insertFunctionStep("work", prerequisites: []) }
            try steps.insertFunctionStep("gate", prerequisites: [])
        default:
            throw ValidationError("unknown --scenario '\(params.scenario)' (random, fail, fail-keep-going, sleep, slowhook, gated, stream, killer, takeback, nondeterministic, slowinsert)")
        }
    }

    /// Inserts one random step and writes down what it should depend on.
    func insertRandom(_ inserter: some StepInserting, rng: inout SeededRandom, candidates: [StepID], lastOwn: StepID?,
                      spawn: Bool) throws -> StepID {
        let children = spawn && rng.next() % 6 == 0 ? Int(rng.next() % 5) + 1 : 0
        let args: [StepValue] = [.int(Int(rng.next() >> 2)), .int(children)]
        let id: StepID
        let prereqs: [StepID]
        if rng.next() % 4 == 0 {
            id = try inserter.insertFunctionStep("node", arguments: args)
            prereqs = lastOwn.map { [$0] } ?? []
        } else {
            let k = candidates.isEmpty ? 0 : Int(rng.next() % UInt64(min(3, candidates.count) + 1))
            prereqs = (0..<k).map { _ in candidates[Int(rng.next() % UInt64(candidates.count))] }
            id = try inserter.insertFunctionStep("node", arguments: args, prerequisites: prereqs)
        }
        if isRankZero || inserter.steps.inserter.stepID != nil {
            ProbeLog.append(runDirectory, "plan \(id) \(Set(prereqs).sorted().map(String.init).joined(separator: ","))")
        }
        return id
    }

    func node(_ step: StepContext) throws {
        try record(step) {
            var rng = SeededRandom(seed: UInt64(step.args[0].intValue ?? 0))
            var own: [StepID] = []
            for _ in 0..<(step.args[1].intValue ?? 0) {
                let older = (0..<2).map { _ in Int(rng.next() % UInt64(step.id - 1 + 1)) }.filter { $0 >= 1 }
                own.append(try insertRandom(step, rng: &rng, candidates: own + [step.id] + older, lastOwn: own.last, spawn: false))
            }
        }
    }

    /// Runs `body` and writes `run <id> <rank> <slot> <start> <end> <host>`.
    func record(_ step: StepContext, _ body: () throws -> Void = {}) throws {
        let start = Date().timeIntervalSince1970
        if params.workMicroseconds > 0 { usleep(UInt32(params.workMicroseconds)) }
        try body()
        let end = Date().timeIntervalSince1970
        ProbeLog.append(step.runDirectory, "run \(step.id) \(step.rank) \(step.slot) \(start) \(end) \(ProbeLog.hostName) \(step.function)")
    }

    var runDirectory: URL { URL(fileURLWithPath: ProcessInfo.processInfo.environment["PROBE_RUN_DIR"] ?? "./run") }
    var isRankZero: Bool { (ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0") == "0" }
}

/// Counts the hook's calls across threads (the protocol value itself is read-only once running).
final class ChunkCounter: Sendable {
    private let count = Mutex(0)
    func next() -> Int { count.withLock { n in defer { n += 1 }; return n } }
}

struct ProbeFailure: Error, CustomStringConvertible {
    let step: StepID
    let rank: Int
    var description: String { "probe step \(step) failed on purpose on rank \(rank)" }
}

/// Appends lines to `<run-dir>/probe-<pid>.txt`: one file per process, so ranks never interleave.
enum ProbeLog {
    static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(cString: buffer)
    }()

    static func append(_ runDirectory: URL, _ line: String) {
        let path = runDirectory.appendingPathComponent("probe-\(getpid()).txt").path
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
