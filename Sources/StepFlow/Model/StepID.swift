/// A step's id: 1-based, in insertion order, assigned by rank 0 (contract S1).
public typealias StepID = Int

/// The statuses a step can be in (contract S11).
///
/// - `new`: not started; runs once its prerequisites are done.
/// - `waiting`: inserted with `wait: true` and not released yet (S4).
/// - `running`: an attempt is under way.
/// - `finished`: its function returned.
/// - `failed`: its function threw on its last attempt (or it kept killing its launch, `--crash-limit`).
/// - `aborted`: it was running when the run was stopped (a signal).
/// - `skipped`: a prerequisite failed (`--keep-going`), so it never ran.
public enum StepStatus: String, Sendable, CaseIterable, Codable {
    /// One of the seven statuses above.
    case new, waiting, running, finished, failed, aborted, skipped

    /// The status's position in `allCases`, for counting without hashing.
    var ordinal: Int {
        switch self {
        case .new: return 0
        case .waiting: return 1
        case .running: return 2
        case .finished: return 3
        case .failed: return 4
        case .aborted: return 5
        case .skipped: return 6
        }
    }

    /// A terminal status never changes again within a run.
    public var isTerminal: Bool {
        switch self {
        case .finished, .failed, .skipped, .aborted: return true
        case .new, .waiting, .running: return false
        }
    }
}

/// Who inserted a step: the protocol (`insertAllSteps`), its `stepsCheck` hook, or a running step.
package enum Inserter: Hashable, Sendable {
    case protocolSteps
    case stepsCheck
    case step(StepID)

    /// The inserting step's id, when a step inserted it.
    package var stepID: StepID? {
        if case .step(let id) = self { return id }
        return nil
    }
}
