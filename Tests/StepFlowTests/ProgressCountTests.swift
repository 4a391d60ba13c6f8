import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// The progress line counts as running only steps a rank said started: steps sent ahead, which wait
/// on a rank for a free slot, are running to the scheduler but not to a person (issue 19).
@Suite struct ProgressCountTests {
    struct Short: StepProtocol {
        init(params: NoParams) {}
        static let functions: StepFunctions<Short> = ["s": { _, _ in usleep(100) }]
        mutating func insertAllSteps(_ steps: StepInserter) throws {
            for _ in 0..<30_000 { try steps.insertFunctionStep("s", prerequisites: []) }
        }
    }

    @Test("30,000 steps of 100 µs on 2 ranks × 2 slots, many sent ahead: no progress snapshot counts more running steps than the 4 slots")
    func runningIsStarted() throws {
        let dir = Executables.temporaryFolder("progress-running")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seen = Mutex<[ProgressSnapshot]>([])
        var settings = RunSettings(runDirectory: dir, threads: 2, mpi: 2, environment: [:])
        settings.progress = { snapshot in seen.withLock { $0.append(snapshot) } }
        let report = try ProtocolRunner.runLocal(Short(), settings: settings, worldSize: nil)
        #expect(report.outcome == .finished)
        let snapshots = seen.withLock { $0 }
        #expect(snapshots.count >= 2, "the run lasted long enough to be reported on")
        #expect(snapshots.allSatisfy { $0.running <= 4 }, "\(snapshots.map(\.running))")
        #expect(snapshots.last?.final == true && snapshots.last?.running == 0)
    }
}
