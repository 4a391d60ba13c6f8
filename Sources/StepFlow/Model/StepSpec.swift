/// What a step runs and what it needs: a registered function name, its arguments, and its resources.
public struct StepSpec: Hashable, Sendable {
    public var function: String
    public var args: [StepValue]
    /// Slots the step occupies on one rank (1 ≤ threads ≤ T).
    public var threads: Int
    public var needsGPU: Bool
    /// How many more times a failed attempt is tried before the step is `failed`.
    public var retries: Int
    /// A waiting step never runs until it is released (S4).
    public var wait: Bool
    /// How long the step is expected to take, in seconds: near the end of an allocation
    /// (`--stop-before`), a step that would not finish in the time left is not started.
    public var expectedSeconds: Double?

    public init(function: String, args: [StepValue] = [], threads: Int = 1, needsGPU: Bool = false,
                retries: Int = 0, wait: Bool = false, expectedSeconds: Double? = nil) {
        self.function = function
        self.args = args
        self.threads = threads
        self.needsGPU = needsGPU
        self.retries = retries
        self.wait = wait
        self.expectedSeconds = expectedSeconds
    }
}

/// Where a call came from in the user's code, so insertion errors can name the line.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}

/// The record of one step as rank 0 keeps it: what it is, where it ran, how it ended.
///
/// Rank 0 keeps one per step (a million in a big run), so the small fields are packed into the
/// padding between the large ones: the stored order below is chosen for that, not for reading.
public struct StepRecord: Sendable {
    public let id: StepID
    public var spec: StepSpec
    public var status: StepStatus
    /// The step's inserter no longer inserts it (S12): it is out of the run, kept here only so ids stay
    /// indexes. Reports and the run database leave it out.
    public var isDropped = false
    private var storedCrashes: UInt16 = 0
    public var prerequisites: [StepID]
    public var insertedBy: Inserter
    private var storedReleasedBy: Int32 = 0
    private var storedInsertPrerequisiteCount: Int32
    private var storedAttempts: Int32 = 0
    public var rank: Int?
    public var slot: Int?
    public var gpus: [Int] = []
    /// Seconds since the epoch.
    public var start: Double?
    public var end: Double?
    public var error: String?
    public var logPath: String?

    public init(id: StepID, spec: StepSpec, prerequisites: [StepID], insertedBy: Inserter, status: StepStatus,
                insertPrerequisiteCount: Int? = nil) {
        self.id = id
        self.spec = spec
        self.prerequisites = prerequisites
        self.insertedBy = insertedBy
        self.status = status
        self.storedInsertPrerequisiteCount = Int32(clamping: insertPrerequisiteCount ?? prerequisites.count)
    }

    /// How many attempts ran (retries included).
    public var attempts: Int {
        get { Int(storedAttempts) }
        set { storedAttempts = Int32(clamping: newValue) }
    }

    /// How many of `prerequisites` (the first ones) were given when the step was inserted; the rest were
    /// added at run time (`addPrerequisites`). The first part is part of the step's identity (S12).
    public var insertPrerequisiteCount: Int {
        get { Int(storedInsertPrerequisiteCount) }
        set { storedInsertPrerequisiteCount = Int32(clamping: newValue) }
    }

    /// The name to show for the step: its function, or, for a step whose first argument is an
    /// object with a `name` (a workflow's command steps), that name.
    public var displayName: String {
        if case .object(let o)? = spec.args.first, case .string(let name)? = o["name"] { return name }
        return spec.function
    }

    /// The prerequisites the step was inserted with (part of its identity, S12).
    public var insertPrerequisites: ArraySlice<StepID> { prerequisites.prefix(insertPrerequisiteCount) }

    /// How many launches died while this step was running; at `--crash-limit` a continue records it
    /// failed instead of running it again.
    public var crashes: Int {
        get { Int(storedCrashes) }
        set { storedCrashes = UInt16(clamping: newValue) }
    }

    /// Who released this waiting step, once released (S4): a continued run keeps the release only if
    /// that inserter does not run again to release it anew.
    public var releasedBy: Inserter? {
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
