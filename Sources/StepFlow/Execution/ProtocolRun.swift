import Foundation

/// How a run is launched, from the command line or a test. A value left nil falls back to the
/// environment (`STEPFLOW_THREADS`, `STEPFLOW_MPI`), then to the protocol's `addParallelSection`.
public struct RunSettings: Sendable {
    public var runDirectory: URL
    public var threads: Int?
    public var mpi: Int?
    public var gpus: Int?
    public var keepGoing = false
    /// Overrides the protocol's `stepsCheckInterval`.
    public var stepsCheckInterval: Duration?
    /// Receives progress counts on rank 0 while the run lives.
    public var progress: (@Sendable (ProgressSnapshot) -> Void)?
    public var environment: [String: String]
    /// Whether rank 0 records the run in its database (`--no-store` in the benchmark turns it off).
    public var storeEnabled = true
    /// What to do with a run already in the run directory (S9).
    public var mode: RunMode = .new
    /// The command line, recorded with the run.
    public var commandLine: [String] = Array(CommandLine.arguments.dropFirst())
    /// Notes for the user about how the run started (a continued run, an old database moved aside).
    public var notes: (@Sendable (String) -> Void)?
    /// Whether SIGINT/SIGTERM stop the run (the command line turns it on; tests leave it off).
    public var watchSignals = false

    public init(runDirectory: URL, threads: Int? = nil, mpi: Int? = nil, gpus: Int? = nil, keepGoing: Bool = false,
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
public enum RunSetupError: Error, CustomStringConvertible, Sendable {
    case invalidSetting(String)
    case runDirectory(path: String, reason: String)
    case insertion(String)
    case worldSizeMismatch(mpi: Int, worldSize: Int, source: String)
    case store(RunStoreError)
    /// Another rank (rank 0) prints why the run cannot start; this rank only exits.
    case reportedElsewhere

    public var description: String {
        switch self {
        case .invalidSetting(let text): return text
        case .runDirectory(let path, let reason):
            return "cannot use run directory '\(path)': \(reason). Choose a writable place with --run-dir DIR."
        case .insertion(let text): return "insertAllSteps failed: \(text)"
        case .reportedElsewhere: return "the run could not start (rank 0 says why)"
        case .store(let error): return error.description
        case .worldSizeMismatch(let mpi, let worldSize, let source):
            let launch = mpi == 1 ? "run it without mpirun, or with `mpirun -np 1`"
                : "launch it with `mpirun -np \(mpi) …` or `./run_mpi.sh --mpi \(mpi) -- …`"
            return "this run asks for mpi=\(mpi) (\(source)) but was launched on \(worldSize) MPI rank(s). Either \(launch), or drop the mpi setting so the run takes the world size."
        }
    }
}

/// The parallel section a run ends up with, and where each value came from.
public struct ResolvedParallelSection: Sendable, Equatable {
    public var threads: Int
    public var mpi: Int
    public var gpus: Int
    /// Where `mpi` came from, for error messages (`--mpi`, `STEPFLOW_MPI`, the protocol, the world size).
    public var mpiSource: String

    /// Flags win over the environment, which wins over the protocol's defaults. Without an explicit
    /// mpi anywhere, `worldSize` is taken.
    public static func resolve(form: ProtocolForm, settings: RunSettings, worldSize: Int?) throws(RunSetupError) -> ResolvedParallelSection {
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
        let gpus = settings.gpus ?? form.gpus
        guard threads >= 1 else { throw .invalidSetting("threads must be at least 1 (got \(threads) from \(threadsSource)).") }
        guard mpi >= 1 else { throw .invalidSetting("mpi must be at least 1 (got \(mpi) from \(mpiSource)).") }
        guard gpus >= 0 else { throw .invalidSetting("gpus must be 0 or more (got \(gpus)).") }
        if let worldSize, mpi != worldSize {
            throw .worldSizeMismatch(mpi: mpi, worldSize: worldSize, source: mpiSource)
        }
        return ResolvedParallelSection(threads: threads, mpi: mpi, gpus: gpus, mpiSource: mpiSource)
    }
}

/// Runs a protocol: inserts its steps on rank 0, then lets the coordinator drive the ranks.
public enum ProtocolRunner {
    /// Creates the run directory, or explains why it cannot.
    public static func prepareRunDirectory(_ url: URL) throws(RunSetupError) {
        do {
            try FileManager.default.createDirectory(at: url.appendingPathComponent("logs"), withIntermediateDirectories: true)
        } catch {
            throw .runDirectory(path: url.path, reason: whyNotCreatable(url) ?? (error as NSError).localizedDescription)
        }
        guard FileManager.default.isWritableFile(atPath: url.path) else {
            throw .runDirectory(path: url.path, reason: "it is not writable")
        }
    }

    /// Why a folder cannot be created, told from its nearest existing ancestor.
    private static func whyNotCreatable(_ url: URL) -> String? {
        var ancestor = url.standardizedFileURL
        var child = ancestor
        while !FileManager.default.fileExists(atPath: ancestor.path) && ancestor.path != "/" {
            child = ancestor
            ancestor.deleteLastPathComponent()
        }
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: ancestor.path, isDirectory: &isDir)
        if !isDir.boolValue { return "'\(ancestor.path)' is a file, not a folder" }
        if ancestor.path != url.standardizedFileURL.path && !FileManager.default.isWritableFile(atPath: ancestor.path) {
            return "cannot create folders in '\(ancestor.path)' (permission denied or read-only)"
        }
        if child.path != ancestor.path && mkdir(child.path, 0o755) != 0 {
            return "cannot create '\(child.path)': \(String(cString: strerror(errno)))"
        }
        return nil
    }

    /// What rank 0 needs to run: the scheduler with the protocol's steps (or the continued graph) and
    /// the run database, opened as `settings.mode` says.
    public struct Rank0Setup: Sendable {
        public let state: SchedulerState
        public let store: RunStore?
    }

    /// Creates the run directory, inserts the protocol's steps and opens the run database (S8, S9).
    public static func prepareRank0<P: StepProtocol>(_ proto: inout P, parallel: ResolvedParallelSection,
                                                     settings: RunSettings, prefetch: Int) throws(RunSetupError) -> Rank0Setup {
        try prepareRunDirectory(settings.runDirectory)
        var previous: StoredRun?
        if settings.storeEnabled && settings.mode != .restart {
            do {
                previous = try RunStore.inspect(runDirectory: settings.runDirectory)
            } catch {
                throw .store(error)
            }
            if let previous {
                if previous.protocolName != P.protocolName {
                    throw .store(.otherProtocol(path: RunStore.path(in: settings.runDirectory), found: previous.protocolName, expected: P.protocolName))
                }
                if settings.mode == .new {
                    throw .store(.alreadyHoldsRun(path: RunStore.path(in: settings.runDirectory), protocolName: previous.protocolName,
                                                  status: previous.status, steps: previous.steps.count))
                }
            } else if settings.mode == .continueRun {
                settings.notes?("no run to continue in \(settings.runDirectory.path); starting a new one")
            }
        }
        let config = SchedulerConfig(ranks: parallel.mpi, threadsPerRank: parallel.threads, gpusPerRank: parallel.gpus,
                                     prefetch: prefetch, mode: proto.stepsExecutionMode,
                                     failurePolicy: settings.keepGoing ? .keepGoing : .stop)
        var state = SchedulerState(config)
        let inserter = StepInserter(.protocolSteps, editor: state.editor, functionNames: P.functions.names)
        do {
            try proto.insertAllSteps(inserter)
        } catch {
            throw .insertion(String(describing: error))
        }
        guard settings.storeEnabled else { return Rank0Setup(state: state, store: nil) }
        do {
            if let previous, settings.mode == .continueRun {
                let current = state.withScheduler { $0.graph.records }
                let plan = ContinuePlan(current: current, previous: previous.steps)
                state = SchedulerState(config, restoring: plan.records)
                _ = state.withScheduler { $0.takeChanged() }
                settings.notes?("continuing the run in \(settings.runDirectory.path): \(plan.keptFinished) of \(plan.records.count) steps stay finished, \(plan.restored) restored from the database")
                let store = try RunStore.reopen(runDirectory: settings.runDirectory, protocolName: P.protocolName,
                                                params: settings.commandLine, threads: parallel.threads, mpi: parallel.mpi, steps: plan.records)
                return Rank0Setup(state: state, store: store)
            }
            let (store, moved) = try RunStore.create(runDirectory: settings.runDirectory, protocolName: P.protocolName,
                                                     params: settings.commandLine, threads: parallel.threads, mpi: parallel.mpi)
            if let moved { settings.notes?("the previous run's database was moved to \(moved)") }
            return Rank0Setup(state: state, store: store)
        } catch {
            throw .store(error)
        }
    }

    /// Records how the run ended in its database.
    public static func finish(_ report: RunReport, store: RunStore?) {
        store?.finish(status: report.outcome.statusName)
    }

    /// Runs a protocol with every rank in this process (`LocalTransport`). With `worldSize` nil the
    /// run takes `mpi` from the settings or the protocol and simulates that many ranks.
    public static func runLocal<P: StepProtocol>(_ proto: P, settings: RunSettings, worldSize: Int? = 1) throws(RunSetupError) -> RunReport {
        var proto = proto
        var form = ProtocolForm()
        proto.defineParams(&form)
        let parallel = try ResolvedParallelSection.resolve(form: form, settings: settings, worldSize: worldSize)
        let setup = try prepareRank0(&proto, parallel: parallel, settings: settings, prefetch: 0)
        let frozen = proto
        let transport = LocalTransport(ranks: parallel.mpi, threads: parallel.threads, executor: StepExecutor(frozen),
                                       runDirectory: settings.runDirectory)
        let coordinator = Coordinator(state: setup.state, transport: transport, functionNames: P.functions.names,
                                      hook: { try frozen.stepsCheck($0) },
                                      hookInterval: settings.stepsCheckInterval ?? frozen.stepsCheckInterval,
                                      progress: settings.progress, journal: setup.store, watchSignals: settings.watchSignals)
        let report = coordinator.run()
        finish(report, store: setup.store)
        return report
    }
}
