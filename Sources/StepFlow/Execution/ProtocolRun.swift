import Foundation

/// How a run is launched, from the command line or a test. A value left nil falls back to the
/// environment (`STEPFLOW_THREADS`, `STEPFLOW_MPI`), then to the protocol's `addParallelSection`.
///
/// `ProtocolMain.main` makes them from the command line and hands them to its launcher; code that
/// calls `MPIProtocolRunner.run` itself makes its own.
public struct RunSettings: Sendable {
    /// Where the run's database, logs and outputs go (`--run-dir`).
    public var runDirectory: URL
    /// Worker threads per rank (`--threads`).
    public var threads: Int?
    /// MPI ranks (`--mpi`); must equal the MPI world size.
    public var mpi: Int?
    /// The GPU ids of a node (`--gpus 0,1,2`); the ranks on a node share them out.
    public var gpus: [Int]?
    /// After a failure, run everything that does not depend on it (`--keep-going`, S7).
    public var keepGoing = false
    /// Overrides the protocol's `stepsCheckInterval`.
    public var stepsCheckInterval: Duration?
    /// Receives progress counts on rank 0 while the run lives.
    package var progress: (@Sendable (ProgressSnapshot) -> Void)?
    /// The environment the run reads (`STEPFLOW_THREADS`, `STEPFLOW_MPI`, `CUDA_VISIBLE_DEVICES`,
    /// Slurm's variables, …).
    public var environment: [String: String]
    /// Whether rank 0 records the run in its database (`--no-store` in the benchmark turns it off).
    package var storeEnabled = true
    /// What to do with a run already in the run directory (S9).
    public var mode: RunMode = .new
    /// With `.continueRun`: print what a continue would do, run nothing, write nothing.
    public var dryRun = false
    /// A step that was running when this many launches died is recorded failed instead of run again.
    public var crashLimit = 3
    /// The command line, recorded with the run.
    public var commandLine: [String] = Array(CommandLine.arguments.dropFirst())
    /// Notes for the user about how the run started (a continued run, an old run set aside) and what
    /// happened to it (steps dropped because their inserter no longer inserts them).
    public var notes: (@Sendable (String) -> Void)?
    /// Whether SIGINT/SIGTERM stop the run (the command line turns it on; tests leave it off).
    public var watchSignals = false
    /// Seconds before the allocation's end (`--stop-before`) when no step starts any more.
    public var stopBefore: Double?
    /// A rank that sends nothing (not even its heartbeat, every second) for this long ends the run,
    /// recorded so that `--continue` can go on at once; nil waits forever.
    public var rankTimeout: Duration? = .seconds(60)
    /// The largest result, in bytes, a step may hand its dependents (S13).
    public var resultLimit = StepResult.defaultLimit
    /// Whether declared inputs are fingerprinted by their bytes' hash (`--fingerprint content`)
    /// rather than their size and modification time.
    public var fingerprintContent = false

    /// Settings for a new run in `runDirectory`; the rest as the command line's defaults.
    public init(runDirectory: URL, threads: Int? = nil, mpi: Int? = nil, gpus: [Int]? = nil, keepGoing: Bool = false,
                stepsCheckInterval: Duration? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.runDirectory = runDirectory
        self.threads = threads
        self.mpi = mpi
        self.gpus = gpus
        self.keepGoing = keepGoing
        self.stepsCheckInterval = stepsCheckInterval
        self.environment = environment
    }
}

/// What a run does with a run directory that already holds a run (S9).
public enum RunMode: Sendable, Equatable {
    /// Start a run; refuse a directory that already holds one.
    case new
    /// Keep what finished, run the rest (`--continue`).
    case continueRun
    /// Set the old run aside and start over (`--restart`).
    case restart
}

/// Why a run could not start. These are the user's to fix; the command line exits 2 on them.
package enum RunSetupError: Error, CustomStringConvertible, Sendable {
    case invalidSetting(String)
    case runDirectory(path: String, reason: String)
    case insertion(String)
    case worldSizeMismatch(mpi: Int, worldSize: Int, source: String)
    case store(RunStoreError)
    case continuePlan(ContinuePlanError)
    case lock(RunDirectoryLockError)
    /// Ranks numbered different steps in `insertAllSteps`.
    case nondeterministic(String)
    /// Another rank (rank 0) prints why the run cannot start; this rank only exits.
    case reportedElsewhere

    package var description: String {
        switch self {
        case .invalidSetting(let text): return text
        case .runDirectory(let path, let reason):
            return "cannot use run directory '\(path)': \(reason). Choose a writable place with --run-dir DIR."
        case .insertion(let text): return "insertAllSteps failed: \(text)"
        case .reportedElsewhere: return "the run could not start (rank 0 says why)"
        case .store(let error): return error.description
        case .continuePlan(let error): return error.description
        case .lock(let error): return error.description
        case .nondeterministic(let text):
            return "insertAllSteps is not deterministic: \(text). Every rank runs insertAllSteps and must insert the same steps: make it depend only on the command line and on inputs every rank reads alike (no clocks, random numbers, ranks or host names)."
        case .worldSizeMismatch(let mpi, let worldSize, let source):
            let launch = mpi == 1 ? "run it without mpirun, or with `mpirun -np 1`"
                : "launch it with `mpirun -np \(mpi) …` or `./run_mpi.sh --mpi \(mpi) -- …`"
            return "this run asks for mpi=\(mpi) (\(source)) but was launched on \(worldSize) MPI rank(s). Either \(launch), or drop the mpi setting so the run takes the world size."
        }
    }
}

/// The parallel section a run ends up with, and where each value came from.
package struct ResolvedParallelSection: Sendable, Equatable {
    package var threads: Int
    package var mpi: Int
    /// The GPU ids of this rank's node, before the node's ranks share them out.
    package var gpus: [Int]
    /// Where `mpi` came from, for error messages (`--mpi`, `STEPFLOW_MPI`, the protocol, the world size).
    package var mpiSource: String

    /// The most worker threads a rank runs: far above any node's cores, low enough that a typo
    /// (`--threads 100000`) is refused instead of exhausting the process's threads.
    package static let maximumThreads = 1024
    /// The most GPUs a rank hands out.
    package static let maximumGPUs = 64

    /// Flags win over the environment, which wins over the protocol's defaults. Without an explicit
    /// mpi anywhere, `worldSize` is taken.
    package static func resolve(form: ProtocolForm, settings: RunSettings, worldSize: Int?) throws(RunSetupError) -> ResolvedParallelSection {
        func env(_ name: String) throws(RunSetupError) -> Int? {
            guard let raw = settings.environment[name], !raw.isEmpty else { return nil }
            guard let v = Int(raw) else { throw .invalidSetting("\(name)='\(raw)' is not a whole number; set it to 1 or more, or unset it.") }
            return v
        }
        let envThreads = try env("STEPFLOW_THREADS")
        let envMPI = try env("STEPFLOW_MPI")
        let threads = settings.threads ?? envThreads ?? form.threads
        let threadsSource = settings.threads != nil ? "--threads" : envThreads != nil ? "STEPFLOW_THREADS" : "addParallelSection"
        let (mpi, mpiSource): (Int, String) =
            if let m = settings.mpi { (m, "--mpi") }
            else if let m = envMPI { (m, "STEPFLOW_MPI") }
            else if let worldSize { (worldSize, "the MPI world size") }
            else { (form.mpi, "addParallelSection") }
        let gpus: [Int]
        if let list = settings.gpus ?? (form.gpus.isEmpty ? nil : form.gpus) {
            gpus = list
        } else {
            gpus = try GPUList.fromEnvironment(settings.environment)
        }
        guard threads >= 1 else { throw .invalidSetting("threads must be at least 1 (got \(threads) from \(threadsSource)).") }
        guard threads <= maximumThreads else {
            throw .invalidSetting("threads must be at most \(maximumThreads) worker threads per rank (got \(threads) from \(threadsSource)). Use more ranks (--mpi) for more step slots.")
        }
        guard mpi >= 1 else { throw .invalidSetting("mpi must be at least 1 (got \(mpi) from \(mpiSource)).") }
        guard gpus.count <= maximumGPUs else { throw .invalidSetting("a node may list at most \(maximumGPUs) GPUs (got \(gpus.count)).") }
        guard gpus.allSatisfy({ (0...GPUList.maximumID).contains($0) }) else {
            throw .invalidSetting("GPU ids must be between 0 and \(GPUList.maximumID) (got \(gpus.map(String.init).joined(separator: ","))).")
        }
        if let worldSize, mpi != worldSize {
            throw .worldSizeMismatch(mpi: mpi, worldSize: worldSize, source: mpiSource)
        }
        return ResolvedParallelSection(threads: threads, mpi: mpi, gpus: gpus, mpiSource: mpiSource)
    }
}

/// Runs a protocol: inserts its steps on rank 0, then lets the coordinator drive the ranks.
package enum ProtocolRunner {
    /// What rank 0 knows once `insertAllSteps` ran and, for `--continue`, the plan is made; nothing is
    /// written to the run directory yet but its lock.
    package struct Rank0Plan: Sendable {
        package let state: SchedulerState
        package let config: SchedulerConfig
        package let previous: StoredRun?
        package let plan: ContinuePlan?
        package let lock: RunDirectoryLock?
        /// What `insertAllSteps` did, to compare with the other ranks.
        package let digest: InsertDigest
    }

    /// What rank 0 needs to run: the scheduler with the protocol's steps (or the continued graph), the
    /// run database opened as `settings.mode` says, and the run directory's lock.
    package struct Rank0Setup: Sendable {
        package let state: SchedulerState
        package let store: RunStore?
        package let lock: RunDirectoryLock?
        /// This launch's number in the run (1, then one more per `--continue`): logs of later
        /// launches go to their own folder, so no two runs of a step share a log file.
        package let launch: Int


    }

    /// Takes the run directory, checks what it holds, inserts the protocol's steps and, for
    /// `--continue`, plans the continued run (S9, S12). Writes nothing but the lock.
    /// - Parameter gpus: the GPU ids each rank hands out (see `GPUList.share`).
    package static func planRank0<P: StepProtocol>(_ proto: inout P, parallel: ResolvedParallelSection,
                                                  settings: RunSettings, prefetch: Int, gpus: [[Int]]) throws(RunSetupError) -> Rank0Plan {
        var lock: RunDirectoryLock?
        if settings.dryRun {
            // A dry run writes nothing, not even the run directory; a live run is not planned over.
            if let holder = RunDirectoryLock.holder(runDirectory: settings.runDirectory) {
                throw .lock(.held(runDirectory: settings.runDirectory.path, holder: holder))
            }
        } else {
            try RunDirectory.prepare(settings.runDirectory)
            if settings.storeEnabled {
                do {
                    lock = try RunDirectoryLock.acquire(runDirectory: settings.runDirectory)
                } catch {
                    throw .lock(error)
                }
            }
        }
        do {
            var previous: StoredRun?
            if settings.storeEnabled && settings.mode != .restart {
                do {
                    previous = try RunStore.inspect(runDirectory: settings.runDirectory)
                } catch {
                    throw RunSetupError.store(error)
                }
                if let previous {
                    if previous.protocolName != P.protocolName {
                        throw RunSetupError.store(.otherProtocol(path: RunStore.path(in: settings.runDirectory), found: previous.protocolName, expected: P.protocolName))
                    }
                    if settings.mode == .new {
                        throw RunSetupError.store(.alreadyHoldsRun(path: RunStore.path(in: settings.runDirectory), protocolName: previous.protocolName,
                                                                   status: previous.status, steps: previous.steps.count))
                    }
                }
            }
            var config = SchedulerConfig(ranks: parallel.mpi, threadsPerRank: parallel.threads, gpus: gpus,
                                         prefetch: prefetch, mode: proto.stepsExecutionMode,
                                         failurePolicy: settings.keepGoing ? .keepGoing : .stop)
            config.sendBehind = sendsBehind(environment: settings.environment)
            let state = SchedulerState(config)
            let digest = InsertDigest()
            let inserter = StepInserter(.protocolSteps, editor: DigestingEditor(state.editor, digest: digest), functionNames: P.functions.names)
            do {
                try proto.insertAllSteps(inserter)
            } catch {
                throw RunSetupError.insertion(ErrorText.sentence(error))
            }
            var plan: ContinuePlan?
            if let previous, settings.mode == .continueRun {
                let current = state.withScheduler { $0.graph.records }
                do {
                    plan = try ContinuePlan(current: current, previous: previous.steps, crashLimit: settings.crashLimit,
                                            legacy: previous.schemaVersion < 2)
                } catch {
                    throw RunSetupError.continuePlan(error)
                }
                // An unconfirmed step takes its request from its inserter's next insert (S12).
                for r in plan!.records where r.status != .finished && r.status != .failed && !plan!.unconfirmed.contains(r.id) {
                    do {
                        try Scheduler.validate(r.spec, threadsPerRank: parallel.threads, anyGPU: gpus.contains { !$0.isEmpty }, at: nil)
                    } catch {
                        throw RunSetupError.invalidSetting("recorded step \(r.id) cannot run in this launch: \(error)")
                    }
                }
            }
            return Rank0Plan(state: state, config: config, previous: previous, plan: plan, lock: lock, digest: digest)
        } catch let error as RunSetupError {
            lock?.release()
            throw error
        } catch {
            lock?.release()
            throw .insertion(ErrorText.sentence(error))
        }
    }

    /// Opens the run database as the plan says: continues the recorded run, or (after a restart sets
    /// the old run aside) creates a new one.
    package static func openStore<P: StepProtocol>(_ plan: Rank0Plan, for _: P.Type, parallel: ResolvedParallelSection,
                                                  settings: RunSettings) throws(RunSetupError) -> Rank0Setup {
        guard settings.storeEnabled else { return Rank0Setup(state: plan.state, store: nil, lock: plan.lock, launch: 1) }
        do {
            if let previous = plan.previous, let continued = plan.plan {
                let state = SchedulerState(plan.config, restoring: continued.records, unconfirmed: continued.unconfirmed)
                // The graph as rebuilt (steps skipped behind a failed one included) is what is written.
                let restored = state.withScheduler { s in
                    _ = s.takeChanged()
                    return s.graph.records
                }
                settings.notes?(continueNote(continued, previous: previous, runDirectory: settings.runDirectory))
                let store = try RunStore.reopen(runDirectory: settings.runDirectory, protocolName: P.protocolName,
                                                params: settings.commandLine, threads: parallel.threads, mpi: parallel.mpi,
                                                previousLaunches: previous.launches, steps: restored, environment: settings.environment)
                return Rank0Setup(state: state, store: store, lock: plan.lock, launch: store.launch)
            }
            if settings.mode == .continueRun {
                settings.notes?("no run to continue in \(settings.runDirectory.path); starting a new one")
            }
            if FileManager.default.fileExists(atPath: RunStore.path(in: settings.runDirectory)),
               let folder = try RunDirectory.setAside(settings.runDirectory, lockFileName: RunDirectoryLock.fileName) {
                settings.notes?("the previous run was set aside, whole, in \(folder)")
            }
            let store = try RunStore.create(runDirectory: settings.runDirectory, protocolName: P.protocolName,
                                            params: settings.commandLine, threads: parallel.threads, mpi: parallel.mpi,
                                            environment: settings.environment)
            if store.journal.mode == .rollback {
                settings.notes?("the run database uses a rollback journal: \(store.journal.reason)")
            }
            return Rank0Setup(state: plan.state, store: store, lock: plan.lock, launch: 1)
        } catch let error as RunStoreError {
            plan.lock?.release()
            throw .store(error)
        } catch let error as RunSetupError {
            plan.lock?.release()
            throw error
        } catch {
            plan.lock?.release()
            throw .runDirectory(path: settings.runDirectory.path, reason: ErrorText.sentence(error))
        }
    }

    static func continueNote(_ plan: ContinuePlan, previous: StoredRun, runDirectory: URL) -> String {
        var text = "continuing the run in \(runDirectory.path): \(plan.keptFinished) of \(plan.records.count) steps stay finished, \(plan.restored) restored from the database"
        if !plan.unconfirmed.isEmpty { text += " (\(plan.unconfirmed.count) wait for their inserter to insert them again)" }
        if plan.dropped > 0 { text += ", \(plan.dropped) recorded steps dropped (their inserter changed)" }
        let crashed = plan.reasons.values.filter { if case .crashLimit = $0 { return true } else { return false } }.count
        if crashed > 0 { text += ", \(crashed) recorded failed after dying with the job too often" }
        if plan.keptFinished == plan.records.count { text += "; nothing left to run" }
        return text
    }

    /// What `--continue --dry-run` prints: what would stay finished and why each other step would run.
    package static func dryRunText(_ plan: Rank0Plan, runDirectory: URL) -> String {
        guard let previous = plan.previous, let continued = plan.plan else {
            return "dry run: no run to continue in \(runDirectory.path); a --continue would start a new run."
        }
        var lines = ["dry run of --continue in \(runDirectory.path) (nothing was run or written):",
                     "  \(continued.records.count) steps: \(continued.keptFinished) stay finished, \(continued.records.count - continued.keptFinished) run again; \(continued.dropped) of \(previous.steps.count) recorded steps dropped"]
        let held = continued.unconfirmed.filter { continued.records[$0 - 1].status == .finished }.count
        if held > 0 {
            lines.append("  \(held) of the finished steps stay finished only if their inserter, which runs again, inserts them again (S12)")
        }
        lines.append("  steps that would run again:")
        for r in continued.records where r.status != .finished {
            // A command step by its name; a Swift step by its function and arguments.
            let shown = r.displayName != r.spec.function ? "'\(r.displayName)'"
                : "'\(r.spec.function)'(\(r.spec.args.map(\.description).joined(separator: ", ")))"
            lines.append("    \(r.id) \(shown): \(continued.reasons[r.id].map(\.description) ?? "runs again")")
        }
        let rerunningInserters = Set(continued.records.compactMap { r -> StepID? in
            guard case .step(let s) = r.insertedBy, continued.records[s - 1].status != .finished else { return nil }
            return s
        })
        if !rerunningInserters.isEmpty {
            lines.append("  plus whatever steps \(rerunningInserters.sorted().map(String.init).joined(separator: ", ")) insert beyond what they inserted before")
        }
        return lines.joined(separator: "\n")
    }

    /// Records how the run ended in its database, writes `report.json`, and releases the run
    /// directory (last: a launch that takes it over next finds everything in place). A failure of the
    /// last commit is added to the report, never swallowed.
    package static func finish(_ report: RunReport, setup: Rank0Setup, protocolName: String, runDirectory: URL) -> RunReport {
        var report = report
        let ending = LaunchEnding.of(report)
        if let failure = setup.store?.finish(status: report.statusName, ending: (ending.kind, ending.why, report.lostRanks)) {
            report = report.addingDatabaseError(failure)
        }
        do {
            try RunReportFile.write(report, protocolName: protocolName, to: runDirectory)
        } catch {
            FileHandle.standardError.write(Data("warning: could not write the run report: \(ErrorText.sentence(error))\n".utf8))
        }
        setup.lock?.release()
        return report
    }

    /// When no step may start any more (`--stop-before` before the allocation's end), and why; nil
    /// without `--stop-before`, or when the end is not known (said in a note).
    package static func launchDeadline(_ settings: RunSettings) -> (time: Double, why: String)? {
        guard let before = settings.stopBefore else { return nil }
        guard let end = AllocationEnd.find(settings.environment) else {
            settings.notes?("--stop-before: this launch's end is not known (no Slurm allocation, no STEPFLOW_END_TIME); steps start until the run ends")
            return nil
        }
        let stop = Date(timeIntervalSince1970: end.time - before)
        settings.notes?("no step starts after \(ISO8601DateFormatter().string(from: stop)), \(DurationText.text(before)) before the allocation ends (\(end.source))")
        return (end.time - before, "the allocation ends at \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: end.time))) (\(end.source)) and --stop-before \(DurationText.text(before))")
    }

    /// Whether steps are sent behind their prerequisites to the rank that runs them
    /// (`SchedulerConfig.sendBehind`); `STEPFLOW_SEND_BEHIND=0` turns it off.
    package static func sendsBehind(environment: [String: String]) -> Bool {
        environment["STEPFLOW_SEND_BEHIND"] != "0"
    }

    /// Steps sent ahead to each rank beyond its T slots (S6): at least 2, so a worker has its next step
    /// before it finishes the current one; `STEPFLOW_PREFETCH` overrides it. The same in one process
    /// as under `mpirun`.
    package static func prefetch(threads: Int, environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let raw = environment["STEPFLOW_PREFETCH"], let v = Int(raw), v >= 0 { return v }
        return min(max(2, threads), 8)
    }

    /// Runs a protocol with every rank in this process, or (with `settings.dryRun`) prints what a
    /// continue would do and returns nil.
    package static func launchLocal<P: StepProtocol>(_ proto: P, settings: RunSettings, worldSize: Int? = 1) throws(RunSetupError) -> RunReport? {
        guard settings.dryRun else { return try runLocal(proto, settings: settings, worldSize: worldSize) }
        var proto = proto
        var form = ProtocolForm()
        proto.defineParams(&form)
        let parallel = try ResolvedParallelSection.resolve(form: form, settings: settings, worldSize: worldSize)
        let plan = try planRank0(&proto, parallel: parallel, settings: settings, prefetch: 0, gpus: GPUList.oneNode(parallel))
        settings.notes?(dryRunText(plan, runDirectory: settings.runDirectory))
        return nil
    }

    /// Runs a protocol with every rank in this process (`InMemoryRanks`: the runtime of `mpirun` over
    /// in-memory mailboxes). With `worldSize` nil the run takes `mpi` from the settings or the protocol
    /// and simulates that many ranks.
    package static func runLocal<P: StepProtocol>(_ proto: P, settings: RunSettings, worldSize: Int? = 1) throws(RunSetupError) -> RunReport {
        var proto = proto
        var form = ProtocolForm()
        proto.defineParams(&form)
        let parallel = try ResolvedParallelSection.resolve(form: form, settings: settings, worldSize: worldSize)
        let plan = try planRank0(&proto, parallel: parallel, settings: settings, prefetch: prefetch(threads: parallel.threads, environment: settings.environment),
                                 gpus: GPUList.oneNode(parallel))
        let setup = try openStore(plan, for: P.self, parallel: parallel, settings: settings)
        let frozen = proto
        // Every rank of an in-process run is on this host.
        if let failure = setup.store?.recordHosts(Array(repeating: ProcessInfo.processInfo.hostName, count: parallel.mpi)) {
            settings.notes?(failure)
        }
        var executor = StepExecutor(frozen)
        executor.resultLimit = settings.resultLimit
        executor.fingerprintContent = settings.fingerprintContent
        let transport = InMemoryRanks.start(ranks: parallel.mpi, threads: parallel.threads, executor: executor,
                                            runDirectory: settings.runDirectory, launch: setup.launch)
        let coordinator = Coordinator(state: setup.state, transport: transport, functionNames: P.functions.names,
                                      hook: { try frozen.stepsCheck($0) },
                                      hookInterval: settings.stepsCheckInterval ?? frozen.stepsCheckInterval,
                                      progress: settings.progress, journal: setup.store, watchSignals: settings.watchSignals,
                                      notes: settings.notes, rankTimeout: settings.rankTimeout,
                                      launchDeadline: launchDeadline(settings))
        return finish(coordinator.run(), setup: setup, protocolName: P.protocolName, runDirectory: settings.runDirectory)
    }
}
