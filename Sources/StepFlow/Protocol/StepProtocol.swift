import ArgumentParser

/// A protocol in Scipion's sense: it declares its parallel section, inserts its steps, and names the
/// functions its steps run.
///
/// Every rank builds the same protocol value from the same command line and runs `defineParams` and
/// `insertAllSteps`; both must be deterministic (S3). After `insertAllSteps` the value is read-only: it
/// is copied to every worker thread, so a property set there (say, the close step's id) reads the same
/// in every step on every rank.
public protocol StepProtocol: Sendable {
    /// The protocol's own command-line parameters, parsed (and validated) on every rank.
    associatedtype Params: ParsableArguments = NoParams

    /// Builds the protocol from its parsed parameters; every rank does, with the same values.
    init(params: Params)

    /// The name recorded for runs of this protocol. Defaults to the type's name.
    static var protocolName: String { get }

    /// The functions steps may name, by name: a step travels between ranks as a name plus arguments.
    static var functions: StepFunctions<Self> { get }

    /// Declares defaults, such as `form.addParallelSection(threads:mpi:)`.
    func defineParams(_ form: inout ProtocolForm)

    /// Inserts the run's first steps; every rank runs it and must insert the same steps (S3).
    /// Throws to refuse the run: the error is shown to the user and the run exits 2.
    mutating func insertAllSteps(_ steps: StepInserter) throws

    /// `.serial` runs one step at a time in id order; `.parallel` uses every slot (S5).
    var stepsExecutionMode: StepsExecutionMode { get }

    /// Called by rank 0 every `stepsCheckInterval` while the run lives (S4): insert steps, add
    /// prerequisites, release waiting steps. The default implementation declares that the protocol
    /// has no hook, which lets a run with nothing left to do end as stalled instead of waiting.
    func stepsCheck(_ run: StepsCheck) throws

    /// How often `stepsCheck` runs. Defaults to one second.
    var stepsCheckInterval: Duration { get }
}

extension StepProtocol {
    /// The type's name.
    public static var protocolName: String { String(describing: Self.self) }
    /// Declares nothing: one thread on one rank unless the command line says otherwise.
    public func defineParams(_ form: inout ProtocolForm) {}
    /// `.parallel`.
    public var stepsExecutionMode: StepsExecutionMode { .parallel }
    /// No hook: declares so, and is not called again.
    public func stepsCheck(_ run: StepsCheck) throws { run.declareNoHook() }
    /// One second.
    public var stepsCheckInterval: Duration { .seconds(1) }
}

extension StepProtocol where Params == NoParams {
    /// Builds a protocol that has no parameters of its own.
    public init() { self.init(params: NoParams()) }
}

/// The parameters of a protocol that has none of its own (the default `Params`).
public struct NoParams: ParsableArguments, Sendable {
    /// No parameters.
    public init() {}
}

/// Defaults a protocol declares in `defineParams`; the command line overrides them (S5).
public struct ProtocolForm: Sendable, Equatable {
    /// Worker threads on each rank (T); `--threads` and `STEPFLOW_THREADS` override it.
    public var threads = 1
    /// MPI ranks (M); `--mpi`, `STEPFLOW_MPI` and the MPI world size override it.
    public var mpi = 1
    /// The GPU ids of a node, shared out among its ranks; `--gpus`, then CUDA_VISIBLE_DEVICES or
    /// SLURM_STEP_GPUS, when empty.
    public var gpus: [Int] = []

    /// One thread on one rank, no GPUs.
    public init() {}

    /// Declares how parallel a run is by default: `threads` workers on each of `mpi` ranks.
    public mutating func addParallelSection(threads: Int = 1, mpi: Int = 1) {
        self.threads = threads
        self.mpi = mpi
    }
}

/// The functions a protocol's steps may name. A step travels between ranks as a name plus arguments,
/// so every function is registered under the name steps use.
///
///     static let functions: StepFunctions<ImportMovies> = [
///         "registerImageStep": { proto, step in try proto.registerImage(step) },
///     ]
public struct StepFunctions<P: StepProtocol>: Sendable, ExpressibleByDictionaryLiteral {
    /// A step function: it gets the protocol value (read-only, the same on every rank) and the step's
    /// context. What it throws fails the step (retried if it was inserted with `retries:`).
    public typealias Body = @Sendable (P, StepContext) throws -> Void

    package let bodies: [String: Body]

    /// The functions of a dictionary, by name.
    public init(_ bodies: [String: Body]) { self.bodies = bodies }

    /// The functions of a dictionary literal, by name; a name listed twice keeps the last function.
    public init(dictionaryLiteral elements: (String, Body)...) {
        self.bodies = Dictionary(elements, uniquingKeysWith: { _, last in last })
    }

    package var names: Set<String> { Set(bodies.keys) }
}

/// Runs a step by function name: a protocol value and its function table, with the type erased, so
/// the engine's executors need no generics.
package struct StepExecutor: Sendable {
    /// A step function with the protocol value bound.
    package typealias Body = @Sendable (StepContext) throws -> Void

    package let functionNames: Set<String>
    private let functions: [String: Body]
    /// The largest result a step may set, in bytes (`--result-limit`, S13).
    package var resultLimit = StepResult.defaultLimit
    /// Whether steps' declared inputs are hashed (`--fingerprint content`) or stat'ed.
    package var fingerprintContent = false
    /// Below this many seconds a step counts as short: a one-thread rank runs the steps of a function
    /// that ran short `WorkerPool.inlineAfter` times in a row on its message loop (0: never).
    package var inlineLimit = WorkerPool.inlineLimit

    package init<P: StepProtocol>(_ proto: P) {
        // Bound to the protocol value once: a table of the generic `Body` type made every lookup
        // instantiate the closure type's metadata, a sixth of what running an empty step cost.
        self.init(functions: P.functions.bodies.mapValues { fn in { @Sendable context in try fn(proto, context) } })
    }

    /// An executor over plain closures, for tests and built-in protocols.
    package init(functions: [String: Body]) {
        self.functionNames = Set(functions.keys)
        self.functions = functions
    }

    /// What runs a step of `function`: its body, or, for a name the protocol does not register, a
    /// body that throws `StepGraphError.unknownFunction`. A worker keeps it for the steps after
    /// (mostly of the same function) instead of hashing the name each time.
    package func body(for function: String) -> Body {
        if let fn = functions[function] { return fn }
        let known = Array(functions.keys)
        return { _ in throw StepGraphError.unknownFunction(function, known: known, at: nil) }
    }

    package func run(_ context: StepContext) throws { try body(for: context.function)(context) }
}
