import ArgumentParser
import Foundation
import StepFlow

/// `stepflow run FILE`: a workflow file's command steps as a protocol on the same engine as any Swift
/// protocol (ranks × threads, the run database, `--continue`, failure policies). Every rank loads the
/// same file and inserts the same steps (S3); a step's argument is its command (`CommandSpec`), so a
/// continued run keeps a finished step exactly when its command did not change (S9).
package struct WorkflowProtocol: StepProtocol {
    package struct Params: ParsableArguments, Sendable {
        @Argument(help: "The workflow file (YAML or JSON).")
        package var file: String

        package init() {}

        package func validate() throws {
            // Refused before anything starts: a workflow that does not load runs nothing (exit 2). The
            // message alone: nothing was wrong with the command line, so no usage banner follows it,
            // and one rank says it (every rank reads the file).
            do {
                _ = try Workflow.load(path: file)
            } catch {
                if ProtocolMain.launchRank == 0 { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
                throw ExitCode(2)
            }
        }
    }

    /// The one step function: run the command in the step's argument.
    package static let commandFunction = "command"
    package static let protocolName = "Workflow"

    package static let functions: StepFunctions<WorkflowProtocol> = [
        commandFunction: { p, step in try p.runCommand(step) },
    ]

    package let params: Params
    private let loaded: Result<Workflow, WorkflowError>
    /// Workflow step names and the ids of their steps, set by insertAllSteps, the same on every rank.
    private var ids: [String: [StepID]] = [:]

    package init(params: Params) {
        self.params = params
        loaded = Result { () throws(WorkflowError) in try Workflow.load(path: params.file) }
    }

    package func defineParams(_ form: inout ProtocolForm) {
        guard case .success(let workflow) = loaded else { return }
        form.addParallelSection(threads: workflow.threads ?? 1, mpi: workflow.mpi ?? 1)
    }

    package mutating func insertAllSteps(_ steps: StepInserter) throws {
        let workflow = try loaded.get()
        var stepIDs: [StepID] = []
        stepIDs.reserveCapacity(workflow.steps.count)
        for s in workflow.steps {
            let id = try steps.insertFunctionStep(Self.commandFunction, arguments: [s.command.value],
                                                  prerequisites: s.after.map { stepIDs[$0] }, wait: s.wait,
                                                  threads: s.threads, needsGPU: s.gpu, retries: s.retries,
                                                  expected: s.expected.map { .milliseconds(Int64($0 * 1000)) })
            stepIDs.append(id)
        }
        ids = workflow.groups.mapValues { $0.map { stepIDs[$0] } }
    }

    func runCommand(_ step: StepContext) throws {
        guard let spec = step.args.first.flatMap(CommandSpec.init) else { throw CommandError.notACommand(step.id) }
        let workflow = try loaded.get()
        let defaultLimit = workflow.steps.first?.command.logLimit ?? CommandSpec.defaultLogLimit
        try CommandStep(spec: spec, step: step, workflowNames: ids, folder: workflow.folder, logLimit: defaultLimit).run()
    }
}
