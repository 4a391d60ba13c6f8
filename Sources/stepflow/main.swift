import ArgumentParser

/// The StepFlow command line.
struct StepFlowCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stepflow",
        abstract: "Run graphs of steps across MPI ranks.",
        subcommands: [BenchCommand.self])
}

StepFlowCLI.main()
