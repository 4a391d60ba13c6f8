// What rank 0 sends a rank for one of the scheduler's decisions, read from the graph's records.

extension StepAssignment {
    /// The assignment of decision `a`, its spec and its prerequisites' results read from `graph`.
    init(_ a: borrowing Assignment, in graph: borrowing StepGraph) {
        let r = a.step - 1
        // Field by field, in place: a copy of the whole spec cost ~140 instructions a step.
        self.init(id: a.step, function: graph.records[r].spec.function, args: graph.records[r].spec.args,
                  threads: graph.records[r].spec.threads, gpus: a.gpus, attempt: a.attempt, startBy: a.startBy,
                  inputs: Self.sendsInputs(a, graph) ? graph.inputs(of: a.step, evenWithoutResults: true) : nil,
                  behind: a.behind, inputsOnlyForBehind: Self.inputsOnlyForBehind(a, graph), sendEndsFirst: a.sendEndsFirst)
    }

    /// Whether the step goes with its inputs: once any step of the run set a result (S13), and always
    /// when it is sent behind its prerequisites, since the rank fills in theirs.
    static func sendsInputs(_ a: borrowing Assignment, _ graph: borrowing StepGraph) -> Bool {
        graph.resultCount > 0 || !a.behind.isEmpty
    }

    /// Whether its inputs go only so that a rank can fill in those of the steps it is sent behind.
    static func inputsOnlyForBehind(_ a: borrowing Assignment, _ graph: borrowing StepGraph) -> Bool {
        !a.behind.isEmpty && graph.resultCount == 0
    }
}

extension ToRank {
    /// `.assign` of `StepAssignment(a, in: graph)`, byte for byte as `writeAssign(_:to:)` lays it
    /// out (the same parts), read from the graph's records where they lie. Making the assignment to
    /// encode it at once (its list of inputs, with their names and results, its copies and its
    /// release) cost rank 0 ~1,000 instructions a step it sent to another rank (callgrind, Task Bench
    /// stencil_1d).
    static func writeAssign(_ a: borrowing Assignment, in graph: borrowing StepGraph, to w: inout WireWriter) {
        let r = a.step - 1
        writeAssignHead(id: a.step, function: graph.records[r].spec.function, args: graph.records[r].spec.args, to: &w)
        writeAssignRun(threads: graph.records[r].spec.threads, gpus: a.gpus, attempt: a.attempt, startBy: a.startBy, to: &w)
        // As `StepGraph.inputs(of:)` lists them, with the result part of each stored blob (`StepOutcomeBlob`).
        let sendsInputs = StepAssignment.sendsInputs(a, graph)
        writeInputCount(sendsInputs ? graph.records[r].prerequisites.count : nil, to: &w)
        if sendsInputs {
            for p in graph.records[r].prerequisites {
                let name = StepRecord.displayName(function: graph.records[p - 1].spec.function, args: graph.records[p - 1].spec.args)
                let blob = graph.records[p - 1].result ?? []
                blob.withUnsafeBytes { writeInput(p, name: name, result: UnsafeRawBufferPointer(rebasing: $0[StepOutcomeBlob.resultRange(blob)]), to: &w) }
            }
        }
        writeAssignTail(behind: a.behind, inputsOnlyForBehind: StepAssignment.inputsOnlyForBehind(a, graph),
                        sendEndsFirst: a.sendEndsFirst, to: &w)
    }
}

extension ToRankFrame {
    /// Appends `.assign(StepAssignment(a, in: graph))` without making the assignment.
    func append(_ a: borrowing Assignment, in graph: borrowing StepGraph) {
        appendMessage { ToRank.writeAssign(a, in: graph, to: &$0) }
    }
}
