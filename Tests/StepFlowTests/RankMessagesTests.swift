import Testing
@testable import StepFlow

/// What a worker rank sends rank 0 about its steps.
@Suite struct RankMessagesTests {
    static func started(_ id: StepID, at t: Double) -> FromRank { .started(StepStart(id: id, rank: 1, slot: 0, start: t)) }
    static func ended(_ id: StepID, _ report: Scheduler.Report = .finished, start: Double?, end: Double?) -> FromRank {
        .ended(StepOutcome(id: id, rank: 1, slot: 0, report: report, start: start, end: end, logPath: nil))
    }

    @Test("A step that started and ended in one batch is sent as its end alone (which carries the start); every other report stays, in order")
    func startsOfEndedStepsDropped() {
        let reports: [FromRank] = [
            Self.started(1, at: 1), Self.started(2, at: 2), .alive, Self.ended(1, start: 1, end: 1.5),
            Self.ended(3, .notStarted, start: nil, end: nil),
            Self.started(4, at: 4), Self.ended(4, .failed(error: "x"), start: 4, end: 5),
            // A second attempt of step 4 in the same batch: its start pairs with its own end.
            Self.started(4, at: 6),
        ]
        let sent = FromRank.droppingStartsOfEndedSteps(reports)
        #expect(sent == [Self.started(2, at: 2), .alive, Self.ended(1, start: 1, end: 1.5), Self.ended(3, .notStarted, start: nil, end: nil),
                         Self.ended(4, .failed(error: "x"), start: 4, end: 5), Self.started(4, at: 6)])
        #expect(FromRank.droppingStartsOfEndedSteps([Self.started(9, at: 9)]) == [Self.started(9, at: 9)])
        #expect(FromRank.droppingStartsOfEndedSteps([]).isEmpty)
    }
}
