import Yams

/// One line a running command appended to its insert file: insert a step, release a waiting step, or
/// add prerequisites to a step that has not started (S3). Names are those of the workflow's steps
/// (`register[3]` for a foreach item) or of steps inserted by earlier lines.
package enum InsertLine: Sendable, Equatable {
    /// `{"name": "reg-1", "run": [...] | "shell": "...", "after": [...], "threads", "gpu", "retries",
    /// "wait", "timeout", "env", "cwd", "log_limit"}`, with the fields of a workflow step (no foreach,
    /// and `{…}` text is taken literally). `after` absent is nil: the runner applies S2's default.
    /// `command.name` is `name`, or for an unnamed step the program's file name (`shell` for a shell
    /// line), so logs and graphs show something.
    case insert(name: String?, command: CommandSpec, after: [String]?, threads: Int, gpu: Bool, retries: Int, wait: Bool, expected: Double? = nil)
    /// `{"release": "close"}`: release a waiting step (S4).
    case release(String)
    /// `{"addPrerequisites": {"to": "close", "from": ["a", "b"]}}`.
    case addPrerequisites(to: String, from: [String])

    /// Parses line number `line` of an insert file: one JSON object. A relative `cwd` is taken
    /// against `folder` (the workflow's folder), which is also the default; `logLimit` is the
    /// workflow's default for steps that set none. Throws an `InsertLineError` naming the line (and
    /// column) when the line is not one JSON object, holds an unknown key, a field of the wrong type
    /// or out of range, both or neither of `run` and `shell`, or a malformed release/addPrerequisites.
    package static func parse(_ text: String, line: Int, folder: String, logLimit: Int) throws(InsertLineError) -> InsertLine {
        // A reader that hands over the line with its line break (or a CRLF file's \r) gets the same.
        var text = Substring(text)
        while text.last?.isNewline == true { text = text.dropLast() }
        do {
            return try read(String(text), folder: folder, logLimit: logLimit)
        } catch {
            // libyaml places "the object never ends" on the line after the text: point past its end.
            let column = error.line > 1 ? text.count + 1 : error.column
            throw InsertLineError(line: line, column: column > 0 ? column : nil, message: error.message)
        }
    }

    /// The 1-based column of the first `&`, `*`, `!` or `<<` outside a double-quoted string: YAML
    /// that JSON does not have, refused because an alias merged into itself grows exponentially.
    static func yamlOnlySyntax(in text: String) -> Int? {
        var inString = false, escaped = false, previous: Character?
        for (offset, c) in text.enumerated() {
            defer { previous = c }
            if inString {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
                continue
            }
            switch c {
            case "\"": inString = true
            case "&", "*", "!": return offset + 1
            case "<" where previous == "<": return offset
            default: break
            }
        }
        return nil
    }

    private static func read(_ text: String, folder: String, logLimit: Int) throws(FieldError) -> InsertLine {
        let example = "Write one JSON object per line, like {\"name\": \"reg-1\", \"run\": [\"prog\", \"arg\"]} or {\"release\": \"close\"}."
        guard let first = text.firstIndex(where: { !$0.isWhitespace }) else {
            throw FieldError(nil, "the line is empty. \(example)")
        }
        guard text[first] == "{", !text.contains("\n") else {
            throw FieldError(nil, "the line is not a JSON object. \(example)")
        }
        if let column = yamlOnlySyntax(in: text) {
            throw FieldError(line: 1, column: column, "the line uses YAML's anchors, aliases, tags or merge keys (&, *, !, <<), which JSON has not. \(example)")
        }
        guard let node = try YAMLRead.compose(text) else { throw FieldError(nil, "the line is empty. \(example)") }
        let entries = try YAMLRead.entries(node, "the line")
        let keys = entries.map(\.key)
        for edit in ["release", "addPrerequisites"] where keys.contains(edit) && keys.count > 1 {
            let other = entries.first { $0.key != edit }!
            throw FieldError(other.keyMark, "a line with \(edit) holds nothing else, and this one also has '\(other.key)'. Write it on a line of its own.")
        }
        switch keys.first {
        case "release":
            return .release(try reference(entries[0].value, "release"))
        case "addPrerequisites":
            let fields = try YAMLRead.entries(entries[0].value, "addPrerequisites")
            try YAMLRead.checkKeys(fields, allowed: ["to", "from"], in: "addPrerequisites",
                                   synonyms: ["step": "to", "target": "to", "prerequisites": "from", "after": "from"])
            guard let to = fields.first(where: { $0.key == "to" }), let from = fields.first(where: { $0.key == "from" }) else {
                throw FieldError(entries[0].value.mark, "addPrerequisites needs both 'to' (the step) and 'from' (the steps it must wait for), like {\"to\": \"close\", \"from\": [\"a\", \"b\"]}.")
            }
            let target = try reference(to.value, "to of addPrerequisites")
            let names = try StepFields.names(from.value, "from of addPrerequisites")
            guard !names.isEmpty else {
                throw FieldError(from.value.mark, "from of addPrerequisites is an empty list. Name the steps '\(target)' must wait for, or drop the line.")
            }
            for name in names where name.value.isEmpty { throw FieldError(name.mark, "a name in from of addPrerequisites is empty. Name a step.") }
            return .addPrerequisites(to: target, from: names.map(\.value))
        default:
            // A misspelt edit would otherwise be reported as an unknown key of a step.
            for entry in entries where !StepFields.commandKeys.contains(entry.key) {
                if let edit = YAMLRead.didYouMean(entry.key, among: ["release", "addPrerequisites"]) {
                    throw FieldError(entry.keyMark, "unknown key '\(entry.key)'. Did you mean '\(edit)'?")
                }
            }
            let fields = try StepFields(node, what: "the inserted step", workflow: false)
            for name in fields.after ?? [] where name.value.isEmpty { throw FieldError(name.mark, "a name in after is empty. Name a step, or write after: [] for none.") }
            let label = fields.name?.value ?? fields.run.map { ForeachItem(text: $0[0].value).name } ?? "shell"
            return .insert(name: fields.name?.value, command: fields.command(name: label, folder: folder, logLimit: logLimit, context: nil),
                           after: fields.after?.map(\.value), threads: fields.threads, gpu: fields.gpu, retries: fields.retries, wait: fields.wait,
                           expected: fields.expected)
        }
    }

    /// The name of a step a line refers to: any step's, so a foreach item's (`register[3]`) too.
    private static func reference(_ node: Node, _ what: String) throws(FieldError) -> String {
        let name = try YAMLRead.string(node, what)
        guard !name.isEmpty else { throw FieldError(node.mark, "\(what) is empty. Name a step.") }
        // A name holds no control characters (StepFields.checkName): one that does names no step,
        // and would reach the terminal in the error that says so.
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw FieldError(node.mark, "\(what) holds a control character, and no step name does. Name a step.")
        }
        return name
    }
}
