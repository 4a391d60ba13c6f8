import Foundation
import Synchronization
import Testing
@testable import StepFlow

/// GPU lists (fake ids: no GPU is needed to check who gets which): shared out per node, never held
/// by two steps at once unless listed twice, always returned, and never holding back CPU steps.
@Suite struct GPUTests {
    @Test("The ranks of a node share its list out: no id twice unless the list repeats it")
    func shares() throws {
        #expect(GPUList.share(of: [0, 1, 2], localRank: 0, localSize: 2) == [0, 2])
        #expect(GPUList.share(of: [0, 1, 2], localRank: 1, localSize: 2) == [1])
        #expect(GPUList.share(of: [0], localRank: 1, localSize: 2) == [])
        #expect(GPUList.share(of: [0, 0], localRank: 0, localSize: 2) == [0] && GPUList.share(of: [0, 0], localRank: 1, localSize: 2) == [0])
        #expect(GPUList.parse("0,1, 2") == [0, 1, 2] && GPUList.parse("0,GPU-1") == nil)
        #expect(throws: RunSetupError.self) { try GPUList.fromEnvironment(["CUDA_VISIBLE_DEVICES": "GPU-8f2a"]) }
        #expect(try GPUList.fromEnvironment(["SLURM_STEP_GPUS": "2,3"]) == [2, 3])
        #expect(try GPUList.fromEnvironment(["CUDA_VISIBLE_DEVICES": "1", "SLURM_STEP_GPUS": "2,3"]) == [1])
    }

    /// Drives a scheduler with GPU and CPU steps and random endings, checking who holds which id.
    func drive(lists: [[Int]], threads: Int, seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var s = Scheduler(config: SchedulerConfig(ranks: lists.count, threadsPerRank: threads, gpus: lists))
        for i in 0..<60 {
            let gpu = i % 3 != 2
            try s.insert(StepSpec(function: gpu ? "gpu" : "cpu", args: [.int(i)], needsGPU: gpu, retries: i % 5 == 0 ? 1 : 0),
                         prerequisites: [], insertedBy: .protocolSteps)
        }
        var running: [Assignment] = []
        var rounds = 0
        while s.outcome() == nil && rounds < 10_000 {
            rounds += 1
            running += s.nextAssignments()
            // Held now: per rank, each id at most as often as the rank's list has it.
            for (rank, list) in lists.enumerated() {
                let held = running.filter { $0.rank == rank }.flatMap(\.gpus)
                for id in Set(held) {
                    #expect(held.filter { $0 == id }.count <= list.filter { $0 == id }.count,
                            "rank \(rank) hands out GPU \(id) \(held.filter { $0 == id }.count) times with list \(list)")
                }
                #expect(held.allSatisfy(list.contains), "rank \(rank) handed out an id not in \(list)")
            }
            for a in running {
                let spec = s.graph.record(a.step).spec
                #expect(spec.needsGPU == (a.gpus.count == 1), "step \(a.step) got \(a.gpus)")
            }
            guard !running.isEmpty else { break }
            let i = Int.random(in: 0..<running.count, using: &rng)
            let a = running.remove(at: i)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: s.stepEnded(a.step, .failed(error: "x"))
            case 1: s.stepEnded(a.step, .notStarted)
            case 2: s.stepEnded(a.step, .aborted)
            default: s.stepEnded(a.step, .finished)
            }
        }
        #expect(running.isEmpty)
        #expect(s.outcome() != nil, "the run ends once every step has ended")
        for (rank, list) in lists.enumerated() {
            #expect(s.freeGPUs[rank].sorted() == list.sorted(), "rank \(rank) ends with \(s.freeGPUs[rank]) free of \(list)")
        }
    }

    @Test("Concurrent GPU steps never share an id unless the list repeats it; every id returns after finished, failed, retried, aborted and handed-back steps",
          arguments: [1, 2, 4])
    func neverShared(threads: Int) throws {
        // One or two ranks per node, as the node lists [0], [0,1], [0,1,2], [0,0] are shared out.
        for node in [[0], [0, 1], [0, 1, 2], [0, 0]] {
            for perNode in [1, 2] {
                let lists = (0..<perNode).map { GPUList.share(of: node, localRank: $0, localSize: perNode) }
                guard lists.contains(where: { !$0.isEmpty }) else { continue }
                for seed in UInt64(1)...5 { try drive(lists: lists, threads: threads, seed: seed) }
            }
        }
    }

    @Test("Every GPU id returns to its rank's pool, whatever the ending, and a signal gives them all back")
    func returned() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 4, gpus: [[0, 1]]))
        for _ in 0..<4 { try s.insert(StepSpec(function: "g", needsGPU: true, retries: 1), prerequisites: [], insertedBy: .protocolSteps) }
        let first = s.nextAssignments()
        #expect(first.map(\.gpus) == [[0], [1]], "two GPUs: two GPU steps at once")
        s.stepEnded(first[0].step, .failed(error: "retry me"))
        let second = s.nextAssignments()
        #expect(second.count == 1 && second[0].gpus == [0], "the failed attempt's GPU came back")
        s.stepEnded(first[1].step, .notStarted)
        let third = s.nextAssignments()
        #expect(third.count == 1 && third[0].gpus == [1])
        s.abort(signal: SIGTERM)
        #expect(s.freeGPUs == [[0, 1]], "a signal ends every step: every GPU is free again")
    }

    @Test("CPU steps behind a GPU step that waits for a GPU still start")
    func cpuStepsNotHeldBack() throws {
        var s = Scheduler(config: SchedulerConfig(ranks: 1, threadsPerRank: 4, gpus: [[0]]))
        let g1 = try s.insert(StepSpec(function: "g", needsGPU: true), prerequisites: [], insertedBy: .protocolSteps)
        let g2 = try s.insert(StepSpec(function: "g", needsGPU: true), prerequisites: [], insertedBy: .protocolSteps)
        let c1 = try s.insert(StepSpec(function: "c"), prerequisites: [], insertedBy: .protocolSteps)
        let c2 = try s.insert(StepSpec(function: "c"), prerequisites: [], insertedBy: .protocolSteps)
        #expect(s.nextAssignments().map(\.step) == [g1, c1, c2], "g2 waits for the GPU; c1 and c2 go")
        s.stepEnded(g1, .finished)
        #expect(s.nextAssignments().map(\.step) == [g2], "g2 gets the GPU as soon as it is free")
    }

    @Test("A GPU step inserted into a run without GPUs is refused at insertion, naming how to give some")
    func noGPU() {
        var s = Scheduler(config: SchedulerConfig(ranks: 2, threadsPerRank: 1, gpus: [[], []]))
        #expect(throws: StepGraphError.noGPU(function: "g", at: nil)) {
            try s.insert(StepSpec(function: "g", needsGPU: true), prerequisites: [], insertedBy: .protocolSteps)
        }
    }

    @Test("A step gets its GPU in its context; with --gpus the run's ranks share the list")
    func endToEnd() throws {
        struct P: StepProtocol {
            init(params: NoParams) {}
            static let seen = Mutex<[(id: StepID, gpus: [Int], start: Double, end: Double)]>([])
            static let functions: StepFunctions<P> = [
                "g": { _, step in
                    let start = Date().timeIntervalSince1970
                    usleep(20_000)
                    P.seen.withLock { $0.append((step.id, step.gpus, start, Date().timeIntervalSince1970)) }
                },
            ]
            mutating func insertAllSteps(_ steps: StepInserter) throws {
                for _ in 0..<12 { try steps.insertFunctionStep("g", prerequisites: [], needsGPU: true) }
            }
        }
        let dir = Executables.temporaryFolder("gpu")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(P(), settings: RunSettings(runDirectory: dir, threads: 4, mpi: 2, gpus: [0, 1, 2], environment: [:]),
                                                 worldSize: nil)
        #expect(report.outcome == .finished)
        let runs = P.seen.withLock { $0 }
        #expect(runs.count == 12 && runs.allSatisfy { $0.gpus.count == 1 })
        for r in report.records {
            #expect(r.rank == 0 ? [0, 2].contains(r.gpus[0]) : r.gpus[0] == 1, "rank \(r.rank ?? -1) got GPU \(r.gpus)")
        }
        // Reloaded from the run database (status, report, --continue), each step shows the GPU it held.
        let stored = try #require(Background.stored(dir))
        #expect(stored.steps.map(\.gpus) == report.records.map(\.gpus) && stored.steps.allSatisfy { $0.gpus.count == 1 }, "\(stored.steps.map(\.gpus))")
        let status = try Executables.run("stepflow", ["status", "--json", dir.path])
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        let shown = try #require(doc["steps"] as? [[String: Any]]).map { $0["gpus"] as? [Int] }
        #expect(shown == report.records.map(\.gpus), "status --json: \(shown)")
        for a in runs {
            for b in runs where a.id < b.id && a.gpus == b.gpus {
                #expect(a.end <= b.start || b.end <= a.start, "steps \(a.id) and \(b.id) held GPU \(a.gpus) at once")
            }
        }
    }
}
