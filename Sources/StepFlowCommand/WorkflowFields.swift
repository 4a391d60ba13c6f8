import StepFlow
import Yams

/// A value with where it is written, so a later check (placeholders, names) can point at it.
struct Located<Value> {
    var value: Value
    var mark: Mark?
}

/// The fields of one step as written: a step of a workflow file or a line a running command inserts.
/// Both are read here, by one set of rules, so a field means the same in either place.
struct StepFields {
    /// Where the step's mapping starts.
    var mark: Mark?
    var name: Located<String>?
    var run: [Located<String>]?
    var shell: Located<String>?
    /// nil: the default prerequisite (S2); [] none.
    var after: [Located<String>]?
    var threads = 1
    var gpu = false
    var retries = 0
    var wait = false
    var timeout: Double?
    /// `expect`: how long the step should take (`--stop-before` does not start it when it would not end in time).
    var expected: Double?
    var env: [String: Located<String>] = [:]
    var cwd: Located<String>?
    var logLimit: Int?
    /// Declared files: paths (inputs may be globs), relative to the workflow's folder.
    var inputs: [Located<String>]?
    var outputs: [Located<String>]?
    /// Workflow files only.
    var foreach: Node?
    var batch: Located<Int>?

    static let commandKeys = ["name", "run", "shell", "after", "threads", "gpu", "retries", "timeout", "expect", "wait", "env", "cwd", "log_limit",
                              "inputs", "outputs"]
    static let workflowKeys = commandKeys + ["foreach", "batch"]

    /// Words people write for a key, from other tools, and the key StepFlow spells it with.
    static let synonyms = [
        "command": "run", "cmd": "run", "args": "run", "argv": "run", "exec": "run", "script": "shell", "sh": "shell",
        "depends_on": "after", "depends": "after", "needs": "after", "requires": "after", "prerequisites": "after",
        "dir": "cwd", "workdir": "cwd", "working_directory": "cwd", "directory": "cwd", "environment": "env",
        "for_each": "foreach", "for": "foreach", "each": "foreach", "items": "foreach", "retry": "retries",
        "gpus": "gpu", "needs_gpu": "gpu", "loglimit": "log_limit", "log-limit": "log_limit", "time_limit": "timeout",
        "input": "inputs", "output": "outputs",
    ]

    /// Reads and checks a step's mapping. `what` names the step in messages ("step 3", "the insert").
    /// Throws at the first field that is missing, of the wrong type or out of range.
    init(_ node: Node, what: String, workflow: Bool) throws(FieldError) {
        let entries = try YAMLRead.entries(node, what)
        let refused = workflow ? [:] : [
            "foreach": "foreach is for workflow files: a running command inserts one line per item instead.",
            "batch": "batch is for foreach steps of workflow files: a running command inserts one line per batch instead.",
        ]
        mark = node.mark
        var what = what
        if let entry = entries.first(where: { $0.key == "name" }) {
            let name = try YAMLRead.string(entry.value, "the name of \(what)")
            try Self.checkName(name, at: entry.value.mark)
            self.name = Located(value: name, mark: entry.value.mark)
            what = "step '\(name)'"
        }
        try YAMLRead.checkKeys(entries, allowed: workflow ? Self.workflowKeys : Self.commandKeys, in: what,
                               synonyms: Self.synonyms, refused: refused)
        for entry in entries {
            let field = "\(entry.key) of \(what)"
            let value = entry.value
            switch entry.key {
            case "run":
                var argv: [Located<String>] = []
                for element in try YAMLRead.list(value, field) {
                    argv.append(Located(value: try YAMLRead.string(element, "each element of \(field)"), mark: element.mark))
                }
                guard let program = argv.first else {
                    throw FieldError(value.mark, "\(field) is an empty list. Give the program and its arguments: run: [program, arg, …].")
                }
                guard !program.value.isEmpty else { throw FieldError(program.mark, "the program of \(field) is empty. Name the program to run.") }
                run = argv
            case "shell":
                let text = try YAMLRead.string(value, field)
                guard text.contains(where: { !$0.isWhitespace }) else {
                    throw FieldError(value.mark, "\(field) is empty. Give the command line /bin/sh should run.")
                }
                shell = Located(value: text, mark: value.mark)
            case "after":
                after = try Self.names(value, field)
            case "threads": threads = try YAMLRead.int(value, field, atLeast: 1, atMost: StepSpec.largestCount)
            case "gpu": gpu = try YAMLRead.bool(value, field)
            case "retries": retries = try YAMLRead.int(value, field, atLeast: 0, atMost: StepSpec.largestCount)
            case "wait": wait = try YAMLRead.bool(value, field)
            case "timeout": timeout = try Self.duration(value, field)
            case "expect": expected = try Self.duration(value, field)
            case "log_limit": logLimit = try Self.size(value, field)
            case "env":
                for variable in try YAMLRead.entries(value, field) {
                    guard !variable.key.isEmpty, !variable.key.contains("="), !variable.key.contains("\0") else {
                        throw FieldError(variable.keyMark, "'\(variable.key)' in \(field) cannot be an environment variable's name (empty, or holds '='). Rename it.")
                    }
                    guard !variable.key.hasPrefix("STEPFLOW_") else {
                        throw FieldError(variable.keyMark, "'\(variable.key)' in \(field): names that start with STEPFLOW_ are set by StepFlow for every command (STEPFLOW_RUN_DIR, STEPFLOW_ITEM, …). Rename it.")
                    }
                    let text = try YAMLRead.string(variable.value, "\(variable.key) in \(field)")
                    guard !text.utf8.contains(0) else {
                        throw FieldError(variable.value.mark, "\(variable.key) in \(field) holds a NUL character, which no environment variable can hold. Remove it.")
                    }
                    env[variable.key] = Located(value: text, mark: variable.value.mark)
                }
            case "cwd":
                let path = try YAMLRead.string(value, field)
                guard !path.isEmpty else { throw FieldError(value.mark, "\(field) is empty. Give a folder, or remove the key to run in the workflow's folder.") }
                guard !path.hasPrefix("~") else {
                    throw FieldError(value.mark, "\(field) starts with '~', which is not expanded (no shell reads it). Write the folder's full path, or one relative to the workflow's folder.")
                }
                cwd = Located(value: path, mark: value.mark)
            case "inputs", "outputs":
                var paths: [Located<String>] = []
                let elements: [Node]
                if case .scalar = value { elements = [value] } else { elements = try YAMLRead.list(value, field) }
                for element in elements {
                    let path = try YAMLRead.string(element, "each path in \(field)")
                    guard !path.isEmpty, !path.utf8.contains(0) else {
                        throw FieldError(element.mark, "a path in \(field) is empty or holds a NUL character. Give the file's path, relative to the workflow's folder.")
                    }
                    guard !path.hasPrefix("~") else {
                        throw FieldError(element.mark, "'\(path)' in \(field) starts with '~', which is not expanded. Write the path relative to the workflow's folder, or whole.")
                    }
                    if entry.key == "outputs", path.contains(where: { "*?[".contains($0) }) {
                        throw FieldError(element.mark, "'\(path)' in \(field) is a glob; outputs are the files a step makes, named one by one (inputs may be globs).")
                    }
                    paths.append(Located(value: path, mark: element.mark))
                }
                if entry.key == "inputs" { inputs = paths } else { outputs = paths }
            case "foreach": foreach = value
            case "batch": batch = Located(value: try YAMLRead.int(value, field, atLeast: 1), mark: value.mark)
            default: break
            }
        }
        switch (run, shell) {
        case (nil, nil):
            throw FieldError(mark, "\(what) has neither run nor shell. Add run: [program, arg, …] to run a program, or shell: \"…\" for a /bin/sh command line.")
        case (.some, .some):
            let second = entries.filter { $0.key == "run" || $0.key == "shell" }.last
            throw FieldError(second?.keyMark ?? mark, "\(what) has both run and shell. Keep one: run for a program and its arguments, shell for a /bin/sh command line.")
        default:
            break
        }
        if let batch, foreach == nil {
            throw FieldError(batch.mark, "batch of \(what) needs foreach: it says how many foreach items one step takes. Add foreach, or remove batch.")
        }
    }

    /// The command these fields describe, named `name`: placeholders replaced for `context` (a foreach
    /// item or batch; nil for a step without foreach), `cwd` made absolute against `folder` (which it
    /// defaults to), `logLimit` when the step does not set its own.
    func command(name: String, folder: String, logLimit defaultLogLimit: Int, context: ItemContext?) -> CommandSpec {
        func substituted(_ text: String) -> String { context.map { Placeholder.substitute(text, $0) } ?? text }
        let argv = run.map { run in
            let elements = run.map(\.value)
            return context.map { Placeholder.substitute(argv: elements, $0) } ?? elements
        }
        var environment = env.mapValues { substituted($0.value) }
        var line = shell?.value
        if let context, let text = line {
            let shellLine = Placeholder.substitute(shell: text, context)
            line = shellLine.line
            environment.merge(shellLine.environment) { _, item in item }
        }
        var spec = CommandSpec(name: name, argv: argv, shell: line,
                               env: environment,
                               cwd: Self.absolutePath(cwd.map { substituted($0.value) } ?? ".", folder: folder),
                               timeout: timeout, logLimit: logLimit ?? defaultLogLimit)
        spec.inputs = (inputs ?? []).map { substituted($0.value) }
        spec.outputs = (outputs ?? []).map { substituted($0.value) }
        return spec
    }

    /// A step name: shown in logs and graphs and used by `after`; `[` and `]` are kept for foreach
    /// items (`register[3]`), so a name can never be taken for an item of another step.
    static func checkName(_ name: String, at mark: Mark?) throws(FieldError) {
        guard !name.isEmpty, !name.allSatisfy(\.isWhitespace) else {
            throw FieldError(mark, "a step name cannot be empty. Give the step a short name.")
        }
        if let bad = name.unicodeScalars.first(where: { "[]".unicodeScalars.contains($0) || $0.properties.generalCategory == .control }) {
            let shown = bad.properties.generalCategory == .control ? "a control character" : "'\(bad)'"
            throw FieldError(mark, "the step name '\(name)' holds \(shown); names cannot hold brackets (kept for foreach items, like name[3]) or control characters. Rename it.")
        }
    }

    /// A list of step names; a single name may be written without the list.
    static func names(_ node: Node, _ what: String) throws(FieldError) -> [Located<String>] {
        if YAMLRead.isNull(node) {
            throw FieldError(node.mark, "\(what) is empty. Write after: [] for a step with no prerequisites, or list the steps it needs.")
        }
        let elements: [Node]
        if case .scalar = node { elements = [node] } else { elements = try YAMLRead.list(node, what) }
        var names: [Located<String>] = []
        for element in elements {
            let name = try YAMLRead.string(element, "each name in \(what)")
            // No step name holds one (checkName), and the error naming it would reach a terminal.
            guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw FieldError(element.mark, "a name in \(what) holds a control character, and no step name does. Name a step.")
            }
            names.append(Located(value: name, mark: element.mark))
        }
        return names
    }

    /// The folder a command runs in: `cwd` against the workflow's folder, `.` and `..` resolved
    /// (symbolic links are left alone: the path is the user's).
    static func absolutePath(_ path: String, folder: String) -> String {
        let joined = path.hasPrefix("/") ? path : folder + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }
}

extension StepFields {
    /// The longest `timeout` or `expect`: ten years.
    static let longestDuration: Double = 10 * 365 * 24 * 3600

    /// Seconds from `90s`, `10m`, `1h`, `1h30m`, `500ms`, `1.5h`, or a number of seconds; more than 0
    /// and at most `longestDuration`.
    static func duration(_ node: Node, _ what: String) throws(FieldError) -> Double {
        let wrong = FieldError(node.mark, "\(what) must be a duration like 90s, 10m, 1h30m or 500ms, or a number of seconds, not \(YAMLRead.describe(node)).")
        guard case .scalar(let scalar) = node, !YAMLRead.isNull(node), let seconds = DurationText.seconds(scalar.string) else { throw wrong }
        guard seconds > 0 else { throw FieldError(node.mark, "\(what) must be more than 0. Remove it for no time limit.") }
        // Turned into milliseconds and clock deadlines later: a number past those would trap there.
        guard seconds <= longestDuration else {
            throw FieldError(node.mark, "\(what) must be at most 10 years (\(Int(longestDuration)) s), not \(DurationText.text(seconds)). Remove it for no time limit.")
        }
        return seconds
    }

    static func size(_ node: Node, _ what: String) throws(FieldError) -> Int {
        let wrong = FieldError(node.mark, "\(what) must be a size like 100MB, 1GB or 512KB, or a number of bytes, not \(YAMLRead.describe(node)).")
        guard case .scalar(let scalar) = node, !YAMLRead.isNull(node), let bytes = SizeText.bytes(scalar.string) else { throw wrong }
        guard bytes < Double(Int.max) else { throw FieldError(node.mark, "\(what) is too large. Give a size like 100MB.") }
        guard bytes >= 1 else { throw FieldError(node.mark, "\(what) must be at least 1 byte. Give a size like 100MB.") }
        return Int(bytes)
    }
}
