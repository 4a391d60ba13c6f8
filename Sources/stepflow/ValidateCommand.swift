import ArgumentParser
import Foundation
import StepFlowCommand

/// `stepflow validate FILE`: reads a workflow the way `stepflow run` would (parse, expand globs and
/// lists, check names, `after` and the graph) and says how many steps it makes. Runs nothing and
/// writes nothing, so it is safe to use in an editor hook or CI.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a workflow file and count its steps; runs nothing.",
        discussion: "Globs are matched against the files there now. Exit codes: 0 valid, 2 an error (printed as file:line:column: what is wrong and what to do).")

    @Argument(help: "The workflow file (YAML or JSON).")
    var file: String

    func run() throws {
        let workflow: Workflow
        do {
            workflow = try Workflow.load(path: file)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(2)
        }
        print(Self.summary(workflow, shownAs: file))
    }

    /// `FILE: valid, N steps`, then each step of the file with how many steps it expanded to, in the
    /// order they run.
    static func summary(_ workflow: Workflow, shownAs file: String) -> String {
        let count = workflow.steps.count
        var lines = ["\(file): valid, \(count) step\(count == 1 ? "" : "s")"]
        if workflow.threads != nil || workflow.mpi != nil {
            lines.append("parallel: threads \(workflow.threads.map(String.init) ?? "default"), mpi \(workflow.mpi.map(String.init) ?? "default")")
        }
        let groups = workflow.groups.sorted { ($0.value.first ?? 0) < ($1.value.first ?? 0) }
        let width = groups.map(\.key.count).max() ?? 0
        for (name, indexes) in groups {
            let foreach = workflow.steps[indexes[0]].command.name != name
            let padding = String(repeating: " ", count: width - name.count)
            lines.append("  \(name)\(padding)  \(indexes.count)\(foreach ? " (foreach)" : "")")
        }
        return lines.joined(separator: "\n")
    }
}
