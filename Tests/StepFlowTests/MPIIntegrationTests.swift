import Foundation
import Testing

/// The engine across real MPI ranks: `mpirun -np M` with M = 1, 2, 4 (4 is oversubscribed on 2 cores).
@Suite(.serialized) struct MPIIntegrationTests {
    static let shapes: [(Int, Int)] = [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2)]

    @Test("The seed example under mpirun ends with the right set.json, its steps spread over every rank", arguments: shapes)
    func seedExample(np: Int, threads: Int) throws {
        let dir = Executables.temporaryFolder("mpi-seed")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let result = try MPILaunch.run(np: np, "ImportMovies", ["--run-dir", run.path, "--threads", String(threads), "--samples", "24"])
        #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("27 finished"), "\(result.stdout)")
        let set = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("set.json"))) as! [String: Any]
        #expect((set["files"] as! [Any]).count == 24)
        let report = try ReportJSON(runDirectory: run)
        #expect(report.ranks() == Set(0..<np), "steps ran on every rank")
        #expect(report.steps.allSatisfy { ($0["slot"] as? Int).map { (0..<threads).contains($0) } ?? false })
        #expect(report.run["mpi"] as? Int == np)
    }

    @Test("Random DAGs with run-time inserts from worker ranks: each step ran once, after its prerequisites",
          arguments: [(1, 2, UInt64(2)), (2, 1, 3), (2, 2, 4), (4, 1, 5), (4, 2, 6)])
    func randomDAGs(np: Int, threads: Int, seed: UInt64) throws {
        let dir = Executables.temporaryFolder("mpi-random")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let result = try MPILaunch.run(np: np, "StepFlowProbe",
                                       ["--run-dir", run.path, "--threads", String(threads), "--steps", "250", "--seed", String(seed)],
                                       environment: ["PROBE_RUN_DIR": run.path])
        #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
        let probe = try ProbeRecords(runDirectory: run)
        let report = try ReportJSON(runDirectory: run)
        #expect(report.steps.count > 250, "steps inserted steps at run time")
        #expect(probe.planCount == report.steps.count, "every insert was planned once")
        let byId = Dictionary(grouping: probe.runs, by: \.id)
        var insertedOnWorkers = 0
        for step in report.steps {
            let id = step["id"] as! Int
            let runs = byId[id] ?? []
            #expect(runs.count == 1, "step \(id) ran \(runs.count) times")
            guard let mine = runs.first else { continue }
            #expect(mine.rank == step["rank"] as? Int)
            #expect(Set(step["prerequisites"] as! [Int]) == probe.plans[id], "step \(id): prerequisites as planned")
            for p in probe.plans[id] ?? [] {
                let before = try #require(byId[p]?.first)
                #expect(before.end <= mine.start, "step \(id) started before prerequisite \(p) ended")
            }
            if let parent = step["insertedBy"] as? Int, (byId[parent]?.first?.rank ?? 0) != 0 { insertedOnWorkers += 1 }
        }
        #expect(np == 1 || insertedOnWorkers > 0, "some steps were inserted by steps running on worker ranks")
        #expect(Set(probe.runs.map(\.rank)) == Set(0..<np))
    }

    @Test("A step failing on a worker rank: both failure policies give the statuses of a one-rank run",
          arguments: [("fail", [String]()), ("fail-keep-going", ["--keep-going"])])
    func failureOnWorker(scenario: String, flags: [String]) throws {
        func statuses(np: Int, threads: Int) throws -> ([String], ReportJSON, ProcessResult) {
            let dir = Executables.temporaryFolder("mpi-fail")
            defer { try? FileManager.default.removeItem(at: dir) }
            let run = dir.appendingPathComponent("run")
            let result = try MPILaunch.run(np: np, "StepFlowProbe",
                                           ["--run-dir", run.path, "--threads", String(threads), "--scenario", scenario] + flags,
                                           environment: ["PROBE_RUN_DIR": run.path])
            let report = try ReportJSON(runDirectory: run)
            return (report.statuses, report, result)
        }
        let (baseline, _, one) = try statuses(np: 1, threads: 1)
        #expect(one.code == 1)
        let expected = scenario == "fail"
            ? ["finished", "finished", "finished", "finished", "finished", "finished", "finished", "failed", "new", "new"]
            : ["finished", "finished", "finished", "finished", "finished", "finished", "finished", "failed", "skipped", "skipped", "finished", "finished"]
        #expect(baseline == expected)
        for (np, threads) in [(2, 1), (2, 2), (4, 1)] {
            // Step 8 goes where step 7 ran (the warm rank, S6), which may be rank 0: launch again until it
            // fails on a worker rank, whose report crosses the wire. Every launch must match the baseline.
            var onWorker = false
            for _ in 0..<6 where !onWorker {
                let (got, report, result) = try statuses(np: np, threads: threads)
                #expect(got == baseline, "np=\(np) threads=\(threads)")
                #expect(result.code == 1, "np=\(np): \(result.stderr)")
                #expect(result.stdout.contains("failed step 8 'fail'") && result.stdout.contains("failed on purpose"))
                onWorker = (report.steps[7]["rank"] as? Int ?? 0) != 0
            }
            #expect(onWorker, "step 8 failed on a worker rank in one of 6 launches (np=\(np))")
        }
    }

    @Test("--mpi that disagrees with mpirun -np fails at once on every rank with one message saying how to launch")
    func worldSizeMismatch() throws {
        let dir = Executables.temporaryFolder("mpi-mismatch")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try MPILaunch.run(np: 2, "ImportMovies", ["--run-dir", dir.appendingPathComponent("run").path, "--mpi", "3"])
        #expect(result.code != 0)
        let all = result.stdout + result.stderr
        #expect(all.components(separatedBy: "asks for mpi=3").count - 1 == 1, "one message: \(all)")
        #expect(all.contains("mpirun -np 3"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("run/report.json").path))
    }

    @Test("STEPFLOW_THREADS and STEPFLOW_MPI reach every rank as defaults")
    func environmentSettings() throws {
        let dir = Executables.temporaryFolder("mpi-env")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let result = try MPILaunch.run(np: 2, "ImportMovies", ["--run-dir", run.path],
                                       environment: ["STEPFLOW_THREADS": "3", "STEPFLOW_MPI": "2"])
        #expect(result.code == 0, "\(result.stderr)")
        let report = try ReportJSON(runDirectory: run)
        #expect(report.run["threads"] as? Int == 3 && report.run["mpi"] as? Int == 2)
        let bad = try MPILaunch.run(np: 2, "ImportMovies", ["--run-dir", run.path], environment: ["STEPFLOW_MPI": "4"])
        #expect(bad.code != 0 && (bad.stdout + bad.stderr).contains("STEPFLOW_MPI"))
    }
}

/// The benchmark runs and reports every figure (values are measured, never asserted: timing is noisy).
@Suite struct BenchmarkSmokeTests {
    @Test("stepflow bench --json prints steps/s, the raw MPI rate (median of one measurement per pair of runs), their ratio, rank-0 memory and idle CPU")
    func benchJSON() throws {
        let result = try MPILaunch.run(np: 2, "stepflow", ["bench", "--shape", "diamond", "--steps", "3000", "--json",
                                                           "--raw-tasks", "5000", "--idle-ms", "200",
                                                           "--run-dir", Executables.temporaryFolder("bench").path])
        #expect(result.code == 0, "\(result.stderr)")
        let line = try #require(result.stdout.split(separator: "\n").last)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for key in ["steps_per_s", "raw_mpi_per_s", "ratio", "rank0_peak_rss_bytes", "idle_cpu_percent_max_rank"] {
            #expect((json[key] as? NSNumber)?.doubleValue ?? 0 > 0, "\(key) in \(json)")
        }
        #expect(json["steps"] as? Int == 3000 && json["mpi"] as? Int == 2)
        // The raw rate is measured before each of the 3 pairs of runs; the ratio uses their median.
        let raws = try #require(json["raw_mpi_per_s_runs"] as? [Double])
        #expect(raws.count == 3 && raws.allSatisfy { $0 > 0 }, "\(raws)")
        #expect(json["raw_mpi_per_s"] as? Double == raws.sorted()[1])
        let rate = try #require(json["steps_per_s"] as? Double), ratio = try #require(json["ratio"] as? Double)
        #expect(abs(ratio - rate / raws.sorted()[1]) < 1e-9 * ratio)
    }
}
