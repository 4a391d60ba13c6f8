// The one vocabulary between rank 0 and the ranks, in its two directions (`ToRank`, `FromRank`), with
// what the messages carry. The wire codec (Wire/) writes and reads them; rank 0's own workers hand
// theirs to the coordinator without encoding.

/// What rank 0 tells a rank. A frame carries one or more, in order, so many ready steps (or replies)
/// travel in one message.
package enum ToRank: Sendable, Equatable {
    case assign(StepAssignment)
    case takeBackUnstarted
    /// Hand back these steps if they have not started (an `addPrerequisites` waits for them, S3).
    case takeBack([StepID])
    case reply(token: UInt32, EditResult)
    case shutdown
    /// Stop at once (a signal): do not wait for running steps.
    case abort
    /// Answer with `alive`: after a signal, rank 0 tells live ranks from one that died.
    case ping
}

/// What a rank tells rank 0 (rank 0's own workers included, which skip the wire).
package enum FromRank: Sendable, Equatable {
    case started(StepStart)
    case ended(StepOutcome)
    /// A running step's graph edit; rank 0 answers with `ToRank.reply` and the same token.
    case request(token: UInt32, StepRequest)
    /// A heartbeat, or the answer to `ping`.
    case alive
}

extension FromRank {
    /// How far back from a step's end `startsOfEndedSteps` looks for its start, at least. A start
    /// further back stays: rank 0 then reads both, as it would across two batches.
    static let startPairingWindow = 16

    /// The window for a rank of `threads` slots: between the start and the end of a short step, the
    /// other slots report about two each.
    static func startPairingWindow(threads: Int) -> Int { max(startPairingWindow, 4 * threads) }

    /// Which of `reports` are starts of steps that also end in them (true at their positions), or
    /// nil when none are. Such a start need not be sent: the end carries the start time and slot, so
    /// rank 0 learns the same, and for steps of microseconds it reads and applies half the messages.
    /// Nothing a start settles is left waiting: a step that sends a graph edit waits for rank 0's
    /// answer, so its start and end are never in one batch with an edit between.
    ///
    /// Only the `window` reports before an end are searched: short steps, the ones this saves
    /// anything for, end a few reports after they start (the rank's other slots report in between).
    /// Nothing is copied or hashed: on a worker rank of empty steps this runs once per step, and
    /// building a filtered copy through a dictionary cost ~1,000 instructions a step.
    /// Rank 0 applies the same to its own workers' reports (`RankEvent`), which skip the wire.
    package static func startsOfEndedSteps<Report: StepReport>(in reports: [Report], window: Int = startPairingWindow) -> [Bool]? {
        var paired: [Bool]?
        for i in reports.indices {
            guard let id = reports[i].endedStep else { continue }
            var j = i - 1
            while j >= max(0, i - window) {
                if reports[j].startedStep == id, paired?[j] != true {
                    if paired == nil { paired = [Bool](repeating: false, count: reports.count) }
                    paired![j] = true
                    break
                }
                j -= 1
            }
        }
        return paired
    }
}

/// A report that may say a step started or ended, for `FromRank.startsOfEndedSteps`.
package protocol StepReport {
    /// The step this report says started, if it is a start.
    var startedStep: StepID? { get }
    /// The step this report says ended, if it is an end.
    var endedStep: StepID? { get }
}

extension FromRank: StepReport {
    package var startedStep: StepID? {
        if case .started(let s) = self { return s.id }
        return nil
    }

    package var endedStep: StepID? {
        if case .ended(let o) = self { return o.id }
        return nil
    }
}

extension RankEvent: StepReport {
    package var startedStep: StepID? {
        if case .message(_, let m) = self { return m.startedStep }
        return nil
    }

    package var endedStep: StepID? {
        if case .message(_, let m) = self { return m.endedStep }
        return nil
    }
}

/// What rank 0 sends a rank so it can run a step.
package struct StepAssignment: Sendable, Equatable {
    package var id: StepID
    package var function: String
    package var args: [StepValue]
    package var threads: Int
    package var gpus: [Int]
    package var attempt: Int
    /// The latest moment (seconds since the epoch) the step may start; past it the rank hands the step
    /// back unstarted (`--stop-before`).
    package var startBy: Double?
    /// Its prerequisites with their results (empty: none), once any step of the run has set a
    /// result; nil before (S13).
    package var inputs: [StepInput]?
    /// Prerequisites still running on this rank when rank 0 sent it (empty: none, it is ready): it is
    /// sent behind them and starts once they all finished here, with their results filled in; if one
    /// of them does not finish, it goes back to rank 0 unstarted.
    package var behind: [StepID]
    /// Sent behind prerequisites before any step of the run set a result: `inputs` came only so that
    /// theirs could be filled in, and go again if none of them sets one.
    package var inputsOnlyForBehind: Bool
    /// Other steps wait for `behind` too (they may go to another rank with little to do): a rank that
    /// runs its short steps on its loop sends those ends before it runs this one (`WorkerPool.runInline`),
    /// where a link's may go with the ends of the next steps. (Their ends reach rank 0 before this
    /// step's start either way.)
    package var sendEndsFirst: Bool

    package init(id: StepID, function: String, args: [StepValue], threads: Int, gpus: [Int], attempt: Int, startBy: Double? = nil,
                 inputs: [StepInput]? = nil, behind: [StepID] = [], inputsOnlyForBehind: Bool = false, sendEndsFirst: Bool = false) {
        self.id = id
        self.function = function
        self.args = args
        self.threads = threads
        self.gpus = gpus
        self.attempt = attempt
        self.startBy = startBy
        self.inputs = inputs
        self.behind = behind
        self.inputsOnlyForBehind = inputsOnlyForBehind
        self.sendEndsFirst = sendEndsFirst
    }
}

/// What a rank reports when it is done with a step it was given.
package struct StepOutcome: Sendable, Equatable {
    package var id: StepID
    package var rank: Int
    package var slot: Int
    package var report: Scheduler.Report
    /// Seconds since the epoch; nil for a step handed back unstarted.
    package var start: Double?
    package var end: Double?
    package var logPath: String?
    /// The result it set (`StepResult.encoded`), for a finished step that set one (S13).
    package var result: [UInt8]?

    package init(id: StepID, rank: Int, slot: Int, report: Scheduler.Report, start: Double?, end: Double?, logPath: String?,
                 result: [UInt8]? = nil) {
        self.id = id
        self.rank = rank
        self.slot = slot
        self.report = report
        self.start = start
        self.end = end
        self.logPath = logPath
        self.result = result
    }
}

/// A rank's note that a step it was sent has started (until then it may be waiting in the rank's queue).
package struct StepStart: Sendable, Equatable {
    package var id: StepID
    package var rank: Int
    package var slot: Int
    /// Seconds since the epoch.
    package var start: Double

    package init(id: StepID, rank: Int, slot: Int, start: Double) {
        self.id = id
        self.rank = rank
        self.slot = slot
        self.start = start
    }
}

/// A graph edit asked for by a running step, on its way to rank 0.
package struct StepRequest: Sendable, Equatable {
    package var from: StepID
    package var edit: GraphEdit

    package init(from: StepID, edit: GraphEdit) {
        self.from = from
        self.edit = edit
    }
}

/// Where rank 0's answer to a `StepRequest` goes: the rank that asked, and the token its step waits on.
package struct ReplyAddress: Sendable, Equatable {
    package var rank: Int
    package var token: UInt32

    package init(rank: Int, token: UInt32) {
        self.rank = rank
        self.token = token
    }
}

/// Rank 0's answer to a graph edit: the new id (for an insert), or why it was refused.
package typealias EditResult = Result<StepID?, GraphEditError>

/// What reaches rank 0's coordinator: a rank's message (rank 0's own workers included), or news
/// that a rank sent something rank 0 cannot use (a malformed frame): the run cannot go on.
package enum RankEvent: Sendable {
    case message(from: Int, FromRank)
    case broken(rank: Int?, message: String)
}
