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
    /// out, read from the graph's records where they lie. Making the assignment to encode it at once
    /// (its list of inputs, with their names and results, its copies and its release) cost rank 0
    /// ~1,000 instructions a step it sent to another rank (callgrind, Task Bench stencil_1d).
    static func writeAssign(_ a: borrowing Assignment, in graph: borrowing StepGraph, to w: inout WireWriter) {
        let r = a.step - 1
        w.withRoom(31 + graph.records[r].spec.function.utf8.count) { c in
            c.byte(1); c.int(a.step); c.string(graph.records[r].spec.function)
            c.varint(UInt64(graph.records[r].spec.args.count))
        }
        for v in graph.records[r].spec.args { w.value(v) }
        w.withRoom(10 * (4 + a.gpus.count) + 9) { c in
            c.int(graph.records[r].spec.threads)
            c.varint(UInt64(a.gpus.count))
            for g in a.gpus { c.int(g) }
            c.int(a.attempt); c.optionalDouble(a.startBy)
        }
        // 0: no inputs sent; n + 1: n of them, as `StepGraph.inputs(of:)` lists them.
        if StepAssignment.sendsInputs(a, graph) {
            w.varint(UInt64(graph.records[r].prerequisites.count) + 1)
            for p in graph.records[r].prerequisites {
                let name = StepRecord.displayName(function: graph.records[p - 1].spec.function, args: graph.records[p - 1].spec.args)
                writeInput(p, name: name, blob: graph.records[p - 1].result, to: &w)
            }
        } else {
            w.varint(0)
        }
        w.withRoom(10 * (1 + a.behind.count) + 1) { c in
            c.varint(UInt64(a.behind.count))
            for b in a.behind { c.int(b) }
            // Sent behind: flags, bit 0 inputsOnlyForBehind, bit 1 sendEndsFirst.
            if !a.behind.isEmpty {
                c.byte((StepAssignment.inputsOnlyForBehind(a, graph) ? 1 : 0) | (a.sendEndsFirst ? 2 : 0))
            }
        }
    }

    /// One input: its id, its name, and the result part of its stored blob (`StepOutcomeBlob`).
    private static func writeInput(_ id: StepID, name: String, blob: [UInt8]?, to w: inout WireWriter) {
        guard let blob else {
            w.withRoom(31 + name.utf8.count) { c in c.int(id); c.string(name); c.varint(0) }
            return
        }
        let result = StepOutcomeBlob.resultRange(blob)
        w.withRoom(30 + name.utf8.count + result.count) { c in
            c.int(id); c.string(name)
            c.varint(UInt64(result.count))
            blob.withUnsafeBytes { c.raw(UnsafeRawBufferPointer(rebasing: $0[result])) }
        }
    }
}

extension ToRankFrame {
    /// Appends `.assign(StepAssignment(a, in: graph))` without making the assignment.
    func append(_ a: borrowing Assignment, in graph: borrowing StepGraph) {
        appendMessage { ToRank.writeAssign(a, in: graph, to: &$0) }
    }
}
