/// Where a place in a `/bin/sh -c` line stands as far as quoting goes: what the shell will do with
/// text written there. Placeholders in a `shell:` line are substituted according to it (see
/// `Placeholder.shellForm`).
enum ShellContext: Equatable, CustomStringConvertible {
    /// Outside any quotes, at the top of the line or inside `$(…)`.
    case unquoted
    /// Inside `'…'`: nothing is special but the closing quote.
    case singleQuoted
    /// Inside `"…"`: `$`, `` ` `` and `\` are still special.
    case doubleQuoted
    /// In the body of a here-document whose delimiter is not quoted (`<<EOF`): expansions happen.
    case hereDocument
    /// In the body of a here-document whose delimiter is quoted (`<<'EOF'`): nothing is expanded.
    case quotedHereDocument
    /// Inside `$((…))`: the text is evaluated as an arithmetic expression.
    case arithmetic
    /// Inside `${…}`: the word of a parameter expansion.
    case parameter
    /// Inside `` `…` ``: backslashes are read once more before the command is parsed.
    case backquoted
    /// Inside `$'…'` (bash): backslash escapes are interpreted; dash reads it differently.
    case ansiC
    /// After `#` at the start of a word: the rest of the line is a comment.
    case comment

    var description: String {
        switch self {
        case .unquoted: return "outside quotes"
        case .singleQuoted: return "inside single quotes"
        case .doubleQuoted: return "inside double quotes"
        case .hereDocument: return "in a here-document"
        case .quotedHereDocument: return "in a here-document with a quoted delimiter"
        case .arithmetic: return "inside $((…))"
        case .parameter: return "inside ${…}"
        case .backquoted: return "inside backquotes"
        case .ansiC: return "inside $'…'"
        case .comment: return "in a comment"
        }
    }
}

/// Reads a shell line's quoting the way POSIX `sh` does (quotes, `$(…)`, `` `…` ``, `$((…))`,
/// `${…}`, here-documents, comments) to tell the context of given places. Placeholders are opaque:
/// their own braces and colons never count as shell syntax.
///
/// Safety never rests on this reading being right: a placeholder becomes a reference to an
/// environment variable, and the shell never parses what a variable holds as code. A misreading
/// could only cost an item its exact bytes (quotes or splitting), never run it.
struct ShellLineScanner {
    private enum Frame {
        /// Top level or `$(…)`: `depth` counts open `(`, `caseDepth` open `case … esac`.
        case command(substitution: Bool, depth: Int, caseDepth: Int)
        case single, double, backquote, ansiC, comment
        case arithmetic(depth: Int)
        case parameter(depth: Int)
        case hereDocument(delimiter: [UInt8], quoted: Bool, stripTabs: Bool)
    }

    private struct PendingHereDocument {
        var delimiter: [UInt8]
        var quoted: Bool
        var stripTabs: Bool
    }

    /// The context at the start of each range in `opaque` (UTF-8 offsets into `line`, in order and
    /// not overlapping); the bytes of those ranges are skipped, not read as shell syntax.
    static func contexts(of line: String, opaque: [Range<Int>]) -> [ShellContext] {
        let bytes = Array(line.utf8)
        var stack: [Frame] = [.command(substitution: false, depth: 0, caseDepth: 0)]
        var pending: [PendingHereDocument] = []
        var result: [ShellContext] = []
        var nextOpaque = 0
        var i = 0
        var atLineStart = false

        func isBoundary(_ at: Int) -> Bool {
            at < 0 || at >= bytes.count || " \t\n;&|()<>".utf8.contains(bytes[at])
        }
        func word(at: Int, _ text: String) -> Bool {
            let w = Array(text.utf8)
            guard at + w.count <= bytes.count, Array(bytes[at..<at + w.count]) == w else { return false }
            return isBoundary(at - 1) && isBoundary(at + w.count)
        }
        func context(_ frame: Frame) -> ShellContext {
            switch frame {
            case .command: return .unquoted
            case .single: return .singleQuoted
            case .double: return .doubleQuoted
            case .backquote: return .backquoted
            case .ansiC: return .ansiC
            case .comment: return .comment
            case .arithmetic: return .arithmetic
            case .parameter: return .parameter
            case .hereDocument(_, let quoted, _): return quoted ? .quotedHereDocument : .hereDocument
            }
        }
        /// `$` at `i` in a frame where expansions happen: the frame it opens and the bytes it takes.
        func dollar(_ allowQuotes: Bool) -> (Frame, Int)? {
            guard i + 1 < bytes.count else { return nil }
            switch bytes[i + 1] {
            case UInt8(ascii: "("):
                if i + 2 < bytes.count, bytes[i + 2] == UInt8(ascii: "(") { return (.arithmetic(depth: 0), 3) }
                return (.command(substitution: true, depth: 0, caseDepth: 0), 2)
            case UInt8(ascii: "{"): return (.parameter(depth: 0), 2)
            case UInt8(ascii: "'") where allowQuotes: return (.ansiC, 2)
            case UInt8(ascii: "\"") where allowQuotes: return (.double, 2)
            default: return nil
            }
        }

        while i < bytes.count || nextOpaque < opaque.count {
            if nextOpaque < opaque.count, i >= opaque[nextOpaque].lowerBound {
                result.append(context(stack[stack.count - 1]))
                i = max(i, opaque[nextOpaque].upperBound)
                nextOpaque += 1
                atLineStart = false
                continue
            }
            guard i < bytes.count else {
                // Opaque ranges past the end (none are, from `Placeholder.find`): the last context.
                result.append(context(stack[stack.count - 1]))
                nextOpaque += 1
                continue
            }
            let c = bytes[i]
            let top = stack[stack.count - 1]
            switch top {
            case .hereDocument(let delimiter, let quoted, let stripTabs):
                if atLineStart {
                    var start = i
                    if stripTabs { while start < bytes.count, bytes[start] == UInt8(ascii: "\t") { start += 1 } }
                    var end = start
                    while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
                    if Array(bytes[start..<end]) == delimiter, !opaque[nextOpaque...].contains(where: { $0.lowerBound < end }) {
                        stack.removeLast()
                        i = min(end + 1, bytes.count)
                        atLineStart = true
                        continue
                    }
                }
                atLineStart = c == UInt8(ascii: "\n")
                if quoted { i += 1; continue }
                if c == UInt8(ascii: "\\") { i += 2; continue }
                if c == UInt8(ascii: "`") { stack.append(.backquote); i += 1; continue }
                if c == UInt8(ascii: "$"), let (frame, n) = dollar(false) { stack.append(frame); i += n; continue }
                i += 1
            case .command(let substitution, let depth, let caseDepth):
                atLineStart = false
                switch c {
                case UInt8(ascii: "'"): stack.append(.single); i += 1
                case UInt8(ascii: "\""): stack.append(.double); i += 1
                case UInt8(ascii: "`"): stack.append(.backquote); i += 1
                case UInt8(ascii: "\\"): i += 2
                case UInt8(ascii: "$"):
                    if let (frame, n) = dollar(true) { stack.append(frame); i += n } else { i += 1 }
                case UInt8(ascii: "#") where isBoundary(i - 1):
                    stack.append(.comment); i += 1
                case UInt8(ascii: "("):
                    stack[stack.count - 1] = .command(substitution: substitution, depth: depth + 1, caseDepth: caseDepth)
                    i += 1
                case UInt8(ascii: ")"):
                    if depth > 0 {
                        stack[stack.count - 1] = .command(substitution: substitution, depth: depth - 1, caseDepth: caseDepth)
                    } else if caseDepth == 0, substitution {
                        stack.removeLast()
                    }
                    // Otherwise a case pattern's `)`, or a stray one the shell will refuse.
                    i += 1
                case UInt8(ascii: "<") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "<")
                    && !(i + 2 < bytes.count && bytes[i + 2] == UInt8(ascii: "<")):
                    i += 2
                    var stripTabs = false
                    if i < bytes.count, bytes[i] == UInt8(ascii: "-") { stripTabs = true; i += 1 }
                    while i < bytes.count, bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "\t") { i += 1 }
                    var delimiter: [UInt8] = []
                    var quoted = false
                    var quote: UInt8?
                    while i < bytes.count {
                        let d = bytes[i]
                        if let q = quote {
                            if d == q { quote = nil } else { delimiter.append(d) }
                        } else if d == UInt8(ascii: "'") || d == UInt8(ascii: "\"") {
                            quote = d
                            quoted = true
                        } else if d == UInt8(ascii: "\\") {
                            quoted = true
                            if i + 1 < bytes.count { delimiter.append(bytes[i + 1]); i += 1 }
                        } else if isBoundary(i) {
                            break
                        } else {
                            delimiter.append(d)
                        }
                        i += 1
                    }
                    pending.append(PendingHereDocument(delimiter: delimiter, quoted: quoted, stripTabs: stripTabs))
                case UInt8(ascii: "\n"):
                    i += 1
                    if !pending.isEmpty {
                        // Bodies follow this line in the order their operators came.
                        for doc in pending.reversed() {
                            stack.append(.hereDocument(delimiter: doc.delimiter, quoted: doc.quoted, stripTabs: doc.stripTabs))
                        }
                        pending.removeAll()
                        atLineStart = true
                    }
                default:
                    if word(at: i, "case") {
                        stack[stack.count - 1] = .command(substitution: substitution, depth: depth, caseDepth: caseDepth + 1)
                        i += 4
                    } else if caseDepth > 0, word(at: i, "esac") {
                        stack[stack.count - 1] = .command(substitution: substitution, depth: depth, caseDepth: caseDepth - 1)
                        i += 4
                    } else {
                        i += 1
                    }
                }
            case .single:
                if c == UInt8(ascii: "'") { stack.removeLast() }
                i += 1
            case .ansiC:
                if c == UInt8(ascii: "\\") { i += 2; continue }
                if c == UInt8(ascii: "'") { stack.removeLast() }
                i += 1
            case .comment:
                // The newline belongs to the command: it may start here-document bodies.
                if c == UInt8(ascii: "\n") { stack.removeLast() } else { i += 1 }
            case .double:
                switch c {
                case UInt8(ascii: "\""): stack.removeLast(); i += 1
                case UInt8(ascii: "\\"): i += 2
                case UInt8(ascii: "`"): stack.append(.backquote); i += 1
                case UInt8(ascii: "$"):
                    if let (frame, n) = dollar(false) { stack.append(frame); i += n } else { i += 1 }
                default: i += 1
                }
            case .backquote:
                if c == UInt8(ascii: "\\") { i += 2; continue }
                if c == UInt8(ascii: "`") { stack.removeLast() }
                i += 1
            case .arithmetic(let depth):
                switch c {
                case UInt8(ascii: "("): stack[stack.count - 1] = .arithmetic(depth: depth + 1); i += 1
                case UInt8(ascii: ")"):
                    if depth > 0 {
                        stack[stack.count - 1] = .arithmetic(depth: depth - 1)
                        i += 1
                    } else {
                        stack.removeLast()
                        i += 2
                    }
                case UInt8(ascii: "\\"): i += 2
                case UInt8(ascii: "`"): stack.append(.backquote); i += 1
                case UInt8(ascii: "$"):
                    if let (frame, n) = dollar(false) { stack.append(frame); i += n } else { i += 1 }
                default: i += 1
                }
            case .parameter(let depth):
                switch c {
                case UInt8(ascii: "{"): stack[stack.count - 1] = .parameter(depth: depth + 1); i += 1
                case UInt8(ascii: "}"):
                    if depth > 0 { stack[stack.count - 1] = .parameter(depth: depth - 1) } else { stack.removeLast() }
                    i += 1
                case UInt8(ascii: "'"): stack.append(.single); i += 1
                case UInt8(ascii: "\""): stack.append(.double); i += 1
                case UInt8(ascii: "\\"): i += 2
                case UInt8(ascii: "`"): stack.append(.backquote); i += 1
                case UInt8(ascii: "$"):
                    if let (frame, n) = dollar(false) { stack.append(frame); i += n } else { i += 1 }
                default: i += 1
                }
            }
        }
        return result
    }
}
