import Foundation
import StepFlow
import Yams

/// A workflow file, read, checked and expanded: the steps `stepflow run` inserts, in order.
///
/// The file is YAML or JSON (one schema): `parallel: {threads, mpi}`, `log_limit`, and `steps:`, a
/// list of steps with `name`, `run` (argv) or `shell` (a /bin/sh line), `after` (default: the step
/// above; `[]` none), `foreach` (a glob, a list, or `{from, to}`) with `batch`, `threads`, `gpu`,
/// `retries`, `timeout`, `expect`, `wait`, `env`, `cwd`, `log_limit`.
///
/// In a foreach step, `{item}` `{stem}` `{name}` `{index}` (and `{items}`, a whole argv element, in a
/// batch) are replaced in each argv element, env value and `cwd` on its own; in `shell` item text goes
/// in only quoted, `{item:q}` …, so a file name can never become shell syntax. `${…}` and other braces
/// are left as written. `{index}` counts items, or batches in a batch step, from 0.
package struct Workflow: Sendable, Equatable {
    /// The workflow file's absolute path.
    package var path: String
    /// Its folder: where commands run unless a step says `cwd`, and the base of `foreach` globs.
    package var folder: String
    /// `parallel: {threads, mpi}`; nil when the file does not say.
    package var threads: Int?
    package var mpi: Int?
    /// The expanded steps in insertion order: a topological order of the file's steps, the file's
    /// order where the graph leaves it free; the items of a `foreach` follow each other.
    package var steps: [WorkflowStep]
    /// Each step `name` of the file to the indexes in `steps` it expanded to (several for a foreach).
    package var groups: [String: [Int]]

    package init(path: String, folder: String, threads: Int?, mpi: Int?, steps: [WorkflowStep], groups: [String: [Int]]) {
        self.path = path
        self.folder = folder
        self.threads = threads
        self.mpi = mpi
        self.steps = steps
        self.groups = groups
    }
}

/// One expanded step of a workflow: a command and what it needs.
package struct WorkflowStep: Sendable, Equatable {
    /// The `name` of the file's step it came from.
    package var group: String
    /// What it runs; its name is `group`, or `group[i]` for item (or batch) i of a foreach; its cwd is absolute.
    package var command: CommandSpec
    /// Indexes into `Workflow.steps` of its prerequisites, the default (the step above) applied; all
    /// smaller than its own index. [] none.
    package var after: [Int]
    package var threads: Int
    package var gpu: Bool
    package var retries: Int
    /// `expect`: how long it should take, in seconds.
    package var expected: Double?
    package var wait: Bool

    package init(group: String, command: CommandSpec, after: [Int], threads: Int = 1, gpu: Bool = false, retries: Int = 0, wait: Bool = false,
                expected: Double? = nil) {
        self.expected = expected
        self.group = group
        self.command = command
        self.after = after
        self.threads = threads
        self.gpu = gpu
        self.retries = retries
        self.wait = wait
    }
}

extension Workflow {
    /// Reads the workflow file at `path` (relative to the current folder, or absolute) and expands it.
    /// Throws a `WorkflowError` when the file cannot be read or the workflow is wrong (see `parse`).
    package static func load(path: String) throws(WorkflowError) -> Workflow {
        let absolute = StepFields.absolutePath(path, folder: FileManager.default.currentDirectoryPath)
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: absolute))
        } catch {
            throw WorkflowError(file: path, line: 0, column: 0, message: "cannot be read: \(ErrorText.sentence(error)). Give the path of a workflow file (YAML or JSON).")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw WorkflowError(file: path, line: 0, column: 0, message: "is not UTF-8 text. Save the workflow file as UTF-8.")
        }
        var workflow = try parse(text: text, path: absolute, shownAs: path)
        workflow.path = absolute
        return workflow
    }

    /// Parses and expands a workflow from `text`, as if read from `path` (which gives the folder that
    /// relative `cwd`s and `foreach` globs start from; relative to the current folder, or absolute).
    /// Globs are matched now, against the files there.
    ///
    /// Throws a `WorkflowError` with the file, line and column for: YAML/JSON syntax, an unknown key, a
    /// field of the wrong type or out of range (durations, sizes, numbers), a missing or duplicate
    /// name, both or neither of `run` and `shell`, an `after` naming no step, a cycle, a `foreach` that
    /// matches or holds nothing, `batch` without `foreach`, and a misused placeholder.
    package static func parse(text: String, path: String) throws(WorkflowError) -> Workflow {
        try parse(text: text, path: StepFields.absolutePath(path, folder: FileManager.default.currentDirectoryPath), shownAs: path)
    }

    private static func parse(text: String, path: String, shownAs shown: String) throws(WorkflowError) -> Workflow {
        let folder = StepFields.absolutePath("..", folder: path)
        do {
            var reader = WorkflowReader(folder: folder)
            try reader.read(text)
            let (steps, groups) = try reader.expand()
            return Workflow(path: path, folder: folder, threads: reader.threads, mpi: reader.mpi, steps: steps, groups: groups)
        } catch {
            throw WorkflowError(file: shown, error)
        }
    }
}
