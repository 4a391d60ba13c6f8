import StepFlow

/// What one command step runs, and how: the argument of the workflow protocol's `command` function.
/// It travels and is stored as a `StepValue` object, so a step's identity (S9, S12) is its command:
/// a continued run keeps a finished step exactly when its command did not change.
package struct CommandSpec: Sendable, Equatable {
    /// The name shown for the step: the workflow step's `name`, with `[index]` for a `foreach` item.
    package var name: String
    /// `run:` an argument vector, run without a shell (exactly one of `argv` and `shell` is set).
    package var argv: [String]?
    /// `shell:` a string run by `/bin/sh -c`.
    package var shell: String?
    /// Variables added to the command's environment.
    package var env: [String: String]
    /// The folder the command runs in (absolute).
    package var cwd: String
    /// Seconds after which the command's process group is ended and the step fails; nil: no limit.
    package var timeout: Double?
    /// Bytes of stdout and stderr kept in the step's log; past it the log keeps its head and tail.
    package var logLimit: Int
    /// Declared files (S9 with files), as written with placeholders replaced: relative to the
    /// workflow's folder, or absolute. Inputs may be globs, matched when the step starts.
    package var inputs: [String] = []
    package var outputs: [String] = []
    /// For each input another step declares as its output, that step's name (for the message when
    /// the input is missing).
    package var madeBy: [String: String] = [:]

    package static let defaultLogLimit = 100 * 1024 * 1024

    package init(name: String, argv: [String]? = nil, shell: String? = nil, env: [String: String] = [:], cwd: String,
                timeout: Double? = nil, logLimit: Int = CommandSpec.defaultLogLimit) {
        self.name = name
        self.argv = argv
        self.shell = shell
        self.env = env
        self.cwd = cwd
        self.timeout = timeout
        self.logLimit = logLimit
    }

    /// The spec as a step argument.
    package var value: StepValue {
        var o: [String: StepValue] = ["name": .string(name), "cwd": .string(cwd), "logLimit": .int(logLimit)]
        if let argv { o["run"] = .array(argv.map { .string($0) }) }
        if let shell { o["shell"] = .string(shell) }
        if !env.isEmpty { o["env"] = .object(env.mapValues { .string($0) }) }
        if let timeout { o["timeout"] = .double(timeout) }
        // Only when declared: a step without files keeps the identity it had before files existed.
        if !inputs.isEmpty { o["inputs"] = .array(inputs.map { .string($0) }) }
        if !outputs.isEmpty { o["outputs"] = .array(outputs.map { .string($0) }) }
        if !madeBy.isEmpty { o["madeBy"] = .object(madeBy.mapValues { .string($0) }) }
        return .object(o)
    }

    /// The spec a step argument holds, or nil when it is not one.
    package init?(_ value: StepValue) {
        guard case .object(let o) = value, let name = o["name"]?.stringValue, let cwd = o["cwd"]?.stringValue else { return nil }
        var argv: [String]?
        if case .array(let items)? = o["run"] {
            let strings = items.compactMap(\.stringValue)
            guard strings.count == items.count else { return nil }
            argv = strings
        }
        let shell = o["shell"]?.stringValue
        guard (argv == nil) != (shell == nil) else { return nil }
        var env: [String: String] = [:]
        if case .object(let e)? = o["env"] {
            for (k, v) in e {
                guard let s = v.stringValue else { return nil }
                env[k] = s
            }
        }
        var timeout: Double?
        switch o["timeout"] {
        case .double(let d)?: timeout = d
        case .int(let i)?: timeout = Double(i)
        case nil: timeout = nil
        default: return nil
        }
        self.init(name: name, argv: argv, shell: shell, env: env, cwd: cwd, timeout: timeout,
                  logLimit: o["logLimit"]?.intValue ?? CommandSpec.defaultLogLimit)
        func strings(_ key: String) -> [String]? {
            guard case .array(let items)? = o[key] else { return o[key] == nil ? [] : nil }
            let s = items.compactMap(\.stringValue)
            return s.count == items.count ? s : nil
        }
        guard let inputs = strings("inputs"), let outputs = strings("outputs") else { return nil }
        self.inputs = inputs
        self.outputs = outputs
        if case .object(let m)? = o["madeBy"] { madeBy = m.compactMapValues(\.stringValue) }
    }
}
