import ArgumentParser
import StepFlow

/// The StepFlow command line.
struct StepFlowCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stepflow",
        abstract: "Run graphs of steps across MPI ranks.",
        subcommands: [BenchCommand.self, StatusCommand.self])
}

StepFlowCLI.main()
