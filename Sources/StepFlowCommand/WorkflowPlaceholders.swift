import Yams

/// One item of a `foreach`: a path as the glob matched it, a list element, or a number of a range.
struct ForeachItem: Equatable {
    var text: String

    /// The last path component (`b.tar.gz` of `a/b.tar.gz`).
    var name: String {
        var path = Substring(text)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        return String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? path)
    }

    /// The name without its last extension (`b.tar`); a leading dot is not an extension (`.profile`).
    var stem: String {
        let name = self.name
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return name }
        return String(name[..<dot])
    }
}

/// What the placeholders of one expanded step stand for: its items (one, or a batch's) and its index.
struct ItemContext {
    var items: [ForeachItem]
    var index: Int
}

/// `{item}`, `{stem}`, `{name}`, `{index}`, `{items}` and their shell-quoting forms `{item:q}` …, found
/// in each text on its own (an argv element, a shell line, an env value) so no text is ever
/// re-parsed after substitution. Any other braces (`awk '{print $1}'`, `${name}`) are not
/// placeholders and stay as written.
struct Placeholder {
    enum Kind: String, CaseIterable { case item, stem, name, index, items }
    var kind: Kind
    var quoted: Bool
    var range: Range<String.Index>

    var text: String { "{\(kind.rawValue)\(quoted ? ":q" : "")}" }

    /// The placeholders of `text`, in order. A `{` right after `$` opens a shell parameter
    /// (`${name}`), never a placeholder.
    static func find(in text: String) -> [Placeholder] {
        var found: [Placeholder] = []
        var index = text.startIndex
        while let open = text[index...].firstIndex(of: "{") {
            index = text.index(after: open)
            guard open == text.startIndex || text[text.index(before: open)] != "$",
                  let close = text[index...].firstIndex(of: "}") else { continue }
            var word = text[index..<close]
            let quoted = word.hasSuffix(":q")
            if quoted { word = word.dropLast(2) }
            guard let kind = Kind(rawValue: String(word)) else { continue }
            let end = text.index(after: close)
            found.append(Placeholder(kind: kind, quoted: quoted, range: open..<end))
            index = end
        }
        return found
    }

}

/// Where a text sits in a step, which decides the placeholders it may hold.
enum PlaceholderPlace {
    case run, shell, plain(String)
}

extension Placeholder {
    /// Refuses placeholders that cannot be used where they are written. `foreach` and `batch`: what
    /// the step is; `what`: the field, for messages.
    static func check(_ text: Located<String>, place: PlaceholderPlace, what: String, foreach: Bool, batch: Bool) throws(FieldError) {
        for placeholder in find(in: text.value) {
            let p = placeholder.text
            guard foreach else {
                throw FieldError(text.mark, "\(p) in \(what): placeholders stand for foreach items, and this step has no foreach. Add foreach, or remove \(p).")
            }
            let kind = placeholder.kind
            if batch, kind == .item || kind == .stem || kind == .name {
                let instead: String
                switch place {
                case .run: instead = "Use {items} (an element of its own) for all of them."
                case .shell: instead = "Use {items:q} for all of them."
                case .plain(let field): instead = "\(field) can use {index}; pass the items in run or shell."
                }
                throw FieldError(text.mark, "\(p) in \(what): a batch step takes several items, so there is no single \(kind.rawValue). \(instead)")
            }
            if !batch, kind == .items {
                throw FieldError(text.mark, "\(p) in \(what): {items} stands for the items of a batch, and this step has no batch. Use \(place.isShell ? "{item:q}" : "{item}"), or add batch: N.")
            }
            switch place {
            case .run:
                if placeholder.quoted {
                    throw FieldError(text.mark, "\(p) in \(what): :q quotes for shell lines, but run passes each element to the program as it is. Write {\(kind.rawValue)}.")
                }
                if kind == .items, text.value != "{items}" {
                    throw FieldError(text.mark, "{items} in \(what) must be a whole element of the list (it becomes one argument per item). Write it as an element of its own: [program, --in, \"{items}\"].")
                }
            case .shell:
                if !placeholder.quoted, kind != .index {
                    throw FieldError(text.mark, "\(p) in \(what): item text in a shell line must be quoted, or a file named like 'x; rm -rf ~' would run as a command. Write {\(kind.rawValue):q}.")
                }
            case .plain(let field):
                if placeholder.quoted {
                    throw FieldError(text.mark, "\(p) in \(what): :q quotes for shell lines, and \(field) is used as it is. Write {\(kind.rawValue)}.")
                }
                if kind == .items {
                    throw FieldError(text.mark, "{items} in \(what): several items fit only in run (as separate arguments) or, quoted, in shell (as {items:q}). Remove it from \(field).")
                }
            }
        }
        if place.isShell { try checkShellContexts(text, what: what) }
    }

    /// `text` with each placeholder replaced by the text it stands for in `context`, as it is: for
    /// texts no shell reads (a `run` element, an `env` value, `cwd`). Shell lines go through
    /// `substitute(shell:_:)`. (`{items}` as a whole argv element is spliced by `substitute(argv:)`.)
    static func substitute(_ text: String, _ context: ItemContext) -> String {
        let found = find(in: text)
        guard !found.isEmpty else { return text }
        var result = ""
        var last = text.startIndex
        for placeholder in found {
            result += text[last..<placeholder.range.lowerBound]
            last = placeholder.range.upperBound
            let item = context.items.first ?? ForeachItem(text: "")
            switch placeholder.kind {
            case .index: result += String(context.index)
            case .item: result += item.text
            case .stem: result += item.stem
            case .name: result += item.name
            case .items: result += context.items.map(\.text).joined(separator: " ")
            }
        }
        return result + text[last...]
    }

    /// An argument vector with each element substituted on its own; a `{items}` element becomes one
    /// element per item.
    static func substitute(argv: [String], _ context: ItemContext) -> [String] {
        var result: [String] = []
        for element in argv {
            if element == "{items}" {
                result += context.items.map(\.text)
            } else {
                result.append(substitute(element, context))
            }
        }
        return result
    }
}

extension PlaceholderPlace {
    var isShell: Bool {
        if case .shell = self { return true }
        return false
    }
}
