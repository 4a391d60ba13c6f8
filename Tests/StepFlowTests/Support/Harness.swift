import Foundation
import Synchronization
@testable import StepFlow

/// Runs a graph of test functions on the engine with `ranks` ranks in this process (`InMemoryRanks`:
/// the runtime and wire codec of `mpirun`, with steps sent ahead as there).
struct Harness {
    var threads = 1
    var ranks = 1
    var gpus = 0
    var mode: StepsExecutionMode = .parallel
    var policy: FailurePolicy = .stop
    var hook: (@Sendable (StepsCheck) throws -> Void)?
    var hookInterval: Duration = .milliseconds(10)
    var functions: [String: @Sendable (StepContext) throws -> Void] = [:]
    /// Overrides `StepExecutor.inlineLimit` (seconds).
    var inlineLimit: Double?
    /// Whether steps go behind their prerequisites (`SchedulerConfig.sendBehind`), as in a launch.
    var sendBehind = true

    /// Inserts steps with `insert` (as `insertAllSteps` would), then runs them to the end.
    func run(_ insert: (StepInserter) throws -> Void) throws -> RunReport {
        var config = SchedulerConfig(ranks: ranks, threadsPerRank: threads, gpusPerRank: gpus, prefetch: ProtocolRunner.prefetch(threads: threads),
                                     mode: mode, failurePolicy: policy)
        config.sendBehind = sendBehind
        let state = SchedulerState(config)
        var executor = StepExecutor(functions: functions)
        if let inlineLimit { executor.inlineLimit = inlineLimit }
        try insert(StepInserter(.protocolSteps, editor: state.editor, functionNames: executor.functionNames))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let transport = InMemoryRanks.start(ranks: ranks, threads: threads, executor: executor, runDirectory: dir)
        return Coordinator(state: state, transport: transport, functionNames: executor.functionNames,
                           hook: hook, hookInterval: hookInterval).run()
    }
}

/// Start and end times that the steps record themselves, independent of the engine's bookkeeping.
final class Intervals: Sendable {
    struct Interval: Sendable {
        var step: StepID
        var start: Double
        var end: Double
        var rank: Int
    }

    private let list = Mutex<[Interval]>([])
    private let running = Mutex<(now: Int, peak: Int)>((0, 0))

    /// Runs `body` and records when it ran.
    func record(_ step: StepContext, _ body: () throws -> Void) rethrows {
        running.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now) }
        let start = Date().timeIntervalSince1970
        defer {
            let end = Date().timeIntervalSince1970
            running.withLock { $0.now -= 1 }
            list.withLock { $0.append(Interval(step: step.id, start: start, end: end, rank: step.rank)) }
        }
        try body()
    }

    var all: [Interval] { list.withLock { $0 } }
    var peakConcurrency: Int { running.withLock { $0.peak } }
    func of(_ id: StepID) -> Interval? { all.first { $0.step == id } }
    var order: [StepID] { all.sorted { $0.start < $1.start }.map(\.step) }

    /// Whether any two of `steps` ran at the same time.
    func overlap(_ steps: [StepID]) -> Bool {
        let spans = all.filter { steps.contains($0.step) }.sorted { $0.start < $1.start }
        return zip(spans, spans.dropFirst()).contains { $0.end > $1.start }
    }
}

extension RunReport {
    func status(_ id: StepID) -> StepStatus { records[id - 1].status }
}

/// A thrown error for failing steps.
struct Boom: Error, CustomStringConvertible {
    var description: String { "boom" }
}

/// Runs a built executable of the package and captures its output.
struct ProcessResult {
    var code: Int32
    var stdout: String
    var stderr: String
}

enum Executables {
    /// The system's Python, which sees the Debian packages scripts/test.sh installs
    /// (python3-websocket, python3-prometheus-client); a `python3` first on PATH (pyenv, a venv)
    /// does not.
    static var python3: String {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
    }

    /// The folder holding the package's built executables (next to the test bundle).
    static var buildFolder: URL {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if FileManager.default.fileExists(atPath: bundle.appendingPathComponent("ImportMovies").path) { return bundle }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug")
    }

    static func run(_ name: String, _ args: [String], cwd: URL? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
        let path = name.hasPrefix("/") ? name : buildFolder.appendingPathComponent(name).path
        return try runProcess(path, args, cwd: cwd, environment: environment)
    }

    static func runProcess(_ path: String, _ args: [String], cwd: URL? = nil, environment: [String: String] = [:],
                           stdin: String? = nil) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = cwd }
        var env = ProcessInfo.processInfo.environment
        // The suite runs built binaries: run_mpi.sh must not start a build that waits on swift test's lock.
        env["STEPFLOW_SKIP_BUILD"] = "1"
        env.merge(environment) { _, new in new }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = stdin.map { _ in Pipe() }
        if let input { p.standardInput = input }
        try p.run()
        if let input, let stdin {
            DispatchQueue.global().async {
                input.fileHandleForWriting.write(Data(stdin.utf8))
                try? input.fileHandleForWriting.close()
            }
        }
        // Read both pipes while the process runs, so a chatty child never blocks on a full pipe.
        let captured = Mutex<[Int: Data]>([:])
        let group = DispatchGroup()
        for (index, pipe) in [out, err].enumerated() {
            group.enter()
            DispatchQueue.global().async {
                let d = pipe.fileHandleForReading.readDataToEndOfFile()
                captured.withLock { $0[index] = d }
                group.leave()
            }
        }
        p.waitUntilExit()
        group.wait()
        let data = captured.withLock { $0 }
        return ProcessResult(code: p.terminationStatus,
                             stdout: String(decoding: data[0] ?? Data(), as: UTF8.self),
                             stderr: String(decoding: data[1] ?? Data(), as: UTF8.self))
    }

    /// File name → SHA-256 of each file, from the system's sha256sum (independent of the code under test).
    static func sha256sums(_ files: [URL]) throws -> [String: String] {
        let sums = try runProcess("/usr/bin/sha256sum", files.map(\.path))
        return Dictionary(uniqueKeysWithValues: sums.stdout.split(separator: "\n").map { line -> (String, String) in
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            return (URL(fileURLWithPath: String(parts[1])).lastPathComponent, String(parts[0]))
        })
    }

    static func temporaryFolder(_ label: String) -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-\(label)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
