/// What a step runs and what it needs: a registered function name, its arguments, and its resources.
package struct StepSpec: Hashable, Sendable {
    package var function: String
    package var args: [StepValue]
    // Stored narrow (rank 0 keeps a spec per step); the accessors below keep the plain types.
    private var storedExpectedSeconds = Double.nan
    private var storedThreads: Int32
    private var storedRetries: Int32
    package var needsGPU: Bool
    /// A waiting step never runs until it is released (S4).
    package var wait: Bool

    /// The largest `threads` or `retries` a step holds (they are stored in 32 bits); inserting a
    /// larger one is refused with the number given.
    package static let largestCount = Int(Int32.max)

    /// Slots the step occupies on one rank (1 ≤ threads ≤ T).
    package var threads: Int {
        get { Int(storedThreads) }
        set { storedThreads = Int32(clamping: newValue) }
    }

    /// How many more times a failed attempt is tried before the step is `failed`.
    package var retries: Int {
        get { Int(storedRetries) }
        set { storedRetries = Int32(clamping: newValue) }
    }

    /// How long the step is expected to take, in seconds: near the end of an allocation
    /// (`--stop-before`), a step that would not finish in the time left is not started.
    package var expectedSeconds: Double? {
        get { storedExpectedSeconds.isNaN ? nil : storedExpectedSeconds }
        set { storedExpectedSeconds = newValue ?? .nan }
    }

    package init(function: String, args: [StepValue] = [], threads: Int = 1, needsGPU: Bool = false,
                retries: Int = 0, wait: Bool = false, expectedSeconds: Double? = nil) {
        self.function = function
        self.args = args
        self.storedThreads = Int32(clamping: threads)
        self.needsGPU = needsGPU
        self.storedRetries = Int32(clamping: retries)
        self.wait = wait
        self.expectedSeconds = expectedSeconds
    }

    // NaN is not equal to itself: compare and hash the expected time through its optional.
    package static func == (a: StepSpec, b: StepSpec) -> Bool {
        a.function == b.function && a.args == b.args && a.threads == b.threads && a.needsGPU == b.needsGPU
            && a.retries == b.retries && a.wait == b.wait && a.expectedSeconds == b.expectedSeconds
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(function)
        hasher.combine(args)
        hasher.combine(threads)
        hasher.combine(needsGPU)
        hasher.combine(retries)
        hasher.combine(wait)
        hasher.combine(expectedSeconds)
    }
}

/// Where a call came from in the user's code, so insertion errors can name the line.
package struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    package var file: String
    package var line: Int

    package init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    package var description: String { "\(file):\(line)" }
}

/// The record of one step as rank 0 keeps it: what it is, where it ran, how it ended. A `RunReport`
/// lists one per step; protocol code reads them, the engine writes them.
///
/// Rank 0 keeps one per step (a million in a big run), so the small fields are packed into the
/// padding between the large ones: the stored order below is chosen for that, not for reading.
public struct StepRecord: Sendable {
    /// The step's id (S1).
    public let id: StepID
    package var spec: StepSpec
    /// How the step ended, or where it is if the run stopped before it ended (S11).
    public package(set) var status: StepStatus
    /// The step's inserter no longer inserts it (S12): it is out of the run, kept here only so ids stay
    /// indexes. Reports and the run database leave it out.
    package var isDropped = false
    private var storedCrashes: UInt16 = 0
    /// The steps it waited for: those it was inserted with, then those added by `addPrerequisites`.
    public package(set) var prerequisites: [StepID]
    package var insertedBy: Inserter
    private var storedReleasedBy: Int32 = 0
    private var storedInsertPrerequisiteCount: Int32
    private var storedAttempts: Int32 = 0
    /// The rare fields (GPU ids, a result) in one box: a record per step sits in rank 0's memory,
    /// and two arrays inline cost every step 16 bytes that most never use.
    private var extras: RecordExtras?
    /// Optional numbers are stored without their flag (a sentinel stands for nil): rank 0 keeps a
    /// record per step, and `Int?` and `Double?` take 16 bytes each where these take 4 or 8.
    private var storedRank: Int32 = -1
    private var storedSlot: Int32 = -1
    private var storedStart = Double.nan
    private var storedEnd = Double.nan
    /// Why it failed: the error its function threw, or why the engine recorded it failed (such as
    /// `--crash-limit`); nil for a step that did not fail.
    public package(set) var error: String?
    /// Its log file, if it wrote one (`StepContext.logger`).
    public package(set) var logPath: String?

    package init(id: StepID, spec: StepSpec, prerequisites: [StepID], insertedBy: Inserter, status: StepStatus,
                insertPrerequisiteCount: Int? = nil) {
        self.id = id
        self.spec = spec
        self.prerequisites = prerequisites
        self.insertedBy = insertedBy
        self.status = status
        self.storedInsertPrerequisiteCount = Int32(clamping: insertPrerequisiteCount ?? prerequisites.count)
    }

    /// The GPU ids it held (`needsGPU`).
    public package(set) var gpus: [Int] {
        get { extras?.gpus ?? [] }
        set { extras = RecordExtras.make(gpus: newValue, result: extras?.result) }
    }

    /// What it handed its dependents (`StepResult.encoded`), once it finished with one (S13).
    package var result: [UInt8]? {
        get { extras?.result }
        set { extras = RecordExtras.make(gpus: extras?.gpus ?? [], result: newValue) }
    }

    /// The rank that ran its last attempt; nil if it never started.
    public package(set) var rank: Int? {
        get { storedRank < 0 ? nil : Int(storedRank) }
        set { storedRank = newValue.map { Int32(clamping: $0) } ?? -1 }
    }

    /// The worker slot (0..<T) on `rank` that ran its last attempt.
    public package(set) var slot: Int? {
        get { storedSlot < 0 ? nil : Int(storedSlot) }
        set { storedSlot = newValue.map { Int32(clamping: $0) } ?? -1 }
    }

    /// When its last attempt started, in seconds since the epoch.
    public package(set) var start: Double? {
        get { storedStart.isNaN ? nil : storedStart }
        set { storedStart = newValue ?? .nan }
    }

    /// When its last attempt ended, in seconds since the epoch.
    public package(set) var end: Double? {
        get { storedEnd.isNaN ? nil : storedEnd }
        set { storedEnd = newValue ?? .nan }
    }

    /// How many attempts ran (retries included).
    public package(set) var attempts: Int {
        get { Int(storedAttempts) }
        set { storedAttempts = Int32(clamping: newValue) }
    }

    /// The registered function the step runs (its `insertFunctionStep` name).
    public var function: String { spec.function }

    /// The arguments it was inserted with.
    public var args: [StepValue] { spec.args }

    /// How many of `prerequisites` (the first ones) were given when the step was inserted; the rest were
    /// added at run time (`addPrerequisites`). The first part is part of the step's identity (S12).
    package var insertPrerequisiteCount: Int {
        get { Int(storedInsertPrerequisiteCount) }
        set { storedInsertPrerequisiteCount = Int32(clamping: newValue) }
    }

    /// The name to show for the step: its function, or, for a step whose first argument is an
    /// object with a `name` (a workflow's command steps), that name.
    package var displayName: String { Self.displayName(function: spec.function, args: spec.args) }

    /// `displayName` from the two fields it reads, for a caller that must not copy the record to
    /// call the property (`StepGraph.inputs`).
    package static func displayName(function: String, args: [StepValue]) -> String {
        if case .object(let o)? = args.first, case .string(let name)? = o["name"] { return name }
        return function
    }

    /// The prerequisites the step was inserted with (part of its identity, S12).
    package var insertPrerequisites: ArraySlice<StepID> { prerequisites.prefix(insertPrerequisiteCount) }

    /// How many launches died while this step was running; at `--crash-limit` a continue records it
    /// failed instead of running it again.
    package var crashes: Int {
        get { Int(storedCrashes) }
        set { storedCrashes = UInt16(clamping: newValue) }
    }

    /// Who released this waiting step, once released (S4): a continued run keeps the release only if
    /// that inserter does not run again to release it anew.
    package var releasedBy: Inserter? {
        get {
            switch storedReleasedBy {
            case 0: return nil
            case -1: return .protocolSteps
            case -2: return .stepsCheck
            case let id: return .step(Int(id))
            }
        }
        set {
            switch newValue {
            case nil: storedReleasedBy = 0
            case .protocolSteps?: storedReleasedBy = -1
            case .stepsCheck?: storedReleasedBy = -2
            case .step(let id)?: storedReleasedBy = Int32(clamping: id)
            }
        }
    }
}

/// A step record's rare fields, shared between copies of the record and replaced whole on a change.
private final class RecordExtras: Sendable {
    let gpus: [Int]
    let result: [UInt8]?

    private init(gpus: [Int], result: [UInt8]?) {
        self.gpus = gpus
        self.result = result
    }

    /// A box for these fields, or nil when both are empty.
    static func make(gpus: [Int], result: [UInt8]?) -> RecordExtras? {
        gpus.isEmpty && result == nil ? nil : RecordExtras(gpus: gpus, result: result)
    }
}
