import Testing
@testable import StepFlow

/// What a worker rank sends rank 0 about its steps.
@Suite struct RankMessagesTests {
    static func started(_ id: StepID, at t: Double) -> FromRank { .started(StepStart(id: id, rank: 1, slot: 0, start: t)) }
    static func ended(_ id: StepID, _ report: Scheduler.Report = .finished, start: Double?, end: Double?) -> FromRank {
        .ended(StepOutcome(id: id, rank: 1, slot: 0, report: report, start: start, end: end, logPath: nil))
    }

    /// What a worker rank's frame carries for `reports`: encoded as the rank sends them, read back as rank 0 does.
    static func sent(_ reports: [FromRank]) throws -> [FromRank] {
        try WireCodec.decode(WireCodec.encode(reports, skipping: FromRank.startsOfEndedSteps(in: reports)), as: FromRank.self)
    }

    @Test("A step that started and ended in one batch is sent as its end alone (which carries the start); every other report stays, in order")
    func startsOfEndedStepsDropped() throws {
        let reports: [FromRank] = [
            Self.started(1, at: 1), Self.started(2, at: 2), .alive, Self.ended(1, start: 1, end: 1.5),
            Self.ended(3, .notStarted, start: nil, end: nil),
            Self.started(4, at: 4), Self.ended(4, .failed(error: "x"), start: 4, end: 5),
            // A second attempt of step 4 in the same batch: its start pairs with its own end.
            Self.started(4, at: 6),
        ]
        let sent = try Self.sent(reports)
        #expect(sent == [Self.started(2, at: 2), .alive, Self.ended(1, start: 1, end: 1.5), Self.ended(3, .notStarted, start: nil, end: nil),
                         Self.ended(4, .failed(error: "x"), start: 4, end: 5), Self.started(4, at: 6)])
        #expect(try Self.sent([Self.started(9, at: 9)]) == [Self.started(9, at: 9)])
        #expect(try Self.sent([]).isEmpty)
    }

    @Test("A start found within the pairing window is dropped; one further back stays, and rank 0 then reads both")
    func startsBeyondTheWindowStay() throws {
        let others = (100..<(100 + FromRank.startPairingWindow)).map { Self.started($0, at: Double($0)) }
        let near = [Self.started(1, at: 1)] + others.dropLast() + [Self.ended(1, start: 1, end: 2)]
        #expect(try Self.sent(near) == Array(others.dropLast()) + [Self.ended(1, start: 1, end: 2)])
        let far = [Self.started(1, at: 1)] + others + [Self.ended(1, start: 1, end: 2)]
        #expect(try Self.sent(far) == far)
        // A rank of 16 slots looks 64 back: its other slots report about two each in between.
        #expect(FromRank.startPairingWindow(threads: 1) == 16 && FromRank.startPairingWindow(threads: 16) == 64)
        let wide = try WireCodec.decode(WireCodec.encode(far, skipping: FromRank.startsOfEndedSteps(in: far, window: FromRank.startPairingWindow(threads: 16))),
                                        as: FromRank.self)
        #expect(wide == others + [Self.ended(1, start: 1, end: 2)])
        // Several pairs interleaved, as T slots report them: every start is dropped, the rest keep their order.
        let interleaved: [FromRank] = [Self.started(1, at: 1), Self.started(2, at: 2), Self.ended(2, start: 2, end: 3),
                                       Self.started(3, at: 3), Self.ended(1, start: 1, end: 4), Self.ended(3, start: 3, end: 5)]
        #expect(try Self.sent(interleaved) == [Self.ended(2, start: 2, end: 3), Self.ended(1, start: 1, end: 4),
                                                                     Self.ended(3, start: 3, end: 5)])
    }

    @Test("Rank 0's own workers' reports pair as a frame's do: a start whose end follows in the batch is left out (the end carries it), other events stay")
    func localReportsPairAsFramesDo() {
        let reports: [FromRank] = [Self.started(1, at: 1), Self.started(2, at: 2), Self.ended(1, start: 1, end: 1.5), .alive,
                                   Self.started(3, at: 3), Self.ended(3, start: 3, end: 4)]
        let events = reports.map { RankEvent.message(from: 0, $0) } + [.broken(rank: 1, message: "x")]
        let framePairs = FromRank.startsOfEndedSteps(in: reports)
        #expect(framePairs == [true, false, false, false, true, false])
        #expect(FromRank.startsOfEndedSteps(in: events) == framePairs.map { $0 + [false] })
        #expect(FromRank.startsOfEndedSteps(in: [RankEvent.message(from: 0, Self.started(1, at: 1))]) == nil)
    }

    @Test("Rank 0's steps run on its loop, their starts left out of the coordinator's batches: every record still has its start, end and rank, and progress counts none running at the end")
    func inlineStepsKeepTheirStarts() throws {
        var h = Harness()
        h.inlineLimit = 0.2
        h.functions = ["work": { _ in }]
        let report = try h.run { steps in
            var last: StepID?
            for i in 0..<300 { last = try steps.insertFunctionStep("work", prerequisites: i % 3 == 0 || last == nil ? [] : [last!]) }
        }
        #expect(report.outcome == .finished)
        #expect(report.count(.finished) == 300)
        for r in report.records {
            #expect(r.rank == 0 && r.slot == 0, "step \(r.id)")
            guard let start = r.start, let end = r.end else {
                Issue.record("step \(r.id) has no start or end")
                continue
            }
            #expect(start <= end, "step \(r.id)")
        }
    }
}
