/// One step of a graph to draw: any protocol's run, or a workflow file before it runs.
package struct GraphNode: Sendable, Equatable {
    package var id: Int
    package var label: String
    /// Ids of the steps it runs after; ids that are not nodes of the graph are not drawn.
    package var prerequisites: [Int]
    /// Colours the node; nil for a graph that has not run.
    package var status: StepStatus?

    package init(id: Int, label: String, prerequisites: [Int], status: StepStatus? = nil) {
        self.id = id
        self.label = label
        self.prerequisites = prerequisites
        self.status = status
    }
}

/// The text formats a step graph is written in.
package enum GraphFormat: String, Sendable, CaseIterable {
    /// Graphviz: `dot -Tsvg graph.dot > graph.svg`.
    case dot
    /// A Mermaid flowchart, drawn by GitHub and GitLab in Markdown.
    case mermaid
}

/// Writes a step graph as Graphviz DOT or a Mermaid flowchart: a box per step with its label, an
/// arrow from each prerequisite to the step after it, and the fill colour of the step's status.
/// Labels are escaped, so any text (quotes, newlines, brackets, `#`, `<`) shows as written.
package enum GraphExport {
    package static func render(_ nodes: [GraphNode], format: GraphFormat) -> String {
        switch format {
        case .dot: return dot(nodes)
        case .mermaid: return mermaid(nodes)
        }
    }

    /// Fill colours by status: pale, so the labels stay readable.
    package static func color(_ status: StepStatus) -> String {
        switch status {
        case .new: return "#ffffff"
        case .waiting: return "#fff3b0"
        case .running: return "#9ecbff"
        case .finished: return "#b7e4b0"
        case .failed: return "#f4a6a6"
        case .aborted: return "#f6c28b"
        case .skipped: return "#d9d9d9"
        }
    }

    package static func dot(_ nodes: [GraphNode]) -> String {
        let ids = Set(nodes.map(\.id))
        var lines = ["digraph steps {",
                     "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];"]
        for node in nodes {
            var attributes = ["label=\(dotQuoted(node.label))"]
            if let status = node.status {
                attributes.append("fillcolor=\"\(color(status))\"")
                attributes.append("tooltip=\(dotQuoted("\(node.label): \(status.rawValue)"))")
            }
            lines.append("  s\(node.id) [\(attributes.joined(separator: ", "))];")
        }
        for node in nodes {
            for prerequisite in node.prerequisites where ids.contains(prerequisite) {
                lines.append("  s\(prerequisite) -> s\(node.id);")
            }
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    package static func mermaid(_ nodes: [GraphNode]) -> String {
        let ids = Set(nodes.map(\.id))
        var lines = ["flowchart TD"]
        for node in nodes {
            // Class names get a prefix: `end` and friends are Mermaid keywords.
            let style = node.status.map { ":::st_\($0.rawValue)" } ?? ""
            lines.append("  s\(node.id)[\"\(mermaidEscaped(node.label))\"]\(style)")
        }
        for node in nodes {
            for prerequisite in node.prerequisites where ids.contains(prerequisite) {
                lines.append("  s\(prerequisite) --> s\(node.id)")
            }
        }
        let used = Set(nodes.compactMap(\.status))
        for status in StepStatus.allCases where used.contains(status) {
            lines.append("  classDef st_\(status.rawValue) fill:\(color(status)),stroke:#555")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A DOT double-quoted string: `\` and `"` escaped, line breaks as `\n` (DOT reads other
    /// backslash sequences, `\N` `\l` …, as its own, hence the doubled backslash).
    package static func dotQuoted(_ text: String) -> String {
        var out = "\""
        for character in text {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n", "\r\n": out += "\\n"
            case "\r": out += "\\n"
            default:
                if character.unicodeScalars.allSatisfy({ $0.properties.generalCategory == .control }) {
                    out += " "
                } else {
                    out.append(character)
                }
            }
        }
        return out + "\""
    }

    /// Text for inside a Mermaid `["…"]` label: Mermaid has no backslash escapes, only entity codes
    /// (`#quot;`), and reads `<…>` as HTML, so those characters are written as codes; line breaks
    /// become `<br>`.
    package static func mermaidEscaped(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "\"": out += "#quot;"
            case "#": out += "#35;"
            case "&": out += "#amp;"
            case "<": out += "#lt;"
            case ">": out += "#gt;"
            case "`": out += "#96;"
            case "\n", "\r\n", "\r": out += "<br>"
            default:
                if character.unicodeScalars.allSatisfy({ $0.properties.generalCategory == .control }) {
                    out += " "
                } else {
                    out.append(character)
                }
            }
        }
        return out
    }
}
