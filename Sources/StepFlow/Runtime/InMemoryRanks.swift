import Foundation

/// Every rank of a run in this process: rank 0's `RankLink` and, for ranks 1..., a `WorkerRuntime`
/// on a thread of its own, joined by an `InMemoryNetwork`. The same runtime as under `mpirun`, with
/// the wire codec, batching, sending ahead and reply tokens, minus the processes.
package enum InMemoryRanks {
    /// Starts ranks 1... and returns rank 0's transport. Its `shutdown` returns once every rank's
    /// loop has ended.
    package static func start(ranks: Int, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int = 1) -> RankLink {
        let network = InMemoryNetwork(size: ranks)
        let ended = DispatchGroup()
        for rank in 1..<max(ranks, 1) {
            ended.enter()
            let messenger = network.messenger(rank: rank)
            let thread = Thread {
                let runtime = WorkerRuntime(rank: rank, messenger: messenger, threads: threads, executor: executor,
                                            runDirectory: runDirectory, launch: launch)
                runtime.run()
                ended.leave()
            }
            thread.name = "stepflow-r\(rank)-loop"
            thread.start()
        }
        return RankLink(ranks: ranks, messenger: network.messenger(rank: 0), threads: threads, executor: executor,
                        runDirectory: runDirectory, launch: launch, afterShutdown: { ended.wait() })
    }
}
