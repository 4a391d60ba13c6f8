import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// Rank 0 looks at the other ranks by polling (MPI cannot wake it). While its own slots all run steps,
/// each look takes the core from them, so looks that find nothing come less and less often.
@Suite struct RankZeroLookTests {
    /// Counts the looks (`receiveAll`) of rank 0's link.
    final class CountingMessenger: Messenger {
        let inner: any Messenger
        let looks = Atomic<Int>(0)

        init(_ inner: any Messenger) { self.inner = inner }

        func send(_ frame: [UInt8], to rank: Int) { inner.send(frame, to: rank) }
        func receiveAll() -> [(source: Int, bytes: [UInt8])] {
            looks.wrappingAdd(1, ordering: .relaxed)
            return inner.receiveAll()
        }
        func progressSends() { inner.progressSends() }
        func flush(within limit: Duration?) -> Bool { inner.flush(within: limit) }
        func notifyOnArrival(_ wake: @escaping @Sendable () -> Void) { inner.notifyOnArrival(wake) }
    }

    @Test("While rank 0's one slot runs a long step and nothing comes, its looks at the other ranks back off from 100 µs to 800 µs (fixed 100 µs looks took a third of the core from rank 0's own steps); each frame that comes is taken in")
    func looksBackOffWhileSaturated() throws {
        let network = InMemoryNetwork(size: 2)
        let messenger = CountingMessenger(network.messenger(rank: 0))
        let release = Atomic<Bool>(false)
        let executor = StepExecutor(functions: ["long": { _ in
            let end = Date().addingTimeInterval(30)
            while !release.load(ordering: .relaxed) && Date() < end { usleep(1_000) }
        }])
        let dir = Executables.temporaryFolder("rank0-looks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let link = RankLink(ranks: 2, messenger: messenger, threads: 1, executor: executor, runDirectory: dir, launch: 1)
        link.assign([StepAssignment(id: 1, function: "long", args: [], threads: 1, gpus: [], attempt: 1)], to: 0)
        // The step's start comes first.
        let first = link.nextEvents(timeout: .seconds(10))
        #expect(first.contains { if case .message(0, .started) = $0 { true } else { false } }, "\(first)")

        // After each frame from another rank, 15 ms with nothing coming. Fixed 100 µs looks made ~100
        // looks in such a window (then, after 20 ms of quiet, the idle 1 ms); doubling up to 800 µs
        // makes ~25. A loaded machine only makes fewer (sleeps run long), so the bound cannot fail
        // for a slow machine.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(60)
        var windows = 0, looks = 0, totalMicros = 0.0
        for _ in 0..<10 {
            network.messenger(rank: 1).send(WireCodec.encode([FromRank.alive]), to: 0)
            var got: [RankEvent] = []
            while got.isEmpty && clock.now < deadline { got = link.nextEvents(timeout: .milliseconds(50)) }
            #expect(got.contains { if case .message(1, .alive) = $0 { true } else { false } }, "\(got)")
            let before = messenger.looks.load(ordering: .relaxed)
            let started = clock.now
            let quiet = link.nextEvents(timeout: .milliseconds(15))
            let elapsed = clock.now - started
            #expect(quiet.isEmpty, "nothing came: \(quiet)")
            looks += messenger.looks.load(ordering: .relaxed) - before
            totalMicros += Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
            windows += 1
        }
        #expect(Double(looks) < totalMicros / 400, "\(looks) looks in \(windows) windows of \(Int(totalMicros / Double(windows))) µs")

        release.store(true, ordering: .relaxed)
        var ended = false
        while !ended && clock.now < deadline {
            ended = link.nextEvents(timeout: .milliseconds(50)).contains { if case .message(0, .ended) = $0 { true } else { false } }
        }
        #expect(ended)
        #expect(link.shutdown(within: .seconds(10)))
    }
}
