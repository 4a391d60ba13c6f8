/// How rank 0's coordinator reaches the ranks. One implementation serves the engine and its tests:
/// both are `RankLink`, over an in-memory network (every rank in this process) or MPI (one rank per
/// process); tests may script one.
package protocol CoordinatorTransport: AnyObject, Sendable {
    /// The number of ranks, rank 0 included.
    var rankCount: Int { get }
    /// Sends steps to a rank's workers.
    func assign(_ steps: [StepAssignment], to rank: Int)
    /// Sends decision `a`'s step to its rank, another than rank 0, as `StepAssignment(a, in: graph)`.
    /// Called with the scheduler held, once per step, in the order of the decisions.
    func send(_ a: borrowing Assignment, from graph: borrowing StepGraph)
    /// Asks every rank to hand back the steps it was sent but has not started (they come back as
    /// `.notStarted`).
    func takeBackUnstarted()
    /// Asks `rank` to hand back these steps if it has not started them (they come back as
    /// `.notStarted`; a step already started reports `.started` as usual).
    func takeBack(_ steps: [StepID], from rank: Int)
    /// Asks these ranks to show they are alive: each that is answers with an `.alive` event.
    func checkAlive(_ ranks: [Int])
    /// Ranks rank 0 has not heard from (not even a heartbeat) for longer than `timeout`.
    func silentRanks(longerThan timeout: Duration) -> [Int]
    /// A rank's host name, when known, for messages about it.
    func host(of rank: Int) -> String?
    /// Answers a running step's graph edit.
    func reply(_ result: EditResult, to address: ReplyAddress)
    /// Waits up to `timeout` for events and returns those that arrived (possibly none).
    func nextEvents(timeout: Duration) -> [RankEvent]
    /// Ends every rank's workers after the run; returns when they have stopped, or once `limit`
    /// passed without every frame to the ranks gone (nil: no limit). Returns whether all went.
    func shutdown(within limit: Duration?) -> Bool
    /// Ends every rank at once (a signal, a rank that failed), without waiting for running steps
    /// (they are `aborted`), nor more than `limit` for the frames to go: a rank that stopped reading
    /// never takes them.
    func abort(within limit: Duration)
    /// How rank 0's own step, run on the coordinator's thread, has the events that answer its graph
    /// edit applied while it waits: `apply` applies them and returns false once the run is broken.
    func applyWhileInline(_ apply: @escaping @Sendable ([RankEvent]) -> Bool)
}

extension CoordinatorTransport {
    package func applyWhileInline(_ apply: @escaping @Sendable ([RankEvent]) -> Bool) {}

    package func send(_ a: borrowing Assignment, from graph: borrowing StepGraph) {
        assign([StepAssignment(a, in: graph)], to: a.rank)
    }
}
