import Foundation
import Logging
import Synchronization

/// Inserting steps, adding prerequisites and releasing steps: what `insertAllSteps` (a
/// `StepInserter`), a running step (a `StepContext`) and the `stepsCheck` hook (a `StepsCheck`) can
/// all do. A helper that inserts steps from any of the three takes `some StepInserting`.
public protocol StepInserting {
    /// The inserter the edits go through.
    var steps: StepInserter { get }
}

extension StepInserter: StepInserting {
    /// The inserter itself.
    public var steps: StepInserter { self }
}

extension StepInserting {
    /// Inserts a step that runs the registered function `name` with the arguments listed inline; the
    /// options are those of `StepInserter.insertFunctionStep(_:_:prerequisites:wait:threads:needsGPU:retries:expected:file:line:)`.
    /// - Returns: the new step's id.
    /// - Throws: an error naming the call's file and line for an unknown function, a prerequisite that
    ///   does not exist, or a request no rank can meet.
    @discardableResult
    public func insertFunctionStep(_ name: String, _ args: StepValue..., prerequisites: [StepID]? = nil,
                                   wait: Bool = false, threads: Int = 1, needsGPU: Bool = false,
                                   retries: Int = 0, expected: Duration? = nil, file: String = #fileID, line: Int = #line) throws -> StepID {
        try steps.insertFunctionStep(name, args, prerequisites: prerequisites, wait: wait, threads: threads,
                                     needsGPU: needsGPU, retries: retries, expected: expected, file: file, line: line)
    }

    /// Inserts a step with its arguments given as an array; otherwise as `insertFunctionStep(_:_:…)`.
    /// - Returns: the new step's id.
    /// - Throws: as `insertFunctionStep(_:_:…)`.
    @discardableResult
    public func insertFunctionStep(_ name: String, arguments: [StepValue], prerequisites: [StepID]? = nil,
                                   wait: Bool = false, threads: Int = 1, needsGPU: Bool = false,
                                   retries: Int = 0, expected: Duration? = nil, file: String = #fileID, line: Int = #line) throws -> StepID {
        try steps.insertFunctionStep(name, arguments, prerequisites: prerequisites, wait: wait, threads: threads,
                                     needsGPU: needsGPU, retries: retries, expected: expected, file: file, line: line)
    }

    /// Makes `target`, a step that has not started, wait for `prerequisites` too (S3).
    /// - Throws: an error naming the call's file and line when a step does not exist, `target` has
    ///   already started, or the edit would make a cycle.
    public func addPrerequisites(to target: StepID, _ prerequisites: [StepID], file: String = #fileID, line: Int = #line) throws {
        try steps.addPrerequisites(to: target, prerequisites, file: file, line: line)
    }

    /// Releases a step inserted with `wait: true`: it runs once its prerequisites are done (S4).
    /// - Throws: an error naming the call's file and line when the step does not exist or is not waiting.
    public func release(_ id: StepID, file: String = #fileID, line: Int = #line) throws {
        try steps.release(id, file: file, line: line)
    }
}

/// What a running step is handed: who it is, where it runs, its arguments and a logger; and the
/// graph edits of S3 (insert, add prerequisites, release), which rank 0 applies in order.
///
/// The engine makes one per attempt; a step function receives it as its second argument.
public final class StepContext: StepInserting, Sendable {
    /// The step's id (S1).
    public let id: StepID
    /// The registered function the step runs.
    public let function: String
    /// The arguments it was inserted with.
    public let args: [StepValue]
    /// The MPI rank running it (0 alone).
    public let rank: Int
    /// The worker slot (0..<T) on `rank` that runs the step.
    public let slot: Int
    /// The GPU ids it holds: one for a `needsGPU` step, none otherwise.
    public let gpus: [Int]
    /// 1 for the first attempt, 2 for the first retry, …
    public let attempt: Int
    /// The run directory (`--run-dir`), where steps write their outputs.
    public let runDirectory: URL
    /// Slots the step holds on its rank (its `threads:`): how many threads it may use.
    public let threads: Int
    /// Set when the run is stopped (a signal): a step that waits on something long (a command) should
    /// end it and return; its result is not recorded.
    package let cancellation: Cancellation
    /// This launch's number in the run (1, then one more per `--continue`).
    public let launch: Int
    /// The inserter the step's edits go through: steps it inserts have it as their inserter (S12).
    /// Made on first use: most steps edit nothing, and making it for each cost an allocation and a
    /// release a step (~480 instructions of a Task Bench step's ~19,000 on rank 0, callgrind).
    public var steps: StepInserter {
        held.withLock { held in
            if let made = held.inserter { return made }
            let new = StepInserter(.step(id), editor: editor, functionNames: functionNames)
            held.inserter = new
            return new
        }
    }
    private let editor: any GraphEditor
    private let functionNames: Set<String>
    /// Its prerequisites and their results (an empty result: it set none), when rank 0 sent them:
    /// it does once any step of the run has set a result (S13).
    @usableFromInline package let inputs: [StepInput]?
    /// The largest result the step may set, in bytes as stored.
    package let resultLimit: Int
    /// Whether declared inputs are hashed (`--fingerprint content`) or only stat'ed.
    package let fingerprintContent: Bool
    /// Whether it declared any: every step asks when it ends, and most declare none, so the answer
    /// costs an atomic load rather than a lock.
    private let hasDeclared = Atomic<Bool>(false)
    /// What the step made as it ran, under one lock: four locks, each destroyed through the runtime's
    /// generic witness, cost ~300 instructions a step (callgrind).
    private struct Held {
        /// Made on first use (`steps`).
        var inserter: StepInserter?
        /// What it set (`StepResult.encoded`).
        var result: [UInt8]?
        /// The files it declared: inputs fingerprinted when declared, outputs (path as declared,
        /// absolute) fingerprinted when it finishes.
        var declared: (inputs: [FileFingerprint], outputs: [(String, String)], files: StepFiles?)?
        /// The step's log, opened on the first line written, so steps that log nothing cost no file.
        /// Kept here rather than in an object of its own: that object cost an allocation and a release
        /// per step, a tenth of what a worker spends on an empty step.
        var log: FileHandle?
    }
    private let held = Mutex(Held())

    package init(id: StepID, function: String, args: [StepValue], rank: Int, slot: Int, gpus: [Int],
                attempt: Int, runDirectory: URL, editor: any GraphEditor, functionNames: Set<String>, launch: Int = 1,
                threads: Int = 1, cancellation: Cancellation = Cancellation(), inputs: [StepInput]? = nil,
                resultLimit: Int = StepResult.defaultLimit, fingerprintContent: Bool = false) {
        self.fingerprintContent = fingerprintContent
        self.inputs = inputs
        self.resultLimit = resultLimit
        self.id = id
        self.function = function
        self.args = args
        self.rank = rank
        self.slot = slot
        self.gpus = gpus
        self.attempt = attempt
        self.runDirectory = runDirectory
        self.threads = threads
        self.cancellation = cancellation
        self.launch = launch
        self.editor = editor
        self.functionNames = functionNames
    }

    /// True once the run is stopping (a signal, a time limit): a step that waits on something long
    /// should stop waiting and return (or throw); its result is not recorded either way.
    public var isCancelled: Bool { cancellation.isCancelled }

    /// Where the step's log is (`logs/step-<id>.log`, or `logs/launch-<n>/…`), whether or not
    /// anything was written yet. A step that writes it itself must append (O_APPEND): the logger
    /// appends to the same file.
    public var logFilePath: String { StepLogFile.path(runDirectory: runDirectory, step: id, launch: launch) }

    /// A logger whose lines go to `<run-dir>/logs/step-<id>.log` (created on the first line); in a
    /// continued run's later launches, `<run-dir>/logs/launch-<n>/step-<id>.log`.
    public var logger: Logger {
        var logger = Logger(label: "step-\(id)") { [self] _ in StepLogHandler(context: self) }
        logger[metadataKey: "step"] = "\(id)"
        return logger
    }

    /// The step's log file, once something was written to it.
    public var logPath: String? { held.withLock { $0.log != nil } ? logFilePath : nil }

    /// Hands `result` to the steps that depend on this one (S13): each reads it with `result(of:)`.
    /// Setting it again replaces it; it is kept only if the step finishes.
    /// - Throws: `StepResultError.tooLarge` when it is larger than the run's limit (64 KiB unless
    ///   `--result-limit` says otherwise); nothing is set then.
    public func setResult(_ result: StepResult) throws { try setEncodedResult(result.encoded) }

    /// Sets a result given as it is carried (`StepResult.encoded`), as `setResult(_:)` does: for a
    /// step that builds its bytes behind the kind byte itself, saving the copy `encoded` makes.
    /// - Throws: `StepResultError.tooLarge` past the run's limit.
    package func setEncodedResult(_ encoded: [UInt8]) throws {
        // The kind byte is the engine's: the limit counts what the step gave.
        guard encoded.count - 1 <= resultLimit else {
            throw StepResultError.tooLarge(step: id, function: function, bytes: encoded.count - 1, limit: resultLimit)
        }
        held.withLock { $0.result = encoded }
    }

    /// Hands `bytes` to the dependents; as `setResult(_:)`.
    /// - Throws: `StepResultError.tooLarge` past the run's limit.
    public func setResult(_ bytes: [UInt8]) throws { try setResult(.bytes(bytes)) }

    /// Hands `value` to the dependents; as `setResult(_:)`.
    /// - Throws: `StepResultError.tooLarge` past the run's limit.
    public func setResult(_ value: StepValue) throws { try setResult(.value(value)) }

    /// The result prerequisite `id` handed this step, or nil when it set none. (Before any step of the
    /// run has set a result, every call returns nil.)
    /// - Throws: `StepResultError.notAPrerequisite` when `id` is not one of this step's prerequisites.
    public func result(of id: StepID) throws -> StepResult? {
        guard let inputs else { return nil }
        guard let input = inputs.first(where: { $0.id == id }) else {
            throw StepResultError.notAPrerequisite(step: self.id, asked: id)
        }
        let result = StepOutcomeBlob.split(input.result).result
        return result.isEmpty ? nil : StepResult(encoded: result)
    }

    /// Calls `body` with the bytes prerequisite `id` set as its result, read where they are: nil when
    /// it set none or set a value. `result(of:)` copies them into a new array; a step that reads many
    /// small results only to check them (Task Bench's tasks) need not. Inlined into the caller (a
    /// protocol's module): as a generic called across modules it ran unspecialized, ~240 instructions
    /// a call, three calls a Task Bench step (callgrind).
    /// - Throws: `StepResultError.notAPrerequisite` as `result(of:)`, and what `body` throws.
    @inlinable
    package func withResultBytes<T>(of id: StepID, _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T {
        guard let inputs else { return try body(nil) }
        guard let i = inputs.firstIndex(where: { $0.id == id }) else {
            throw StepResultError.notAPrerequisite(step: self.id, asked: id)
        }
        // Kind 0 (bytes) is read in place; a blob led by files' fingerprints goes the long way.
        if inputs[i].result.first == 0 {
            return try inputs[i].result.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[1...])) }
        }
        guard let bytes = try result(of: id)?.bytes else { return try body(nil) }
        return try bytes.withUnsafeBytes(body)
    }

    /// The result this step set so far (`StepResult.encoded`), with the fingerprints of its declared
    /// files once it finished (`StepOutcomeBlob`).
    package var resultEncoded: [UInt8]? {
        held.withLock { StepOutcomeBlob.make(result: $0.result, files: hasDeclared.load(ordering: .acquiring) ? $0.declared?.files : nil) }
    }

    /// Declares the files this step reads and writes (S9 with files): each input is fingerprinted
    /// now (size and modification time, or its bytes' hash with `--fingerprint content`), each output
    /// when the step finishes. A later `--continue` runs the step again when an input changed or an
    /// output is gone or changed. Relative paths are taken from the current folder. Call it before
    /// reading the inputs: a file changed after this call is noticed by the next `--continue`.
    /// Declaring again adds to what was declared.
    /// - Throws: `StepFilesError.missingInput` when an input does not exist (the step fails),
    ///   `.unreadable` when an input's bytes cannot be read for its hash.
    public func declareFiles(inputs: [String] = [], outputs: [String] = []) throws {
        let folder = FileManager.default.currentDirectoryPath
        try declareFiles(inputs: inputs.map { ($0, Self.absolute($0, folder: folder)) },
                         outputs: outputs.map { ($0, Self.absolute($0, folder: folder)) }, producers: [:])
    }

    /// As the public `declareFiles`, with each path's absolute form given, and for inputs the step
    /// that should have made them (named in the error when one is missing).
    package func declareFiles(inputs: [(String, String)], outputs: [(String, String)], producers: [String: String]) throws {
        var taken: [FileFingerprint] = []
        for (shown, absolute) in inputs {
            guard let f = try FileFingerprint.take(path: shown, absolute: absolute, content: fingerprintContent) else {
                throw StepFilesError.missingInput(step: id, name: function, path: shown, producer: producers[shown])
            }
            taken.append(f)
        }
        held.withLock { held in
            var now = held.declared ?? ([], [], nil)
            now.inputs += taken
            now.outputs += outputs
            held.declared = now
        }
        hasDeclared.store(true, ordering: .releasing)
    }

    /// Fingerprints the declared outputs of a step that finished.
    /// - Throws: `StepFilesError.missingOutput` for an output it did not make (the step fails).
    package func fingerprintOutputs() throws {
        guard hasDeclared.load(ordering: .acquiring), let d = held.withLock({ $0.declared }) else { return }
        var outputs: [FileFingerprint] = []
        for (shown, absolute) in d.outputs {
            guard let f = try FileFingerprint.take(path: shown, absolute: absolute, content: false) else {
                throw StepFilesError.missingOutput(step: id, name: function, path: shown)
            }
            outputs.append(f)
        }
        let files = StepFiles(inputs: d.inputs, outputs: outputs, content: fingerprintContent)
        held.withLock { $0.declared?.files = files }
    }

    private static func absolute(_ path: String, folder: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: folder).appendingPathComponent(path).standardizedFileURL.path
    }

    /// The argument at `index`, or nil past the end.
    public func arg(_ index: Int) -> StepValue? { index < args.count ? args[index] : nil }

    /// The string argument at `index`.
    /// - Throws: an error naming the step, the argument and what it got, when the argument is missing
    ///   or not a string.
    public func stringArg(_ index: Int) throws -> String {
        guard let s = arg(index)?.stringValue else {
            throw StepArgumentError(step: id, function: function, index: index, expected: "a string", got: arg(index))
        }
        return s
    }

    /// Writes a line to the step's log.
    func appendToLog(_ line: String) {
        held.withLock { held in
            if held.log == nil {
                let path = logFilePath
                try? FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(),
                                                         withIntermediateDirectories: true)
                // O_APPEND: a step may write to its log with a handle of its own (a command's output).
                // O_NOFOLLOW: never through a link planted in the run directory.
                let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
                held.log = fd >= 0 ? FileHandle(fileDescriptor: fd, closeOnDealloc: true) : nil
            }
            try? held.log?.write(contentsOf: Data((line + "\n").utf8))
        }
    }
}

/// A step's argument was missing or of the wrong kind.
package struct StepArgumentError: Error, CustomStringConvertible {
    package let step: StepID
    package let function: String
    package let index: Int
    package let expected: String
    package let got: StepValue?

    package var description: String {
        "step \(step) ('\(function)'): argument \(index) should be \(expected), got \(got.map(\.description) ?? "nothing"). Check the insertFunctionStep call that inserted it."
    }
}

/// Where a step's log is. Each launch of a run has its own files (the first `logs/`, later ones
/// `logs/launch-<n>/`): ids can change between launches of a continued run, and two steps must never
/// share a log.
enum StepLogFile {
    static func path(runDirectory: URL, step: StepID, launch: Int = 1) -> String {
        launch <= 1 ? runDirectory.path + "/logs/step-\(step).log" : runDirectory.path + "/logs/launch-\(launch)/step-\(step).log"
    }
}

/// A swift-log handler that writes to a step's log file.
struct StepLogHandler: LogHandler {
    let context: StepContext
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let time = ISO8601DateFormatter.string(from: Date(), timeZone: .current, formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        context.appendToLog("\(time) \(event.level) \(event.message)")
    }
}

/// What the `stepsCheck` hook can do: the edits of S3 and S4, applied at once on rank 0, and a look at
/// step statuses. Steps it inserts have the hook as their inserter (S12).
public final class StepsCheck: StepInserting, Sendable {
    /// The inserter the hook's edits go through.
    public let steps: StepInserter
    private let statusLookup: @Sendable (StepID) -> StepStatus?
    private let hookDeclared = Mutex(true)

    init(steps: StepInserter, status: @escaping @Sendable (StepID) -> StepStatus?) {
        self.steps = steps
        self.statusLookup = status
    }

    /// The status of a step, or nil if it does not exist.
    public func status(of id: StepID) -> StepStatus? { statusLookup(id) }

    /// Called by the default `stepsCheck`: the protocol has no hook, so a run with nothing left to do
    /// ends as stalled (S4) instead of waiting for a release. A hook that has nothing more to do may
    /// call it too: it is then not called again in this launch.
    public func declareNoHook() { hookDeclared.withLock { $0 = false } }

    var hasHook: Bool { hookDeclared.withLock { $0 } }
}
