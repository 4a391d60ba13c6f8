import ArgumentParser
import Foundation
import StepFlow
import StepFlowMPI
import StepFlowTaskBench

/// `stepflow taskbench`: Task Bench (Slaughter et al., SC20) on StepFlow. Takes Task Bench's flags,
/// runs every task as a step with its dependencies as prerequisites and its output as its result,
/// and prints Task Bench's configuration and report lines, so Task Bench's scripts read its logs.
struct TaskBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taskbench",
        abstract: "Run Task Bench's task graphs on StepFlow; prints Task Bench's report.",
        discussion: """
            Run it like any protocol: ./run_mpi.sh --mpi 2 --threads 1 -- stepflow taskbench -steps 1000 -width 16 -type stencil_1d -kernel compute_bound -iter 4096

            Task Bench's flags (single dash; graphs separated by -and) are taken as Task Bench takes them, with its \
            defaults and checks; an unknown flag is an error. As Task Bench does, the graphs run twice in one \
            launch, a warm-up and the timed run, and Elapsed Time is the second's. The runs live in --run-dir \
            (a scratch folder of the benchmark's own, replaced on every run). Exit codes: 0 every task ran and \
            every input check passed, 1 a task failed (its message names the task and the input), 2 bad flags.
            """)

    @OptionGroup var taskBench: TaskBenchProtocol.Params
    @Option(name: .customLong("run-dir"), help: "Where the runs live: a new or empty folder, or a previous benchmark's, which is replaced. Anything else is refused.")
    var runDir: String = FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-taskbench").path
    @Option(help: "Worker threads per rank (default: STEPFLOW_THREADS, then 1).")
    var threads: Int?
    @Option(help: "MPI ranks; must equal the world size.")
    var mpi: Int?
    @Flag(name: .customLong("no-store"), help: "Run without the run database.")
    var noStore = false
    @Flag(name: .customLong("no-warmup"), help: "Time the first run (Task Bench times the second of two).")
    var noWarmup = false

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads)).") }
        if let mpi, mpi < 1 { throw ValidationError("--mpi must be at least 1 (got \(mpi)).") }
        do {
            _ = try TaskBenchConfiguration(arguments: taskBench.flags)
        } catch {
            // Task Bench's own words, once (every rank parses the same flags), with no usage banner:
            // the flags are Task Bench's, not this command's.
            if ProtocolMain.launchRank == 0 { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
            throw ExitCode(2)
        }
    }

    func run() throws {
        let world = MPIWorld.initialize()
        defer { world.finalize() }
        let configuration = try TaskBenchConfiguration(arguments: taskBench.flags)
        let directory = URL(fileURLWithPath: runDir)
        var refusal: Error?
        if world.rank == 0 {
            do { try BenchRunDirectory.clear(directory, protocolName: TaskBenchProtocol.protocolName) } catch { refusal = error }
        }
        if world.orAcrossRanks(refusal == nil ? 0 : 1) != 0 {
            if let refusal { FileHandle.standardError.write(Data("error: \(refusal)\n".utf8)) }
            throw ExitCode(2)
        }
        if world.rank == 0 { print(configuration.display) }
        var settings = RunSettings(runDirectory: directory, threads: threads, mpi: mpi)
        settings.storeEnabled = !noStore
        settings.progress = nil
        settings.rankTimeout = nil
        if !noWarmup {
            var warmup = settings
            warmup.runDirectory = directory.appendingPathComponent(BenchRunDirectory.warmupFolder)
            let report = try Self.runOnce(taskBench, settings: warmup, world: world)
            if world.orAcrossRanks(world.rank == 0 && report?.outcome != .finished ? 1 : 0) != 0 {
                if let report { Self.sayWhy(report) }
                throw ExitCode(1)
            }
        }
        let report = try Self.runOnce(taskBench, settings: settings, world: world)
        let failed = world.orAcrossRanks(world.rank == 0 && report?.outcome != .finished ? 1 : 0) != 0
        guard world.rank == 0, let report else {
            if failed { throw ExitCode(1) }
            return
        }
        if failed {
            Self.sayWhy(report)
            throw ExitCode(1)
        }
        print(configuration.report(elapsed: report.wallSeconds))
    }

    /// The failed tasks' errors (an input check names both points), on standard error.
    private static func sayWhy(_ report: RunReport) {
        var lines = ["stepflow taskbench: the run \(report.outcome.statusName)"]
        for r in report.records where r.status == .failed {
            lines.append("  step \(r.id) \(r.args.map(\.description).joined(separator: " ")): \(r.error ?? "")")
            if lines.count > 10 { break }
        }
        if let hook = report.hookError { lines.append("  \(hook)") }
        FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    private static func runOnce(_ params: TaskBenchProtocol.Params, settings: RunSettings, world: MPIWorld) throws(ExitCode) -> RunReport? {
        do {
            return try MPIProtocolRunner.run(TaskBenchProtocol(params: params), settings: settings, world: world)
        } catch RunSetupError.reportedElsewhere {
            throw ExitCode(2)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
