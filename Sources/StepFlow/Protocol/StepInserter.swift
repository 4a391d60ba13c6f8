import Synchronization

/// A change to the step graph, as a protocol, a hook or a running step asks for it.
package enum GraphEdit: Sendable, Equatable {
    case insert(StepSpec, prerequisites: [StepID], at: SourceLocation?)
    case addPrerequisites(to: StepID, [StepID], at: SourceLocation?)
    case release(StepID, at: SourceLocation?)
}

/// Where graph edits go: straight into rank 0's scheduler, across a transport to rank 0, or (on a
/// worker rank running `insertAllSteps`) into a counter that only numbers the steps.
package protocol GraphEditor: Sendable {
    /// Applies the edit for `inserter`; returns the new step's id for an insert.
    func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID?
}

/// A graph edit refused on rank 0, as it reaches the step that asked for it.
package struct GraphEditError: Error, CustomStringConvertible, Equatable, Sendable {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// Inserts steps on behalf of one inserter, applying the default prerequisite of S2: a step inserted
/// without `prerequisites` depends on the step this inserter inserted just before it.
///
/// `insertAllSteps` gets one; a running step (`StepContext`) and the hook (`StepsCheck`) reach theirs
/// through `StepInserting`. The engine makes them.
public final class StepInserter: Sendable {
    package let inserter: Inserter
    private let editor: any GraphEditor
    private let functionNames: Set<String>
    private let lastInserted: Mutex<StepID?>

    package init(_ inserter: Inserter, editor: any GraphEditor, functionNames: Set<String>) {
        self.inserter = inserter
        self.editor = editor
        self.functionNames = functionNames
        self.lastInserted = Mutex(nil)
    }

    /// Inserts a step that runs the registered function `name` with `args`.
    ///
    /// - Parameters:
    ///   - prerequisites: steps that must finish first. `nil` (the default) means the step this
    ///     inserter inserted last, if any; `[]` means none.
    ///   - wait: insert the step `waiting`; it runs only once released.
    ///   - threads: slots the step occupies on its rank (1...T).
    ///   - needsGPU: the step gets one of its rank's GPUs.
    ///   - retries: how many more times a failed attempt is tried.
    ///   - expected: how long it should take; near the end of an allocation (`--stop-before`) a step
    ///     that would not finish in the time left is not started.
    /// - Returns: the new step's id, usable at once as a prerequisite.
    /// - Throws: an error whose message names the call's file and line, for an unknown function name,
    ///   a prerequisite that does not exist, or a resource request that can never be met (`threads`
    ///   above T, `needsGPU` without GPUs, negative `retries`, arguments nested too deep); or rank 0's
    ///   refusal, as the step that asked gets it.
    @discardableResult
    public func insertFunctionStep(_ name: String, _ args: [StepValue], prerequisites: [StepID]? = nil,
                                   wait: Bool = false, threads: Int = 1, needsGPU: Bool = false,
                                   retries: Int = 0, expected: Duration? = nil, file: String = #fileID, line: Int = #line) throws -> StepID {
        let location = SourceLocation(file: file, line: line)
        guard functionNames.contains(name) else {
            throw StepGraphError.unknownFunction(name, known: Array(functionNames), at: location)
        }
        // A step keeps these in 32 bits: a larger number is refused as given, not stored clamped.
        if threads > StepSpec.largestCount { throw StepGraphError.tooLarge(function: name, field: "threads", value: threads, at: location) }
        if retries > StepSpec.largestCount { throw StepGraphError.tooLarge(function: name, field: "retries", value: retries, at: location) }
        let spec = StepSpec(function: name, args: args, threads: threads, needsGPU: needsGPU, retries: retries, wait: wait,
                            expectedSeconds: expected.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 })
        return try lastInserted.withLock { last in
            let prereqs = prerequisites ?? (last.map { [$0] } ?? [])
            guard let id = try editor.apply(.insert(spec, prerequisites: prereqs, at: location), by: inserter) else {
                throw GraphEditError("rank 0 returned no id for the new '\(name)' step")
            }
            last = id
            return id
        }
    }

    /// Makes `target`, a step that has not started, wait for `prerequisites` too (S3).
    /// - Throws: an error naming the call's file and line when a step does not exist, `target` has
    ///   already started, or the edit would make a cycle.
    public func addPrerequisites(to target: StepID, _ prerequisites: [StepID],
                                 file: String = #fileID, line: Int = #line) throws {
        _ = try editor.apply(.addPrerequisites(to: target, prerequisites, at: SourceLocation(file: file, line: line)), by: inserter)
    }

    /// Releases a step inserted with `wait: true`: it runs once its prerequisites are done (S4).
    /// - Throws: an error naming the call's file and line when the step does not exist or is not waiting.
    public func release(_ id: StepID, file: String = #fileID, line: Int = #line) throws {
        _ = try editor.apply(.release(id, at: SourceLocation(file: file, line: line)), by: inserter)
    }
}

extension StepInserter {
    /// Inserts a step; the arguments are listed inline, the rest is as in
    /// `insertFunctionStep(_:_:prerequisites:wait:threads:needsGPU:retries:expected:file:line:)`.
    /// - Returns: the new step's id.
    /// - Throws: as the array form.
    @discardableResult
    public func insertFunctionStep(_ name: String, _ args: StepValue..., prerequisites: [StepID]? = nil,
                                   wait: Bool = false, threads: Int = 1, needsGPU: Bool = false,
                                   retries: Int = 0, expected: Duration? = nil, file: String = #fileID, line: Int = #line) throws -> StepID {
        try insertFunctionStep(name, args, prerequisites: prerequisites, wait: wait, threads: threads,
                               needsGPU: needsGPU, retries: retries, expected: expected, file: file, line: line)
    }
}

/// Numbers the steps a worker rank's `insertAllSteps` inserts, without keeping a graph: only rank 0
/// keeps one (S3). It makes the checks any rank can make alone, so every rank refuses the same input.
package final class StepNumberer: GraphEditor {
    private let count = Mutex(0)
    private let threadsPerRank: Int
    private let anyGPU: Bool

    package init(threadsPerRank: Int, anyGPU: Bool) {
        self.threadsPerRank = threadsPerRank
        self.anyGPU = anyGPU
    }

    package func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
        try count.withLock { (n: inout Int) throws -> StepID? in
            switch edit {
            case .insert(let spec, let prerequisites, let at):
                try Scheduler.validate(spec, threadsPerRank: threadsPerRank, anyGPU: anyGPU, at: at)
                for p in prerequisites {
                    if p == n + 1 { throw StepGraphError.selfPrerequisite(p, at: at) }
                    if p < 1 || p > n { throw StepGraphError.unknownStep(p, context: "prerequisite of new step \(n + 1) ('\(spec.function)')", at: at) }
                }
                n += 1
                return n
            case .addPrerequisites(let target, let prerequisites, let at):
                for p in [target] + prerequisites where p < 1 || p > n {
                    throw StepGraphError.unknownStep(p, context: "addPrerequisites(to: \(target))", at: at)
                }
                return nil
            case .release(let id, let at):
                if id < 1 || id > n { throw StepGraphError.unknownStep(id, context: "release", at: at) }
                return nil
            }
        }
    }
}
