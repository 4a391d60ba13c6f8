/// Frames between the ranks of one run: "send these bytes to rank r", "what has arrived". The worker
/// runtime and rank 0's `RankLink` run on top of it, so the code that runs under `mpirun` (the MPI
/// messenger in StepFlowMPI) is the code every in-process test runs (`InMemoryNetwork`).
///
/// One thread uses a messenger: the rank's message loop (with MPI, the thread that initialized MPI).
/// Frames from one sender arrive in the order they were sent.
package protocol Messenger: AnyObject {
    /// Queues `frame` for `rank`; never blocks.
    func send(_ frame: [UInt8], to rank: Int)
    /// Every frame that has arrived, from any rank, in arrival order per sender; never blocks.
    func receiveAll() -> [(source: Int, bytes: [UInt8])]
    /// Lets sends under way move on (frees the buffers of those that went).
    func progressSends()
    /// Returns once every send has gone, or once `limit` passed (nil: no limit); returns whether
    /// every send went. A send to a rank that stopped reading never goes: an ending waits for it only
    /// so long.
    @discardableResult
    func flush(within limit: Duration?) -> Bool
    /// Asks to be told when a frame arrives, so an idle loop can sleep instead of polling. A messenger
    /// that cannot tell (MPI has no such callback) ignores it, and the loop polls with `IdleBackoff`.
    func notifyOnArrival(_ wake: @escaping @Sendable () -> Void)
}
