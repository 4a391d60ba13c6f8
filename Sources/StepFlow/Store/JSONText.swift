import Foundation

/// Compact JSON text for id lists and the recorded command line, written by hand because the run database
/// writes every step and Foundation's encoder costs more than the step itself.
extension StepValue {
    /// The value as compact JSON text (a command step reads a Swift step's value result so).
    package var jsonText: String {
        var out = JSONBytes()
        out.value(self)
        return out.text
    }
}

enum JSONText {
    /// The list as compact JSON text (`JSONBytes.values`: one writer for every JSON the project writes).
    static func values(_ values: [StepValue]) -> String {
        var out = JSONBytes()
        out.values(values)
        return out.text
    }

    /// Written for every step with prerequisites: appending to one string (short ones stay inline,
    /// with no allocation) instead of mapping to strings and joining them.
    static func ids(_ ids: [Int]) -> String {
        var out = "["
        for (i, id) in ids.enumerated() {
            if i > 0 { out += "," }
            out += String(id)
        }
        out += "]"
        return out
    }

    static func append(_ v: StepValue, to out: inout String) { out += v.jsonText }

    /// Escapes as `JSONBytes.string` does (one escaping rule for every JSON the project writes).
    static func appendString(_ s: String, to out: inout String) { out += JSONBytes.quoted(s) }

    /// Parses what `values` wrote for a list of strings (the recorded command line).
    static func parseStrings(_ text: String) -> [String]? {
        try? JSONDecoder().decode([String].self, from: Data(text.utf8))
    }

    /// Parses what `ids` wrote; nil when it is not a list of whole numbers.
    static func parseIDList(_ text: String) -> [Int]? {
        try? JSONDecoder().decode([Int].self, from: Data(text.utf8))
    }
}
