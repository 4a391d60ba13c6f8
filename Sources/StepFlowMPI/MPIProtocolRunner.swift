import Foundation
import StepFlow

/// Runs a protocol on the MPI world: every rank builds the protocol and numbers its steps (S3); rank 0
/// keeps the graph and coordinates; every rank, rank 0 included, runs T workers.
public enum MPIProtocolRunner {
    /// Runs `proto` on this rank: every rank of the MPI world (or this process alone, without mpirun)
    /// calls it with the same protocol value and settings; it initializes MPI, and finalizes it
    /// before it returns. As `ProtocolMain`'s launcher: `launcher: MPIProtocolRunner.run`.
    /// - Returns: the run's report on rank 0, nil on the other ranks (and on every rank for a
    ///   `--continue --dry-run`, which prints its plan through `settings.notes`).
    /// - Throws: an error whose description is the message for the user when the run cannot start
    ///   (bad settings, a run directory that is unusable or owned by a live launch, ranks whose
    ///   `insertAllSteps` differ, `insertAllSteps` throwing). Rank 0's carries the message; the other
    ///   ranks throw one that says rank 0 reports it. `ProtocolMain` prints only rank 0's, and every
    ///   rank exits 2.
    public static func run<P: StepProtocol>(_ proto: P, settings: RunSettings) throws -> RunReport? {
        let world = MPIWorld.initialize()
        let report: RunReport?
        do {
            report = try run(proto, settings: settings, world: world)
        } catch {
            world.finalize()
            if case RunSetupError.reportedElsewhere = error {
                // Rank 0 threw the message at the same point, and its caller prints it once this
                // returns; finalize let every rank go at once, and mpirun ends the whole job as soon as
                // one rank exits non-zero: a worker that left at once took rank 0's message with it
                // (seen in CI for a nondeterministic insertAllSteps: only mpirun's own text). Under
                // mpirun, rank 0's exit ends this wait sooner.
                Thread.sleep(forTimeInterval: Self.reportGraceSeconds)
            }
            throw error
        }
        // After a signal, rank 0 ends without MPI_Finalize: the launcher (mpirun, srun) is tearing the
        // job down and may never complete finalize's exchange; the run database is already flushed.
        // A rank that stopped answering would never finish finalize's exchange either.
        if case .aborted = report?.outcome {} else if report?.ranksAbandoned != true { world.finalize() }
        return report
    }

    /// How long a worker rank waits before it leaves a launch that could not start (see `run`).
    static let reportGraceSeconds = 2.0

    /// Runs `proto` on an initialized world and leaves MPI initialized, so one launch can hold
    /// several runs (the benchmark does). Every rank must call it with the same inputs.
    package static func run<P: StepProtocol>(_ proto: P, settings: RunSettings, world: MPIWorld) throws -> RunReport? {
        // Under mpirun, MPI's initialization installs handlers of its own: ours go in after it.
        if settings.watchSignals {
            if world.rank == 0 { SignalWatch.install() } else { SignalWatch.ignoreOnWorker() }
        }
        var proto = proto
        var form = ProtocolForm()
        proto.defineParams(&form)
        // Every rank resolves the same values from the same inputs, so every rank fails alike, at once.
        let parallel: ResolvedParallelSection
        do {
            parallel = try ResolvedParallelSection.resolve(form: form, settings: settings, worldSize: world.size)
        } catch {
            if world.rank == 0 { throw error }
            throw RunSetupError.reportedElsewhere
        }
        // The ranks of a node share its GPUs out; rank 0 learns every rank's share.
        let node = world.nodeRank()
        let gpus = world.gatherGPUs(GPUList.share(of: parallel.gpus, localRank: node.rank, localSize: node.size))
        var failure: RunSetupError?
        var plan: ProtocolRunner.Rank0Plan?
        let digest: InsertDigest
        if world.rank == 0 {
            do throws(RunSetupError) {
                plan = try ProtocolRunner.planRank0(&proto, parallel: parallel, settings: settings,
                                                    prefetch: ProtocolRunner.prefetch(threads: parallel.threads, environment: settings.environment),
                                                    gpus: gpus.lists)
            } catch {
                failure = error
            }
            digest = plan?.digest ?? InsertDigest()
        } else {
            digest = InsertDigest()
            let numberer = StepNumberer(threadsPerRank: parallel.threads, anyGPU: gpus.any)
            do {
                try proto.insertAllSteps(StepInserter(.protocolSteps, editor: DigestingEditor(numberer, digest: digest),
                                                      functionNames: P.functions.names))
            } catch {
                failure = .insertion(ErrorText.sentence(error))
            }
        }
        let flags = world.orAcrossRanks(failure == nil ? 0 : world.rank == 0 ? 2 : 1)
        if flags != 0 {
            plan?.lock?.release()
            if world.rank == 0 {
                throw failure ?? .insertion("a worker rank could not insert the protocol's steps; its message is above")
            }
            if flags & 2 == 0, let failure {
                FileHandle.standardError.write(Data("rank \(world.rank): \(failure)\n".utf8))
            }
            throw RunSetupError.reportedElsewhere
        }
        if let disagreement = compareInserts(digest, world: world) {
            plan?.lock?.release()
            if world.rank == 0 { throw disagreement }
            throw RunSetupError.reportedElsewhere
        }
        if settings.dryRun {
            if let plan { settings.notes?(ProtocolRunner.dryRunText(plan, runDirectory: settings.runDirectory)) }
            return nil
        }
        var setup: ProtocolRunner.Rank0Setup?
        if let plan {
            do {
                setup = try ProtocolRunner.openStore(plan, for: P.self, parallel: parallel, settings: settings)
            } catch {
                failure = error
            }
        }
        // Rank 0 tells every rank the launch number (its logs' folder); 0 means it could not start.
        let launch = Int(world.maxAcrossRanks(world.rank == 0 ? Double(setup?.launch ?? 0) : 0))
        guard launch > 0 else {
            if world.rank == 0 { throw failure ?? .insertion("the run database could not be opened") }
            throw RunSetupError.reportedElsewhere
        }
        let frozen = proto
        var executor = StepExecutor(frozen)
        executor.resultLimit = settings.resultLimit
        executor.fingerprintContent = settings.fingerprintContent
        let hosts = world.hostNames()
        guard world.rank == 0, let setup else {
            let ended = WorkerRuntime(rank: world.rank, messenger: MPIMessenger(), threads: parallel.threads, executor: executor,
                                      runDirectory: settings.runDirectory, launch: launch).run()
            if case .unreadable(let message) = ended {
                FileHandle.standardError.write(Data("stepflow: \(message). Are all ranks running the same build of the program?\n".utf8))
                world.abort(70)
            }
            if ended == .aborted {
                // The commands its steps started end first: none may outlive the rank.
                ChildProcesses.terminateAll()
                // Rank 0 exits with 128+signal once its summary is out, and the launcher then ends every
                // rank; a worker that outlives it (a launcher that does not) leaves on its own.
                sleep(5)
                _exit(0)
            }
            return nil
        }
        if let failure = setup.store?.recordHosts(hosts) { settings.notes?(failure) }
        let transport = RankLink(ranks: world.size, messenger: MPIMessenger(), threads: parallel.threads, executor: executor,
                                 runDirectory: settings.runDirectory, launch: launch, hosts: hosts)
        let report = Coordinator(state: setup.state, transport: transport, functionNames: P.functions.names,
                                 hook: { try frozen.stepsCheck($0) },
                                 hookInterval: settings.stepsCheckInterval ?? frozen.stepsCheckInterval,
                                 progress: settings.progress, journal: setup.store, watchSignals: settings.watchSignals,
                                 notes: settings.notes, rankTimeout: settings.rankTimeout,
                                 launchDeadline: ProtocolRunner.launchDeadline(settings)).run()
        return ProtocolRunner.finish(report, setup: setup, protocolName: P.protocolName, runDirectory: settings.runDirectory)
    }

    /// Every rank ran `insertAllSteps`; all must have inserted the same steps (S3). Returns the error
    /// rank 0 reports when one did not (other ranks get `.reportedElsewhere`).
    static func compareInserts(_ digest: InsertDigest, world: MPIWorld) -> RunSetupError? {
        guard world.size > 1 else { return nil }
        let mine = digest.value
        let rank0Hash = world.broadcastFromRank0(mine.hash)
        let rank0Steps = Int(world.maxAcrossRanks(world.rank == 0 ? Double(mine.steps) : 0))
        let differs = world.rank != 0 && (mine.hash != rank0Hash || mine.steps != rank0Steps)
        let worst = Int(world.maxAcrossRanks(differs ? Double(world.rank) : 0))
        guard worst > 0 else { return nil }
        let theirs = Int(world.maxAcrossRanks(world.rank == worst ? Double(mine.steps) : 0))
        guard world.rank == 0 else { return .reportedElsewhere }
        let same = theirs == rank0Steps ? " (as many, but not the same steps or prerequisites)" : ""
        return .nondeterministic("rank \(worst) numbered \(theirs) steps, rank 0 numbered \(rank0Steps)\(same)")
    }
}
