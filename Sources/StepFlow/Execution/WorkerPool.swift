import Collections
import Foundation
import Synchronization

/// One rank's T workers: dedicated threads that run the steps the rank was sent, at most T slot units
/// at a time, in the order they came. Workers never talk to other ranks: results go to `report`, graph
/// edits to `channel`, and the rank's transport carries them (`.started` as a step begins, `.ended`
/// when it is done).
package final class WorkerPool: Sendable {
    package let rank: Int
    package let threads: Int
    private let executor: StepExecutor
    private let runDirectory: URL
    private let launch: Int
    private let channel: any StepRequestChannel
    private let report: @Sendable (FromRank) -> Void
    private let state: Mutex<PoolState>
    /// Set when the run is stopped by a signal: running steps see it and end what they wait on.
    private let cancellation = Cancellation()
    private let wake = NSCondition()
    private let stopped = DispatchGroup()

    private struct PoolState: ~Copyable {
        var pending = Deque<StepAssignment>()
        var busyUnits = 0
        var shuttingDown = false
    }

    /// Starts `threads` worker threads for `rank`.
    package init(rank: Int, threads: Int, executor: StepExecutor, runDirectory: URL, launch: Int = 1,
                channel: any StepRequestChannel, report: @escaping @Sendable (FromRank) -> Void) {
        self.rank = rank
        self.threads = threads
        self.executor = executor
        self.runDirectory = runDirectory
        self.launch = launch
        self.channel = channel
        self.report = report
        self.state = Mutex(PoolState())
        for slot in 0..<threads {
            stopped.enter()
            let thread = Thread { [self] in
                self.workerLoop(slot: slot)
                self.stopped.leave()
            }
            thread.name = "stepflow-r\(rank)-w\(slot)"
            thread.start()
        }
    }

    /// Queues steps; they start as slots free up, in order.
    package func submit(_ steps: [StepAssignment]) {
        guard !steps.isEmpty else { return }
        wake.lock()
        state.withLock { $0.pending.append(contentsOf: steps) }
        wake.broadcast()
        wake.unlock()
    }

    /// Hands back every queued step that has not started, reporting each as `.notStarted`.
    package func takeBackUnstarted() {
        wake.lock()
        let taken = state.withLock { s in
            let all = Array(s.pending)
            s.pending.removeAll()
            return all
        }
        wake.unlock()
        for step in taken {
            report(.ended(StepOutcome(id: step.id, rank: rank, slot: -1, report: .notStarted, start: nil, end: nil, logPath: nil)))
        }
    }

    /// Hands back the queued steps among `ids` that have not started, reporting each as `.notStarted`;
    /// a step already started is left alone (its `.started` report is on its way).
    package func takeBack(_ ids: [StepID]) {
        let wanted = Set(ids)
        wake.lock()
        let taken = state.withLock { s in
            let out = s.pending.filter { wanted.contains($0.id) }
            if !out.isEmpty { s.pending.removeAll { wanted.contains($0.id) } }
            return out
        }
        wake.unlock()
        for step in taken {
            report(.ended(StepOutcome(id: step.id, rank: rank, slot: -1, report: .notStarted, start: nil, end: nil, logPath: nil)))
        }
    }

    /// Drops queued steps and lets the threads end after their current step, without waiting for them
    /// (a signal stopped the run; what still runs is recorded `aborted`).
    package func stopLaunching() {
        cancellation.cancel()
        wake.lock()
        state.withLock {
            $0.pending.removeAll()
            $0.shuttingDown = true
        }
        wake.broadcast()
        wake.unlock()
    }

    /// Lets queued steps finish, then stops the threads and waits for them.
    package func shutdown() {
        wake.lock()
        state.withLock { $0.shuttingDown = true }
        wake.broadcast()
        wake.unlock()
        stopped.wait()
    }

    private func workerLoop(slot: Int) {
        while let step = nextStep() {
            run(step, slot: slot)
            wake.lock()
            state.withLock { $0.busyUnits -= step.threads }
            wake.broadcast()
            wake.unlock()
        }
    }

    private func nextStep() -> StepAssignment? {
        wake.lock()
        defer { wake.unlock() }
        while true {
            let (step, done): (StepAssignment?, Bool) = state.withLock { s in
                if let head = s.pending.first, s.busyUnits + head.threads <= threads {
                    s.pending.removeFirst()
                    s.busyUnits += head.threads
                    return (head, false)
                }
                return (nil, s.shuttingDown && s.pending.isEmpty)
            }
            if let step { return step }
            if done { return nil }
            wake.wait()
        }
    }

    private func run(_ step: StepAssignment, slot: Int) {
        // Sent ahead before the launch deadline, but its turn came too late to end before it.
        if let startBy = step.startBy, Date().timeIntervalSince1970 > startBy {
            report(.ended(StepOutcome(id: step.id, rank: rank, slot: -1, report: .notStarted, start: nil, end: nil, logPath: nil)))
            return
        }
        let context = StepContext(id: step.id, function: step.function, args: step.args, rank: rank, slot: slot,
                                  gpus: step.gpus, attempt: step.attempt, runDirectory: runDirectory,
                                  editor: ChannelEditor(channel: channel), functionNames: executor.functionNames, launch: launch,
                                  threads: step.threads, cancellation: cancellation)
        let start = Date().timeIntervalSince1970
        report(.started(StepStart(id: step.id, rank: rank, slot: slot, start: start)))
        let outcome: Scheduler.Report
        do {
            try executor.run(context)
            outcome = .finished
        } catch {
            let text = ErrorText.sentence(error)
            context.appendToLog("step \(step.id) '\(step.function)' attempt \(step.attempt) failed: \(text)")
            outcome = .failed(error: text)
        }
        let end = Date().timeIntervalSince1970
        report(.ended(StepOutcome(id: step.id, rank: rank, slot: slot, report: outcome, start: start, end: end, logPath: context.logPath)))
    }
}
