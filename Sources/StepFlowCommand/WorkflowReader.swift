import Foundation
import Yams

/// Reads a workflow document into its steps as written, then orders and expands them. Errors are
/// `FieldError`s at the node they are about; `Workflow.parse` adds the file.
struct WorkflowReader {
    /// One step of the file, read and checked, not yet expanded.
    struct FileStep {
        var name: String
        var fields: StepFields
        /// One context per expanded step for a foreach (an item, or a batch of items); nil otherwise.
        var items: [ItemContext]?
        /// Indexes of the file steps it runs after, each with where that is said (nil mark and
        /// `isDefault`: the step above, by default).
        var prerequisites: [(step: Int, mark: Mark?, isDefault: Bool)] = []
        /// Per expanded step (item), the (file step, item) that make its declared inputs: its
        /// prerequisites when it has inputs and no `after`.
        var implied: [[(step: Int, item: Int)]]?
        /// Per expanded step, each input (as declared) another step makes, and that step's name.
        var madeBy: [[String: String]] = []
    }

    let folder: String
    var threads: Int?
    var mpi: Int?
    var logLimit = CommandSpec.defaultLogLimit
    var steps: [FileStep] = []
    private var indexOfName: [String: Int] = [:]

    init(folder: String) {
        self.folder = folder
    }

    /// Reads the document: the top-level keys, then each step on its own, then every step's `after`.
    mutating func read(_ text: String) throws(FieldError) {
        guard let root = try YAMLRead.compose(text) else {
            throw FieldError(line: 1, column: 1, "the file holds no workflow. Write steps: a list of steps, each with a name and run or shell.")
        }
        let entries = try YAMLRead.entries(root, "the workflow")
        try YAMLRead.checkKeys(entries, allowed: ["parallel", "log_limit", "steps"], in: "the workflow",
                               synonyms: ["jobs": "steps", "tasks": "steps", "stages": "steps", "loglimit": "log_limit", "log-limit": "log_limit"])
        for entry in entries {
            switch entry.key {
            case "parallel":
                let parallel = try YAMLRead.entries(entry.value, "parallel")
                try YAMLRead.checkKeys(parallel, allowed: ["threads", "mpi"], in: "parallel",
                                       synonyms: ["ranks": "mpi", "np": "mpi", "processes": "mpi", "cores": "threads"])
                for setting in parallel {
                    let value = try YAMLRead.int(setting.value, "\(setting.key) of parallel", atLeast: 1)
                    if setting.key == "threads" { threads = value } else { mpi = value }
                }
            case "log_limit":
                logLimit = try StepFields.size(entry.value, "log_limit of the workflow")
            default:
                break
            }
        }
        guard let stepsEntry = entries.first(where: { $0.key == "steps" }) else {
            throw FieldError(root.mark, "the workflow has no steps. Add steps: a list of steps, each with a name and run or shell.")
        }
        let list = try YAMLRead.list(stepsEntry.value, "steps")
        guard !list.isEmpty else {
            throw FieldError(stepsEntry.value.mark, "steps is an empty list. Add the steps to run, each with a name and run or shell.")
        }
        for (position, node) in list.enumerated() {
            try readStep(node, position: position)
        }
        try resolveAfter()
    }

    private mutating func readStep(_ node: Node, position: Int) throws(FieldError) {
        let fields = try StepFields(node, what: "step \(position + 1)", workflow: true)
        guard let name = fields.name else {
            throw FieldError(node.mark, "step \(position + 1) has no name. Add name: with a short word (after: refers to steps by name).")
        }
        if let other = indexOfName[name.value] {
            let line = steps[other].fields.name?.mark.map { " (at line \($0.line))" } ?? ""
            throw FieldError(name.mark, "two steps are named '\(name.value)'; the other one is step \(other + 1)\(line). Give each step a name of its own.")
        }
        let what = "step '\(name.value)'"
        let foreach = fields.foreach != nil, batch = fields.batch != nil
        for element in fields.run ?? [] {
            try Placeholder.check(element, place: .run, what: "run of \(what)", foreach: foreach, batch: batch)
        }
        if let shell = fields.shell {
            try Placeholder.check(shell, place: .shell, what: "shell of \(what)", foreach: foreach, batch: batch)
        }
        for key in fields.env.keys.sorted() {
            try Placeholder.check(fields.env[key]!, place: .plain("env"), what: "env \(key) of \(what)", foreach: foreach, batch: batch)
        }
        if let cwd = fields.cwd {
            try Placeholder.check(cwd, place: .plain("cwd"), what: "cwd of \(what)", foreach: foreach, batch: batch)
        }
        for path in (fields.inputs ?? []) + (fields.outputs ?? []) {
            try Placeholder.check(path, place: .plain("inputs and outputs"), what: "a file of \(what)", foreach: foreach, batch: batch)
        }
        var items: [ItemContext]?
        if let node = fields.foreach {
            let found = try Foreach.items(node, what: "foreach of \(what)", folder: folder)
            let size = fields.batch?.value ?? 1
            items = stride(from: 0, to: found.count, by: size).enumerated().map { index, start in
                ItemContext(items: Array(found[start..<min(start + size, found.count)]), index: index)
            }
        }
        indexOfName[name.value] = steps.count
        steps.append(FileStep(name: name.value, fields: fields, items: items))
    }

    /// Turns each step's `after` names into step indexes; without `after`, a step runs after the step
    /// above it (S2's default, in file order).
    private mutating func resolveAfter() throws(FieldError) {
        try resolveFiles()
        for index in steps.indices {
            guard let after = steps[index].fields.after else {
                if let implied = steps[index].implied {
                    // Declared inputs, no after: the steps that make them (none: it needs none).
                    let makers = Set(implied.flatMap { $0.map(\.step) })
                    steps[index].prerequisites = makers.sorted().map { ($0, nil, false) }
                } else if index > 0 {
                    steps[index].prerequisites = [(index - 1, nil, true)]
                }
                continue
            }
            for name in after {
                guard let other = indexOfName[name.value] else {
                    throw FieldError(name.mark, "step '\(steps[index].name)' is after '\(name.value)', but no step has that name. \(suggestion(for: name.value))")
                }
                if !steps[index].prerequisites.contains(where: { $0.step == other }) {
                    steps[index].prerequisites.append((other, name.mark, false))
                }
            }
        }
    }

    /// Each expanded step's declared files, absolute, by file step and item.
    private func declaredFiles(_ index: Int) -> [(inputs: [(shown: String, absolute: String)], outputs: [(shown: String, absolute: String)], mark: Mark?)] {
        let fields = steps[index].fields
        return (steps[index].items.map { $0.map(Optional.some) } ?? [nil]).map { context in
            func expanded(_ list: [Located<String>]?) -> [(shown: String, absolute: String)] {
                (list ?? []).map { path in
                    let shown = context.map { Placeholder.substitute(path.value, $0) } ?? path.value
                    return (shown, StepFields.absolutePath(shown, folder: folder))
                }
            }
            return (expanded(fields.inputs), expanded(fields.outputs), fields.outputs?.first?.mark ?? fields.mark)
        }
    }

    /// Finds which expanded step makes each declared input: an output named the same, or, for a
    /// glob input, every output it matches. Two steps may not declare the same output.
    private mutating func resolveFiles() throws(FieldError) {
        let files = steps.indices.map(declaredFiles)
        var maker: [String: (step: Int, item: Int)] = [:]
        for (index, perItem) in files.enumerated() {
            for (item, f) in perItem.enumerated() {
                for output in f.outputs {
                    if let other = maker[output.absolute], other.step != index || other.item != item {
                        throw FieldError(f.mark, "\(expandedName(index, item)) and \(expandedName(other.step, other.item)) both declare the output \(output.shown). Each file has one step that makes it: rename one.")
                    }
                    maker[output.absolute] = (index, item)
                }
            }
        }
        let outputs = maker.keys.sorted()
        for (index, perItem) in files.enumerated() {
            steps[index].madeBy = perItem.map { f in
                var made: [String: String] = [:]
                for input in f.inputs {
                    for m in Self.makers(of: input.absolute, maker, outputs) where m.step != index {
                        made[input.shown] = expandedName(m.step, m.item)
                    }
                }
                return made
            }
            // An after written in the file says otherwise.
            guard steps[index].fields.inputs != nil, steps[index].fields.after == nil else { continue }
            steps[index].implied = perItem.map { f in
                f.inputs.flatMap { Self.makers(of: $0.absolute, maker, outputs) }.filter { $0.step != index }
            }
        }
    }

    private static func makers(of input: String, _ maker: [String: (step: Int, item: Int)], _ outputs: [String]) -> [(step: Int, item: Int)] {
        guard input.contains(where: { "*?[".contains($0) }) else { return maker[input].map { [$0] } ?? [] }
        return outputs.filter { fnmatch(input, $0, FNM_PATHNAME) == 0 }.compactMap { maker[$0] }
    }

    private func expandedName(_ index: Int, _ item: Int) -> String {
        steps[index].items == nil ? "'\(steps[index].name)'" : "'\(steps[index].name)[\(item)]'"
    }

    private func suggestion(for name: String) -> String {
        if let bracket = name.firstIndex(of: "["), indexOfName[String(name[..<bracket])] != nil {
            return "after names whole steps: after: [\(name[..<bracket])] waits for all its items."
        }
        let names = steps.map(\.name)
        if let near = YAMLRead.didYouMean(name, among: names) { return "Did you mean '\(near)'?" }
        let shown = names.prefix(12).map { "'\($0)'" }.joined(separator: ", ") + (names.count > 12 ? ", …" : "")
        return "The steps are \(shown)."
    }

    /// The expanded steps and each name's indexes among them. The file's steps are put in a
    /// topological order that keeps the file's order wherever `after` allows it; throws when `after`
    /// entries form a cycle.
    func expand() throws(FieldError) -> ([WorkflowStep], [String: [Int]]) {
        var expanded: [WorkflowStep] = []
        var groups: [String: [Int]] = [:]
        for index in try order() {
            let step = steps[index]
            var after: [Int] = []
            for prerequisite in step.prerequisites { after += groups[steps[prerequisite.step].name] ?? [] }
            after = Array(Set(after)).sorted()
            let fields = step.fields
            var indexes: [Int] = []
            let contexts: [ItemContext?] = step.items.map { $0.map(Optional.some) } ?? [nil]
            for item in contexts.indices {
                let context = contexts[item]
                let name = context.map { "\(step.name)[\($0.index)]" } ?? step.name
                indexes.append(expanded.count)
                var command = fields.command(name: name, folder: folder, logLimit: logLimit, context: context)
                if item < step.madeBy.count { command.madeBy = step.madeBy[item] }
                // Implied by files: exactly the expanded steps that make this one's inputs.
                let itemAfter = step.implied.map { implied in
                    Array(Set(implied[item].compactMap { groups[steps[$0.step].name]?[$0.item] })).sorted()
                } ?? after
                expanded.append(WorkflowStep(group: step.name, command: command,
                                             after: itemAfter, threads: fields.threads, gpu: fields.gpu, retries: fields.retries, wait: fields.wait,
                                             expected: fields.expected))
            }
            groups[step.name] = indexes
        }
        return (expanded, groups)
    }

    /// Kahn's algorithm, always taking the ready step that comes first in the file.
    private func order() throws(FieldError) -> [Int] {
        var waitingOn = steps.map { Set($0.prerequisites.map(\.step)).count }
        var dependents = [[Int]](repeating: [], count: steps.count)
        for (index, step) in steps.enumerated() {
            for prerequisite in Set(step.prerequisites.map(\.step)) { dependents[prerequisite].append(index) }
        }
        var ready = waitingOn.indices.filter { waitingOn[$0] == 0 }.reversed() as [Int]
        var order: [Int] = []
        while let next = ready.popLast() {
            order.append(next)
            for dependent in dependents[next] {
                waitingOn[dependent] -= 1
                if waitingOn[dependent] == 0 {
                    // `ready` is kept sorted from last to first in the file, so popLast takes the first.
                    let at = ready.firstIndex { $0 < dependent } ?? ready.endIndex
                    ready.insert(dependent, at: at)
                }
            }
        }
        if order.count < steps.count { throw cycleError(left: Set(steps.indices).subtracting(order)) }
        return order
    }

    /// Names the steps of one cycle among `left` (steps that never became ready): each of them waits
    /// on another of them, so walking prerequisites from any of them must come back round.
    private func cycleError(left: Set<Int>) -> FieldError {
        var walk: [Int] = []
        var current = left.min()!
        while !walk.contains(current) {
            walk.append(current)
            current = steps[current].prerequisites.first { left.contains($0.step) }!.step
        }
        let cycle = Array(walk[walk.firstIndex(of: current)!...])
        var links: [String] = []
        for (position, index) in cycle.enumerated() {
            let next = cycle[(position + 1) % cycle.count]
            let link = steps[index].prerequisites.first { $0.step == next }!
            links.append("'\(steps[index].name)' runs after '\(steps[next].name)'\(link.isDefault ? " (the step above it, by default)" : "")")
        }
        let first = steps[cycle[0]].prerequisites.first { $0.step == cycle[1 % cycle.count] }!
        let names = cycle.map { "'\(steps[$0].name)'" }.joined(separator: ", ")
        let mark = first.mark ?? steps[cycle[0]].fields.mark
        guard cycle.count > 1 else {
            return FieldError(mark, "step \(names) is after itself, a cycle, so it could never run. Remove '\(steps[cycle[0]].name)' from its own after.")
        }
        return FieldError(mark, "steps \(names) wait for each other in a cycle, so none of them could ever run: \(links.joined(separator: "; ")). Remove one of these after entries.")
    }
}
