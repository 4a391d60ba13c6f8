import Yams

/// One key of a mapping, with where the key is written.
struct Entry {
    var key: String
    var keyMark: Mark?
    var value: Node
}

/// Typed reads of a composed YAML (or JSON) tree. Every failure is a `FieldError` at the node's
/// mark, so the user sees the line and column of the value that is wrong.
///
/// Numbers and booleans are read from their text with rules of our own rather than YAML 1.1's
/// (which takes `0123` as octal, `1:30` as 90 and `on` as true), so a YAML file and its JSON twin
/// mean the same.
enum YAMLRead {
    /// The document in `text`, or nil when it holds none (empty, or comments only).
    static func compose(_ text: String) throws(FieldError) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw syntaxError(error, text: text)
        } catch {
            throw FieldError(nil, "cannot be read: \(error).")
        }
    }

    private static func syntaxError(_ error: YamlError, text: String) -> FieldError {
        let fix = "Fix the syntax there (a YAML or JSON document)."
        func detail(_ context: YamlError.Context?, _ problem: String) -> String {
            guard let context else { return problem }
            return "\(problem) (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
        }
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return FieldError(mark, "not valid YAML or JSON: \(detail(context, problem)). \(fix)")
        case .reader(let problem, let offset, _, _):
            let (line, column) = offset.map { position(ofCharacterOffset: $0, in: text) } ?? (0, 0)
            return FieldError(line: line, column: column, "cannot be read as UTF-8 text: \(problem). Save the file as UTF-8.")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return FieldError(context.mark, "the key \(keys) appears more than once in one mapping. Keep one of them.")
        default:
            return FieldError(nil, "not valid YAML or JSON: \(error). \(fix)")
        }
    }

    private static func position(ofCharacterOffset offset: Int, in text: String) -> (line: Int, column: Int) {
        var line = 1, column = 1
        for character in text.prefix(offset) {
            if character == "\n" { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }

    /// The entries of a mapping, in the order written, with YAML merge keys (`<<: *defaults`) applied:
    /// keys written in the mapping win over merged ones, and an earlier merged mapping over a later one.
    static func entries(_ node: Node, _ what: String) throws(FieldError) -> [Entry] {
        var budget = mergeBudget
        return try entries(node, what, budget: &budget)
    }

    /// How many mappings one mapping's merge keys may merge, nested merges included. An alias merged
    /// inside the mapping it stands for, level after level, doubles the work at each level: 24
    /// levels in a 500-byte line held a rank for 40 s.
    static let mergeBudget = 1_000

    private static func entries(_ node: Node, _ what: String, budget: inout Int) throws(FieldError) -> [Entry] {
        guard case .mapping(let mapping) = node else {
            throw FieldError(node.mark, "\(what) must be a mapping (key: value lines, or a JSON object), not \(describe(node)).")
        }
        var own: [Entry] = []
        var merged: [Entry] = []
        var mergedKeys: Set<String> = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key, !isNull(key) else {
                throw FieldError(key.mark, "a key of \(what) must be a word, not \(describe(key)).")
            }
            if scalar.string == "<<" && isPlain(key) {
                let sources: [Node]
                if case .sequence(let list) = value { sources = Array(list) } else { sources = [value] }
                for source in sources {
                    budget -= 1
                    guard budget >= 0 else {
                        throw FieldError(key.mark, "the merge keys (<<) here merge more than \(mergeBudget) mappings, counting merges within merges. Merge fewer, or write the keys out.")
                    }
                    for entry in try entries(source, "a merged mapping (<<)", budget: &budget) where mergedKeys.insert(entry.key).inserted {
                        merged.append(entry)
                    }
                }
            } else {
                own.append(Entry(key: scalar.string, keyMark: key.mark, value: value))
            }
        }
        let ownKeys = Set(own.map(\.key))
        return own + merged.filter { !ownKeys.contains($0.key) }
    }

    /// Refuses a key that is not in `allowed`, suggesting the closest allowed key or, from `synonyms`,
    /// the key people who write that word mean.
    static func checkKeys(_ entries: [Entry], allowed: [String], in what: String, synonyms: [String: String] = [:],
                          refused: [String: String] = [:]) throws(FieldError) {
        for entry in entries where !allowed.contains(entry.key) {
            if let reason = refused[entry.key] { throw FieldError(entry.keyMark, reason) }
            let suggestion = synonyms[entry.key.lowercased()] ?? didYouMean(entry.key, among: allowed)
            let hint = suggestion.map { "Did you mean '\($0)'?" } ?? "Remove it."
            throw FieldError(entry.keyMark, "unknown key '\(entry.key)' in \(what). \(hint) (Keys: \(allowed.joined(separator: ", ")).)")
        }
    }

    static func list(_ node: Node, _ what: String) throws(FieldError) -> [Node] {
        guard case .sequence(let sequence) = node else {
            throw FieldError(node.mark, "\(what) must be a list, not \(describe(node)).")
        }
        return Array(sequence)
    }

    /// The text of a scalar; numbers and booleans give their text as written. Null is refused, so an
    /// empty value is never taken for the text "null".
    static func string(_ node: Node, _ what: String) throws(FieldError) -> String {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            let hint = !isNull(node) ? "" : scalarText(node).isEmpty ? " Give a value, or remove the key." : " Quote it if you mean the word."
            throw FieldError(node.mark, "\(what) must be text, not \(describe(node)).\(hint)")
        }
        // A command's arguments, environment and paths are C strings: a NUL would silently cut them.
        guard !scalar.string.unicodeScalars.contains("\0") else {
            throw FieldError(node.mark, "\(what) holds a NUL character (\\0), which no argument, variable or path can carry. Remove it.")
        }
        return scalar.string
    }

    /// A whole number written as digits (an optional sign, no quotes), at least `minimum` when given.
    static func int(_ node: Node, _ what: String, atLeast minimum: Int?, atMost maximum: Int? = nil) throws(FieldError) -> Int {
        guard let value = integer(node) else {
            let unquote = isQuotedNumber(node) ? " Write it without quotes." : ""
            let range = minimum.map { " of at least \($0)" } ?? ""
            throw FieldError(node.mark, "\(what) must be a whole number\(range), not \(describe(node)).\(unquote)")
        }
        if let minimum, value < minimum {
            throw FieldError(node.mark, "\(what) must be at least \(minimum), not \(value).")
        }
        if let maximum, value > maximum {
            throw FieldError(node.mark, "\(what) must be at most \(maximum), not \(value).")
        }
        return value
    }

    static func integer(_ node: Node) -> Int? {
        guard case .scalar(let scalar) = node, isPlain(node) else { return nil }
        var digits = Substring(scalar.string)
        if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(scalar.string.hasPrefix("+") ? String(scalar.string.dropFirst()) : scalar.string)
    }

    /// `text` as a decimal number (`12`, `1.5`, `2e3`), or nil; no hex, infinities or NaN.
    static func decimal<S: StringProtocol>(_ text: S) -> Double? {
        guard let first = text.first, first.isNumber || first == "." || first == "-" || first == "+",
              text.allSatisfy({ $0.isASCII && ($0.isNumber || ".eE+-".contains($0)) }) else { return nil }
        return Double(String(text)).flatMap { $0.isFinite ? $0 : nil }
    }

    static func bool(_ node: Node, _ what: String) throws(FieldError) -> Bool {
        if case .scalar(let scalar) = node, isPlain(node) {
            switch scalar.string.lowercased() {
            case "true": return true
            case "false": return false
            default: break
            }
        }
        throw FieldError(node.mark, "\(what) must be true or false, not \(describe(node)).")
    }

    private static func scalarText(_ node: Node) -> String {
        if case .scalar(let scalar) = node { return scalar.string }
        return ""
    }

    static func isPlain(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain || scalar.style == .any
    }

    static func isNull(_ node: Node) -> Bool {
        guard isPlain(node), case .scalar(let scalar) = node else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    private static func isQuotedNumber(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, !isPlain(node) else { return false }
        return decimal(scalar.string) != nil
    }

    /// The node as the user wrote it, for error messages.
    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull(node) { return scalar.string.isEmpty ? "nothing (an empty value)" : "null" }
            guard isPlain(node) else { return "the text \"\(scalar.string)\"" }
            if decimal(scalar.string) != nil { return "the number \(scalar.string)" }
            if ["true", "false"].contains(scalar.string.lowercased()) { return scalar.string }
            return "the text \"\(scalar.string)\""
        }
    }

    /// The word of `candidates` closest to `word` when it is close enough to be a typo of it.
    static func didYouMean(_ word: String, among candidates: [String]) -> String? {
        let lowered = word.lowercased()
        var best: (word: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(lowered, candidate.lowercased())
            if distance < (best?.distance ?? .max) { best = (candidate, distance) }
        }
        guard let best else { return nil }
        let tolerance = max(1, min(3, max(word.count, best.word.count) / 3))
        return best.distance <= tolerance ? best.word : nil
    }

    /// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                d[i][j] = min(d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1), d[i - 1][j] + 1, d[i][j - 1] + 1)
                // A swap of two neighbours (`aftre`) is one typo, not two.
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[a.count][b.count]
    }
}
