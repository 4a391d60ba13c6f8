#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Yams

/// The items of a `foreach`: a glob (a string), a list of strings or numbers, or a range
/// `{from: 1, to: 10}` (both ends included).
enum Foreach {
    /// More items than this in one foreach is almost surely a typo (`to: 10000000`), and would take
    /// the memory of as many commands before anything is checked.
    static let maximumItems = 1_000_000

    /// The items `node` stands for, in a reproducible order (S12: a continued run matches its steps by
    /// position): list order, range order, or glob matches sorted by their bytes (not by the locale).
    /// Throws when the foreach is of the wrong type, empty, or a glob that matches nothing.
    static func items(_ node: Node, what: String, folder: String) throws(FieldError) -> [ForeachItem] {
        switch node {
        case .scalar:
            let pattern = try YAMLRead.string(node, what)
            guard !pattern.isEmpty else {
                throw FieldError(node.mark, "\(what) is an empty glob. Give a pattern like 'movies/*.mrc', a list, or a range {from: 1, to: 10}.")
            }
            return try matching(pattern, folder: folder, mark: node.mark, what: what)
        case .sequence(let sequence):
            var items: [ForeachItem] = []
            for element in sequence {
                guard case .scalar = element else {
                    throw FieldError(element.mark, "each item of \(what) must be a string or a number, not \(YAMLRead.describe(element)).")
                }
                let text = try YAMLRead.string(element, "each item of \(what)")
                guard !text.utf8.contains(0) else {
                    throw FieldError(element.mark, "an item of \(what) holds a NUL character, which no argument or environment variable can hold. Remove it.")
                }
                items.append(ForeachItem(text: text))
            }
            guard !items.isEmpty else {
                throw FieldError(node.mark, "\(what) is an empty list, so the step would never run. List its items, or remove the step.")
            }
            return try capped(items, node.mark, what)
        case .mapping:
            return try range(node, what: what)
        case .alias:
            throw FieldError(node.mark, "\(what) must be a glob, a list or a range, not \(YAMLRead.describe(node)).")
        }
    }

    private static func range(_ node: Node, what: String) throws(FieldError) -> [ForeachItem] {
        let entries = try YAMLRead.entries(node, what)
        try YAMLRead.checkKeys(entries, allowed: ["from", "to"], in: "the range of \(what)",
                               synonyms: ["start": "from", "first": "from", "end": "to", "last": "to", "until": "to", "stop": "to"])
        func bound(_ key: String) throws(FieldError) -> Int {
            guard let entry = entries.first(where: { $0.key == key }) else {
                throw FieldError(node.mark, "the range of \(what) has no '\(key)'. Write it as {from: 1, to: 10} (both ends included).")
            }
            return try YAMLRead.int(entry.value, "\(key) of \(what)", atLeast: nil)
        }
        let from = try bound("from"), to = try bound("to")
        guard from <= to else {
            throw FieldError(node.mark, "the range of \(what) goes from \(from) down to \(to), so it holds nothing. Give from ≤ to (both ends are included).")
        }
        guard to.subtractingReportingOverflow(from).partialValue < maximumItems, !to.subtractingReportingOverflow(from).overflow else {
            throw FieldError(node.mark, "the range of \(what) holds more than \(maximumItems) items. Split the work into batches (batch: N), or check the ends.")
        }
        return (from...to).map { ForeachItem(text: String($0)) }
    }

    /// The most patterns a glob's `{a,b}` alternatives may stand for.
    static let maximumBraceExpansions = 10_000

    /// How many patterns `pattern`'s brace alternatives expand to (as glob's GLOB_BRACE does:
    /// groups multiply, alternatives add, `\` escapes a brace), as a Double so it never overflows.
    static func braceExpansions(_ pattern: ArraySlice<UInt8>) -> Double {
        var total = 1.0
        var i = pattern.startIndex
        while i < pattern.endIndex {
            let c = pattern[i]
            if c == UInt8(ascii: "\\") { i += 2; continue }
            guard c == UInt8(ascii: "{") else { i += 1; continue }
            // Find the alternatives of this group, at depth 1, and where it closes.
            var depth = 0, j = i, alternativeStart = i + 1
            var sum = 0.0
            var closed = false
            while j < pattern.endIndex {
                let d = pattern[j]
                if d == UInt8(ascii: "\\") { j += 2; continue }
                if d == UInt8(ascii: "{") { depth += 1 }
                if d == UInt8(ascii: ",") && depth == 1 {
                    sum += braceExpansions(pattern[alternativeStart..<j])
                    alternativeStart = j + 1
                }
                if d == UInt8(ascii: "}") {
                    depth -= 1
                    if depth == 0 {
                        sum += braceExpansions(pattern[alternativeStart..<j])
                        closed = true
                        break
                    }
                }
                j += 1
            }
            // An unclosed brace is a plain character to glob.
            guard closed else { i += 1; continue }
            total *= sum
            i = j + 1
        }
        return total
    }

    private static func capped(_ items: [ForeachItem], _ mark: Mark?, _ what: String) throws(FieldError) -> [ForeachItem] {
        guard items.count <= maximumItems else {
            throw FieldError(mark, "\(what) holds \(items.count) items, more than \(maximumItems). Split the work into batches (batch: N), or narrow it.")
        }
        return items
    }

    /// Paths matching `pattern`: relative to `folder` (and given relative, as matched) unless the
    /// pattern is absolute. `*`, `?`, `[…]` and `{a,b}` work as in the shell; `*` skips hidden files.
    static func matching(_ pattern: String, folder: String, mark: Mark?, what: String) throws(FieldError) -> [ForeachItem] {
        let prefix = pattern.hasPrefix("/") ? "" : folder.hasSuffix("/") ? folder : folder + "/"
        // The folder is literal text: a folder named `data[1]` must not be read as a pattern.
        let escapedPrefix = prefix.reduce(into: "") { out, c in
            if "*?[]{}\\".contains(c) { out.append("\\") }
            out.append(c)
        }
        // glob expands every brace alternative before it matches anything: `{.,.}/` twenty times is a
        // million patterns. Count them first.
        let expansions = braceExpansions(Array(pattern.utf8)[...])
        guard expansions <= Double(maximumBraceExpansions) else {
            throw FieldError(mark, "the glob '\(pattern)' (\(what)) stands for \(expansions < 1e15 ? String(Int(expansions)) : "more than 10^15") patterns through its {a,b} alternatives, more than \(maximumBraceExpansions). Use fewer alternatives, or list the items.")
        }
        var matches = glob_t()
        defer { globfree(&matches) }
        let status = glob(escapedPrefix + pattern, GLOB_BRACE, nil, &matches)
        switch status {
        case 0:
            break
        case GLOB_NOMATCH:
            throw FieldError(mark, "the glob '\(pattern)' (\(what)) matches nothing\(pattern.hasPrefix("/") ? "" : " in \(folder)"). Check the pattern (it is relative to the workflow's folder), or create the files before the workflow is read.")
        case GLOB_ABORTED:
            throw FieldError(mark, "the glob '\(pattern)' (\(what)) could not be matched: a folder on its way cannot be read. Check its permissions.")
        default:
            throw FieldError(mark, "the glob '\(pattern)' (\(what)) could not be matched (glob error \(status)).")
        }
        var paths: [String] = []
        for i in 0..<Int(matches.gl_pathc) {
            guard let cPath = matches.gl_pathv[i] else { continue }
            // A name that is not UTF-8 would reach the command changed: say so rather than run it so.
            guard let path = String(validatingCString: cPath) else {
                let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(cPath).assumingMemoryBound(to: UInt8.self), count: strlen(cPath))
                let shown = bytes.map { $0 < 0x80 && $0 >= 0x20 ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16, uppercase: true) }.joined()
                throw FieldError(mark, "the glob '\(pattern)' (\(what)) matches '\(shown)', whose name is not UTF-8 text. Rename the file (convmv can), or narrow the glob.")
            }
            let relative = path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path
            // The same file, never taken for an option: `-rf.txt` would be one to rm or tar.
            paths.append(relative.hasPrefix("-") ? "./" + relative : relative)
        }
        paths.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        // Brace alternatives may match a path twice (`{a*,*b}`): one step per path. Bytes are compared,
        // not Strings, which would take two names in different Unicode forms for one.
        paths = paths.enumerated().filter { $0.offset == 0 || !paths[$0.offset - 1].utf8.elementsEqual($0.element.utf8) }.map(\.element)
        return try capped(paths.map { ForeachItem(text: $0) }, mark, what)
    }
}
