/// Placeholders in `shell:` lines. An item's text is never written into the line: the placeholder
/// becomes a reference to an environment variable that holds it (`{item:q}` → `"${STEPFLOW_ITEM}"`),
/// quoted for where it stands, and the shell never parses what a variable holds as code. So no file
/// name can run as a command, and the command gets each item byte for byte.
extension Placeholder {
    /// The variable a step's command finds an item's text in.
    static func variable(_ kind: Kind, item: Int? = nil) -> String {
        switch kind {
        case .item: return "STEPFLOW_ITEM"
        case .name: return "STEPFLOW_ITEM_NAME"
        case .stem: return "STEPFLOW_ITEM_STEM"
        case .index: return "STEPFLOW_ITEM_INDEX"
        case .items: return "STEPFLOW_ITEM_\(item ?? 1)"
        }
    }

    /// The variables a step of `context` gets: every item (`STEPFLOW_ITEM_1`…), their count and the
    /// index, and for one item its text, name and stem.
    static func itemVariables(_ context: ItemContext) -> [String: String] {
        var env = [variable(.index): String(context.index), "STEPFLOW_ITEM_COUNT": String(context.items.count)]
        if context.items.count == 1, let item = context.items.first {
            env[variable(.item)] = item.text
            env[variable(.name)] = item.name
            env[variable(.stem)] = item.stem
        }
        for (n, item) in context.items.enumerated() { env[variable(.items, item: n + 1)] = item.text }
        return env
    }

    /// `line` with each placeholder replaced by a reference to its variable in the form that is
    /// right where it stands (checked by `checkShellContexts`), and the variables the command needs.
    /// `{index}` is written as its digits.
    static func substitute(shell line: String, _ context: ItemContext) -> (line: String, environment: [String: String]) {
        let found = find(in: line)
        guard !found.isEmpty else { return (line, [:]) }
        let places = ShellLineScanner.contexts(of: line, opaque: found.map { utf8Range($0.range, in: line) })
        var result = ""
        var last = line.startIndex
        var needsItems = false
        for (placeholder, place) in zip(found, places) {
            result += line[last..<placeholder.range.lowerBound]
            last = placeholder.range.upperBound
            if placeholder.kind == .index {
                result += String(context.index)
                continue
            }
            needsItems = true
            let names = placeholder.kind == .items
                ? (1...max(context.items.count, 1)).map { variable(.items, item: $0) }
                : [variable(placeholder.kind)]
            result += names.map { reference($0, in: place) }.joined(separator: " ")
        }
        return (result + line[last...], needsItems ? itemVariables(context) : [:])
    }

    /// `${name}` written so that it expands to exactly the variable's value in `place`. Places
    /// `checkShellContexts` refuses get the unquoted form: the value is still never run.
    private static func reference(_ name: String, in place: ShellContext) -> String {
        switch place {
        case .doubleQuoted, .hereDocument: return "${\(name)}"
        case .singleQuoted: return "'\"${\(name)}\"'"
        case .unquoted, .comment, .quotedHereDocument, .arithmetic, .parameter, .backquoted, .ansiC: return "\"${\(name)}\""
        }
    }

    /// Refuses placeholders that no form makes exact where they stand in a shell line, saying where
    /// and how to write it instead.
    static func checkShellContexts(_ text: Located<String>, what: String) throws(FieldError) {
        let line = text.value
        let found = find(in: line)
        guard !found.isEmpty else { return }
        let places = ShellLineScanner.contexts(of: line, opaque: found.map { utf8Range($0.range, in: line) })
        for (placeholder, place) in zip(found, places) where placeholder.kind != .index {
            let p = placeholder.text
            let at = "\(p) at character \(line.distance(from: line.startIndex, to: placeholder.range.lowerBound) + 1) of \(what) is \(place)"
            let variable = variable(placeholder.kind)
            let why: String
            switch place {
            case .unquoted, .comment: continue
            case .doubleQuoted, .singleQuoted, .hereDocument:
                guard placeholder.kind == .items else { continue }
                why = "{items:q} stands for several words, one per item, and cannot sit inside quotes. Write it outside them: cat {items:q} > \"out/batch-{index}.txt\"."
            case .quotedHereDocument:
                why = "nothing in a here-document whose delimiter is quoted (<<'EOF') is expanded, so the item would not appear. Unquote the delimiter (<<EOF), or pipe it in: printf '%s\\n' {item:q} | command."
            case .arithmetic:
                why = "$((…)) evaluates its text as arithmetic, and an item is text. Use {index} there, or do the arithmetic on \"$\(variable)\" in the command."
            case .parameter:
                why = "the word of a ${…} expansion is read by rules that differ between shells. Move the placeholder out of the ${…}, or use \"$\(variable)\" inside it."
            case .backquoted:
                why = "text inside backquotes is read twice by the shell. Write $(…) instead of backquotes: $(basename {item:q})."
            case .ansiC:
                why = "$'…' is bash's, and dash reads it differently. Close it before the placeholder: $'\\t'{item:q}."
            }
            throw FieldError(text.mark, "\(at): \(why)")
        }
    }

    private static func utf8Range(_ range: Range<String.Index>, in text: String) -> Range<Int> {
        text.utf8.distance(from: text.startIndex, to: range.lowerBound)..<text.utf8.distance(from: text.startIndex, to: range.upperBound)
    }
}
