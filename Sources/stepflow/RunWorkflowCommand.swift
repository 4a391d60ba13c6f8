import ArgumentParser
import StepFlow
import StepFlowCommand
import StepFlowMPI

/// `stepflow run FILE`: a workflow file's commands on StepFlow, under `run_mpi.sh`, `mpirun`, `srun`
/// or alone, like any protocol executable.
struct RunWorkflowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a workflow file (YAML or JSON) of shell commands on StepFlow.",
        discussion: """
            Every rank reads FILE; steps run on M ranks × T threads, recorded in the run directory's run.db.
            Exit codes: 0 every step finished, 1 a step failed or the run stalled, 2 bad input or usage,
            130/143 stopped by SIGINT/SIGTERM (finish it with --continue).
            """)

    @OptionGroup var options: RunOptions
    @OptionGroup var workflow: WorkflowProtocol.Params

    func run() throws {
        SignalWatch.install()
        let code = ProtocolMain.run(WorkflowProtocol(params: workflow), options: options,
                                    launcher: MPIProtocolRunner.run, watchSignals: true)
        throw ExitCode(code)
    }
}
