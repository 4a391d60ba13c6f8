import ArgumentParser
import Foundation

extension ProgressMode: ExpressibleByArgument {}

/// The options every protocol executable takes (S5), besides the protocol's own parameters.
package struct RunOptions: ParsableArguments, Sendable {
    /// Results travel in messages and sit in rank 0's memory: a gigabyte is already far past sense.
    static let largestResultLimit = 1 << 30

    @Option(name: .customLong("run-dir"), help: "Directory for the run's logs and outputs.")
    package var runDir: String = "./run"

    @Option(help: "Worker threads on each rank (default: STEPFLOW_THREADS, then the protocol's parallel section).")
    package var threads: Int?

    @Option(help: "MPI ranks; must equal the MPI world size (default: STEPFLOW_MPI, then the world size).")
    package var mpi: Int?

    @Option(help: "GPU ids of each node, e.g. 0,1,2 (the ranks on a node share them out; default: CUDA_VISIBLE_DEVICES or SLURM_STEP_GPUS).")
    package var gpus: String?

    @Option(name: .customLong("stop-before"), help: "In a Slurm allocation (or with STEPFLOW_END_TIME): stop starting steps this long before its end (e.g. 5m), let the running ones finish, exit 143 for a resubmission with --continue.")
    package var stopBefore: String?

    @Flag(name: .customLong("keep-going"), help: "After a failure, run everything that does not depend on the failed step.")
    package var keepGoing = false

    @Option(help: "Progress line on standard error: auto (on a terminal), always, never.")
    package var progress: ProgressMode = .auto

    @Flag(name: .customLong("continue"), help: "Finish the run in --run-dir: keep what finished, run the rest.")
    package var continueRun = false

    @Flag(help: "Start over in --run-dir; everything of the old run is set aside in a dated folder inside it, not deleted.")
    package var restart = false

    @Flag(name: .customLong("dry-run"), help: "With --continue: print what would stay finished and why each other step would run again; run nothing.")
    package var dryRun = false

    @Option(name: .customLong("crash-limit"), help: "A step that was running when this many launches died is recorded failed instead of run again.")
    package var crashLimit: Int = 3

    @Option(name: .customLong("rank-timeout"), help: "A rank silent this long (stopped, hung, unreachable) ends the run, recorded for --continue: 90s, 10m, or seconds; 0 waits forever.")
    package var rankTimeout: String = "60s"

    @Option(name: .customLong("result-limit"), help: "The largest result a step may hand its dependents: 64KB, 1MB, or bytes (S13).")
    package var resultLimit: String = "64KB"

    @Option(name: .customLong("fingerprint"), help: "How a step's declared input files are fingerprinted for --continue: stat (size and modification time) or content (a hash of the bytes).")
    package var fingerprint: FingerprintMode = .stat

    package init() {}

    package func validate() throws {
        guard let limit = SizeText.bytes(resultLimit), limit >= 1, limit <= Double(Self.largestResultLimit) else {
            throw ValidationError("--result-limit takes a size from 1 byte to 1GB, like 64KB or 1MB (got '\(resultLimit)').")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads)).") }
        if let threads, threads > ResolvedParallelSection.maximumThreads {
            throw ValidationError("--threads must be at most \(ResolvedParallelSection.maximumThreads) worker threads per rank (got \(threads)). Use more ranks (--mpi) for more step slots.")
        }
        if let mpi, mpi < 1 { throw ValidationError("--mpi must be at least 1 (got \(mpi)); it is the number of MPI ranks.") }
        if let gpus {
            guard let ids = GPUList.parse(gpus), ids.allSatisfy({ (0...GPUList.maximumID).contains($0) }) else {
                throw ValidationError("--gpus takes GPU ids separated by commas, each 0...\(GPUList.maximumID), e.g. --gpus 0,1,2 (got '\(gpus)').")
            }
            if ids.count > ResolvedParallelSection.maximumGPUs {
                throw ValidationError("--gpus lists at most \(ResolvedParallelSection.maximumGPUs) GPUs per node (got \(ids.count)).")
            }
        }
        if let stopBefore {
            guard let seconds = DurationText.seconds(stopBefore), seconds >= 0 else {
                throw ValidationError("--stop-before takes a duration like 5m, 90s or 1h (got '\(stopBefore)').")
            }
        }
        if continueRun && restart { throw ValidationError("--continue and --restart exclude each other: choose one.") }
        if dryRun && !continueRun { throw ValidationError("--dry-run shows what --continue would do: add --continue.") }
        if crashLimit < 1 { throw ValidationError("--crash-limit must be at least 1 (got \(crashLimit)).") }
        guard let timeout = DurationText.seconds(rankTimeout), timeout == 0 || timeout >= 3 else {
            throw ValidationError("--rank-timeout must be a duration of 3 seconds or more (ranks send a heartbeat every second), or 0 to wait forever; got '\(rankTimeout)'.")
        }
    }

    /// The settings these options give, with progress printed by `printer`.
    package func settings(printer: ProgressPrinter?) -> RunSettings {
        var s = RunSettings(runDirectory: URL(fileURLWithPath: runDir), threads: threads, mpi: mpi,
                            gpus: gpus.flatMap(GPUList.parse), keepGoing: keepGoing)
        s.stopBefore = stopBefore.flatMap(DurationText.seconds)
        if let printer { s.progress = { printer.update($0) } }
        s.mode = continueRun ? .continueRun : restart ? .restart : .new
        s.dryRun = dryRun
        s.crashLimit = crashLimit
        s.resultLimit = SizeText.bytes(resultLimit).map { Int($0) } ?? StepResult.defaultLimit
        s.fingerprintContent = fingerprint == .content
        let timeout = DurationText.seconds(rankTimeout) ?? 60
        s.rankTimeout = timeout > 0 ? .milliseconds(Int64(timeout * 1000)) : nil
        s.notes = { FileHandle.standardError.write(Data("note: \($0)\n".utf8)) }
        return s
    }
}

/// A protocol executable's command line: `run` (the default) and `status`.
package struct ProtocolRoot<P: StepProtocol>: ParsableCommand {
    package static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: P.protocolName,
                             abstract: "Run the \(P.protocolName) protocol on StepFlow, or show a run's status.",
                             subcommands: [ProtocolCommand<P>.self, StatusCommand.self],
                             defaultSubcommand: ProtocolCommand<P>.self)
    }

    package init() {}
}

/// Running a protocol: `RunOptions` plus the protocol's `Params`.
package struct ProtocolCommand<P: StepProtocol>: ParsableCommand {
    package static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "run",
                             abstract: "Run the \(P.protocolName) protocol on StepFlow.",
                             discussion: "Exit codes: 0 every step finished, 1 a step failed or the run stalled, 2 bad input or usage, 130/143 stopped by SIGINT/SIGTERM (finish it with --continue).")
    }

    @OptionGroup package var options: RunOptions
    @OptionGroup package var params: P.Params

    package init() {}
}

/// Runs a protocol from a command line and exits with its code: the whole `main.swift` of a protocol
/// executable is `ProtocolMain.main(MyProtocol.self, launcher: MPIProtocolRunner.run)`.
public enum ProtocolMain {
    /// How a parsed command line becomes a run: it gets the protocol value and the settings the
    /// command line gives, and returns the run's report, or nil on ranks that print no summary. The
    /// default runs every rank in this process; `MPIProtocolRunner.run` (StepFlowMPI) runs on the MPI
    /// world. What it throws is printed as `error: …` and the process exits 2.
    public typealias Launcher<P: StepProtocol> = @Sendable (P, RunSettings) throws -> RunReport?

    /// Parses `arguments` (default: the process's) as `[run] [run options] [protocol options]` or
    /// `status [--run-dir DIR] [--json]`, runs the protocol with `launcher`, prints the summary and
    /// exits: 0 when every step finished, 1 when a step failed or the run stalled, 2 on bad input or
    /// usage (parse errors, a run that cannot start), 128+signal when stopped by one. Never returns
    /// and never throws: every error becomes a message on standard error and an exit code.
    public static func main<P: StepProtocol>(_ type: P.Type, arguments: [String]? = nil,
                                             launcher: Launcher<P>? = nil) -> Never {
        let parsed: ParsableCommand
        do {
            parsed = try ProtocolRoot<P>.parseAsRoot(arguments)
        } catch {
            let code = ProtocolRoot<P>.exitCode(for: error)
            let message = ProtocolRoot<P>.fullMessage(for: error)
            if code == .success {
                print(message)
                exit(0)
            }
            // Every rank parses the same command line: one message is enough.
            if launchRank == 0 { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            exit(2)
        }
        guard let command = parsed as? ProtocolCommand<P> else {
            do {
                var other = parsed
                try other.run()
                exit(0)
            } catch {
                // `--help` arrives here too, as an error that asks for the help text.
                let code = ProtocolRoot<P>.exitCode(for: error)
                let message = ProtocolRoot<P>.fullMessage(for: error)
                if !message.isEmpty {
                    if code == .success { print(message) } else { FileHandle.standardError.write(Data((message + "\n").utf8)) }
                }
                exit(code == .success ? 0 : 2)
            }
        }
        SignalWatch.install()
        exit(run(command, launcher: launcher, watchSignals: true))
    }

    /// This process's rank as the launcher (mpirun, srun) tells it before MPI starts; 0 alone.
    package static var launchRank: Int {
        let env = ProcessInfo.processInfo.environment
        for name in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
            if let value = env[name].flatMap(Int.init) { return value }
        }
        return 0
    }

    /// Runs a parsed command line; returns the exit code.
    package static func run<P: StepProtocol>(_ command: ProtocolCommand<P>, launcher: Launcher<P>? = nil,
                                            watchSignals: Bool = false) -> Int32 {
        run(P(params: command.params), options: command.options, launcher: launcher, watchSignals: watchSignals)
    }

    /// Runs a protocol value with the given run options (a command line that is not a
    /// `ProtocolCommand`, such as `stepflow run FILE`); returns the exit code.
    package static func run<P: StepProtocol>(_ proto: P, options: RunOptions, launcher: Launcher<P>? = nil,
                                            watchSignals: Bool = false) -> Int32 {
        var settings = options.settings(printer: ProgressPrinter(mode: options.progress))
        settings.watchSignals = watchSignals
        let launch: Launcher<P> = launcher ?? { p, s in try ProtocolRunner.launchLocal(p, settings: s) }
        do {
            guard let report = try launch(proto, settings) else { return 0 }
            print(TerminalText.visible(RunSummary.text(report, protocolName: P.protocolName, runDirectory: settings.runDirectory)))
            if let failure = report.databaseError {
                FileHandle.standardError.write(Data("warning: \(failure). The database may not hold the end of this run.\n".utf8))
            }
            // A stopped run's commands were told to end; none may outlive this process.
            ChildProcesses.terminateAll()
            return report.exitCode
        } catch RunSetupError.reportedElsewhere {
            return 2
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            return 2
        }
    }
}

/// `--fingerprint`: what tells a changed input file from an unchanged one.
package enum FingerprintMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// Size and modification time: cheap, like Nextflow's standard mode.
    case stat
    /// A hash (XXH64) of the bytes, read whole: a file rewritten with the same bytes is unchanged.
    case content
}
