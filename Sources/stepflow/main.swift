import ArgumentParser
import Foundation
import StepFlow

/// The StepFlow command line.
struct StepFlowCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stepflow",
        abstract: "Run graphs of steps across MPI ranks.",
        discussion: "Exit codes: 0 done, 1 a run failed, 2 bad input or usage.",
        subcommands: [RunWorkflowCommand.self, ValidateCommand.self, StatusCommand.self, GraphCommand.self,
                      TraceCommand.self, ReportCommand.self, BenchCommand.self, TaskBenchCommand.self, METGCommand.self,
                      TopCommand.self, ServeCommand.self])
}

// Bad usage exits 2, as it does for every protocol executable (argument-parser's default is 64).
do {
    var command = try StepFlowCLI.parseAsRoot()
    try command.run()
} catch {
    if StepFlowCLI.exitCode(for: error) == .validationFailure {
        // Every rank parses the same command line (stepflow run under mpirun): one message is enough.
        if ProtocolMain.launchRank == 0 { FileHandle.standardError.write(Data((StepFlowCLI.fullMessage(for: error) + "\n").utf8)) }
        exit(2)
    }
    StepFlowCLI.exit(withError: error)
}
