import Yams

/// Why a workflow file cannot be run: where the problem is and what to do about it. Nothing runs
/// when a workflow has an error (`stepflow run` and `stepflow validate` exit 2).
package struct WorkflowError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The workflow file, as it was given.
    package var file: String
    /// 1-based line and column of the offending text; 0 when the error is about the whole file
    /// (it cannot be read).
    package var line: Int
    package var column: Int
    /// What is wrong, then what to do, as sentences.
    package var message: String

    package init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `file:line:column: message` (the form editors and terminals turn into links).
    package var description: String {
        line > 0 ? "\(file):\(line):\(column): \(message)" : "\(file): \(message)"
    }

    init(file: String, _ error: FieldError) {
        self.init(file: file, line: error.line, column: error.column, message: error.message)
    }
}

/// Why a line a running command appended to its insert file cannot be applied. The runner reports it
/// as the inserting step's error.
package struct InsertLineError: Error, CustomStringConvertible, Sendable, Equatable {
    /// 1-based number of the line in the insert file.
    package var line: Int
    /// 1-based column within the line, when the problem is at a particular place in it.
    package var column: Int?
    /// What is wrong, then what to do, as sentences.
    package var message: String

    package init(line: Int, column: Int?, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    /// `line N, column C: message`.
    package var description: String {
        column.map { "line \(line), column \($0): \(message)" } ?? "line \(line): \(message)"
    }
}

/// An error found while reading a node, placed by the node's mark; the workflow and the insert-line
/// parsers turn it into their own package error (the same field rules serve both).
struct FieldError: Error {
    /// 1-based; 0 when the error is not at a particular place.
    var line: Int
    var column: Int
    var message: String

    init(_ mark: Mark?, _ message: String) {
        self.init(line: mark?.line ?? 0, column: mark?.column ?? 0, message)
    }

    init(line: Int, column: Int, _ message: String) {
        self.line = line
        self.column = column
        self.message = message
    }
}
