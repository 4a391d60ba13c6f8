import ArgumentParser
import Foundation
import StepFlow
import StepFlowCommand

extension GraphFormat: ExpressibleByArgument {}

/// `stepflow graph FILE|DIR`: draws a workflow file's expanded steps, or a run directory's steps
/// coloured by status (any protocol's run: a step's label is its command's name, or its function).
struct GraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Print a workflow's or a run's step graph as Graphviz DOT or Mermaid.",
        discussion: "dot: stepflow graph pipeline.yaml | dot -Tsvg > graph.svg. A run directory's steps are coloured by status. Exit codes: 0 printed, 2 no readable workflow or run database there.")

    @Argument(help: "A workflow file (YAML or JSON), or a run directory (it holds run.db).")
    var source: String

    @Option(help: "Output format: \(GraphFormat.allCases.map(\.rawValue).joined(separator: " or ")).")
    var format: GraphFormat = .dot

    func run() throws {
        let nodes: [GraphNode]
        do {
            nodes = try Self.nodes(source)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(2)
        }
        print(GraphExport.render(nodes, format: format), terminator: "")
    }

    static func nodes(_ source: String) throws -> [GraphNode] {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: source, isDirectory: &isFolder), isFolder.boolValue {
            let run = try RunStore.read(runDirectory: URL(fileURLWithPath: source))
            return run.steps.map { record in
                let label = record.spec.args.first.flatMap(CommandSpec.init)?.name ?? record.spec.function
                return GraphNode(id: record.id, label: label, prerequisites: record.prerequisites, status: record.status)
            }
        }
        let workflow = try Workflow.load(path: source)
        return workflow.steps.enumerated().map { index, step in
            GraphNode(id: index + 1, label: step.command.name, prerequisites: step.after.map { $0 + 1 })
        }
    }
}
