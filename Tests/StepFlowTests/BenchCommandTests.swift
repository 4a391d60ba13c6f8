import Foundation
import Testing
@testable import StepFlow

/// `stepflow bench`'s figures (store cost, idle wake-up, memory above baseline), `--compare`, and the
/// run directory's sub-runs (`idle/`, `no-store/`, `compare-<shape>-t<T>/`). The built binary is run
/// as users run it; figures are checked for presence and for their arithmetic, never for a time.
@Suite(.serialized) struct BenchCommandTests {
    /// A small, quick benchmark in one process (a world of one rank).
    func bench(_ dir: URL, _ extra: [String]) throws -> ProcessResult {
        try Executables.run("stepflow", ["bench", "--steps", "200", "--idle-ms", "20", "--raw-tasks", "10", "--run-dir", dir.path] + extra)
    }

    /// The last line of standard output, parsed as JSON.
    func json(_ result: ProcessResult) throws -> Any {
        let line = try #require(result.stdout.split(separator: "\n").last, "no output; stderr: \(result.stderr)")
        return try JSONSerialization.jsonObject(with: Data(line.utf8))
    }

    func number(_ object: [String: Any], _ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }

    func entries(_ dir: URL) -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []) }

    func snapshot(_ dir: URL) -> [String: Data?] { FolderSnapshot.of(dir) }

    // MARK: - Run directory

    @Test("A benchmark's idle/, no-store/ and compare-<shape>-t<T>/ runs are accepted and cleared by the next benchmark")
    func subRunsCleared() throws {
        let dir = Executables.temporaryFolder("bench-subruns")
        defer { try? FileManager.default.removeItem(at: dir) }
        let compare = try bench(dir, ["--compare", "--compare-shapes", "independent,chain", "--compare-threads", "1,2"])
        #expect(compare.code == 0, "\(compare.stderr)")
        let compareRuns: Set = ["compare-independent-t1", "compare-independent-t2", "compare-chain-t1", "compare-chain-t2"]
        #expect(entries(dir) == compareRuns)
        for run in compareRuns {
            #expect(try RunStore.read(runDirectory: dir.appendingPathComponent(run)).protocolName == "Bench")
            #expect(entries(dir.appendingPathComponent(run + "/no-store")).contains("report.json"), "\(run)/no-store")
        }

        // The plain benchmark replaces them with its own run, its store-off twin and its idle run.
        let single = try bench(dir, [])
        #expect(single.code == 0, "\(single.stderr)")
        #expect(entries(dir).isDisjoint(with: compareRuns), "\(entries(dir))")
        #expect(entries(dir).isSuperset(of: ["run.db", "report.json", "idle", "no-store", "repeat-2", "no-store-2", "repeat-3", "no-store-3"]),
                "\(entries(dir))")
        #expect(try RunStore.read(runDirectory: dir.appendingPathComponent("idle")).steps.count == 2)

        // And back: a compare run clears those.
        let again = try bench(dir, ["--compare", "--compare-shapes", "diamond", "--compare-threads", "3", "--no-store-cost"])
        #expect(again.code == 0, "\(again.stderr)")
        #expect(entries(dir) == ["compare-diamond-t3"])
    }

    @Test("A file the benchmark did not write inside one of its sub-runs is refused (exit 2); nothing is deleted",
          arguments: ["idle", "no-store", "compare-independent-t1", "compare-independent-t1/no-store"])
    func foreignFileInSubRunRefused(_ folder: String) throws {
        let dir = Executables.temporaryFolder("bench-subrun-foreign")
        defer { try? FileManager.default.removeItem(at: dir) }
        let setup = folder.hasPrefix("compare") ? ["--compare", "--compare-shapes", "independent", "--compare-threads", "1"] : []
        #expect(try bench(dir, setup).code == 0)
        let sub = dir.appendingPathComponent(folder)
        #expect(FileManager.default.fileExists(atPath: sub.path), "the benchmark wrote \(folder)")
        try Data("precious\n".utf8).write(to: sub.appendingPathComponent("keep.txt"))
        let before = snapshot(dir)
        let result = try bench(dir, [])
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains("keep.txt"), "\(result.stderr)")
        #expect(snapshot(dir) == before)
    }

    @Test("Folders only named like a benchmark's sub-runs, or sub-run names that are files, are refused",
          arguments: ["compare-idle-t1/", "compare-independent-t0/", "compare-independent-t/", "compare-square-t1/",
                      "compare-independent-t1x/", "idle", "no-store", "repeat-1/", "repeat-02/", "no-store-x/", "repeat-2"])
    func lookalikesRefused(_ name: String) throws {
        let dir = Executables.temporaryFolder("bench-lookalike")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent(name)
        if name.hasSuffix("/") {
            try FileManager.default.createDirectory(at: path, withIntermediateDirectories: true)
        } else {
            try Data("x".utf8).write(to: path)
        }
        let before = snapshot(dir)
        let result = try bench(dir, ["--no-store-cost"])
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains(name), "\(result.stderr)")
        #expect(snapshot(dir) == before)
    }

    @Test("A sub-run holding another protocol's run database is refused; its bytes stay")
    func otherProtocolInSubRunRefused() throws {
        let dir = Executables.temporaryFolder("bench-subrun-other")
        defer { try? FileManager.default.removeItem(at: dir) }
        let sub = dir.appendingPathComponent("compare-random-t2")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        let store = try RunStore.create(runDirectory: sub, protocolName: "ImportMovies", params: [], threads: 1, mpi: 1)
        #expect(store.finish(status: "finished") == nil)
        let before = snapshot(dir)
        let result = try bench(dir, [])
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains("ImportMovies"), "\(result.stderr)")
        #expect(snapshot(dir) == before)
    }

    // MARK: - Arithmetic

    @Test("store_cost is 1 - steps/s ÷ steps/s without the store; bytes per step above baseline is (peak - baseline) ÷ steps")
    func derivedFigures() throws {
        let dir = Executables.temporaryFolder("bench-arith")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try bench(dir, ["--json"])
        #expect(result.code == 0, "\(result.stderr)")
        let r = try #require(try json(result) as? [String: Any])
        let on = try #require(number(r, "steps_per_s")), off = try #require(number(r, "steps_per_s_no_store"))
        let cost = try #require(number(r, "store_cost"))
        #expect(abs(cost - (1 - on / off)) < 1e-9)
        let peak = try #require(number(r, "rank0_peak_rss_bytes")), baseline = try #require(number(r, "rank0_baseline_rss_bytes"))
        let perStep = try #require(number(r, "rank0_rss_bytes_per_step_above_baseline"))
        #expect(baseline > 0)
        #expect(abs(perStep - (peak - baseline) / 200) < 1e-6)
    }

    /// (shape, steps, threads, expected ideal makespan in units of --work-us)
    static let idealCases: [(String, Int, Int, Double)] = [
        ("independent", 5, 2, 3), ("random", 4, 2, 2), ("chain", 4, 2, 4), ("diamond", 10, 2, 2 + 4), ("diamond", 2, 1, 2),
        // mixed: 3 long steps of 3 ms and 2 short of 1 ms on 2 slots: (9 + 2) / 2 units.
        ("mixed", 5, 2, 5.5),
    ]

    @Test("ideal_s is the makespan of the shape's steps on M × T slots with no overhead", arguments: idealCases)
    func idealMakespan(_ c: (String, Int, Int, Double)) throws {
        let dir = Executables.temporaryFolder("bench-ideal")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try bench(dir, ["--json", "--shape", c.0, "--steps", String(c.1), "--threads", String(c.2),
                                     "--work-us", "1000", "--long-work-us", "3000", "--no-store-cost"])
        #expect(result.code == 0, "\(result.stderr)")
        let r = try #require(try json(result) as? [String: Any])
        #expect(abs((number(r, "ideal_s") ?? -1) - c.3 * 0.001) < 1e-12, "\(r)")
    }

    // MARK: - End to end under mpirun

    @Test("bench --json under mpirun reports store cost, the store-off rate, the idle wake-up and every rank's idle CPU",
          arguments: [1, 2])
    func benchJSON(_ np: Int) throws {
        let dir = Executables.temporaryFolder("bench-e2e")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try MPILaunch.run(np: np, "stepflow", ["bench", "--json", "--steps", "2000", "--raw-tasks", "2000",
                                                            "--idle-ms", "200", "--run-dir", dir.path])
        #expect(result.code == 0, "\(result.stderr)")
        let r = try #require(try json(result) as? [String: Any])
        #expect(r["mpi"] as? Int == np && r["steps"] as? Int == 2000)
        let cost = try #require(number(r, "store_cost"), "\(r)")
        #expect(cost.isFinite && cost < 1, "store_cost is 1 - on/off: below 1 while both rates are positive; a negative value is noise, not an error")
        #expect((number(r, "steps_per_s_no_store") ?? 0) > 0)
        #expect((number(r, "idle_wake_us") ?? -1) >= 0)
        #expect(r["idle_wake_from_rank"] is Int && r["idle_wake_to_rank"] is Int)
        #expect((r["idle_cpu_percent_by_rank"] as? [Double])?.count == np)
        #expect((number(r, "idle_cpu_percent_max_rank") ?? -1) >= 0)
        #expect((number(r, "rank0_baseline_rss_bytes") ?? 0) > 0)
        #expect(number(r, "rank0_rss_bytes_per_step_above_baseline") != nil)

        // The idle run: the sleeping step is id 1, the step after it id 2 (records come in id order).
        let idle = try ReportJSON(runDirectory: dir.appendingPathComponent("idle"))
        #expect(idle.steps.map { $0["id"] as? Int } == [1, 2])
        #expect(idle.steps.map { $0["function"] as? String } == ["idle", "noop"])
        #expect(idle.steps[1]["prerequisites"] as? [Int] == [1])
        #expect(idle.statuses == ["finished", "finished"])
        // The store-off runs wrote their reports but no database.
        for folder in ["no-store", "no-store-2", "no-store-3"] {
            let noStore = dir.appendingPathComponent(folder)
            #expect(try ReportJSON(runDirectory: noStore).steps.count == 2000, "\(folder)")
            #expect(!entries(noStore).contains("run.db"), "\(folder)")
        }
        #expect(try RunStore.read(runDirectory: dir.appendingPathComponent("repeat-3")).steps.count == 2000)
        // Three runs each way (the default --repeats); the figures are their medians.
        let on = try #require(r["steps_per_s_runs"] as? [Double]), off = try #require(r["steps_per_s_no_store_runs"] as? [Double])
        #expect(on.count == 3 && off.count == 3 && r["repeats"] as? Int == 3)
        #expect(number(r, "steps_per_s") == on.sorted()[1] && number(r, "steps_per_s_no_store") == off.sorted()[1])
        #expect(abs((number(r, "store_cost") ?? 9) - (1 - on.sorted()[1] / off.sorted()[1])) < 1e-12)
    }

    @Test("With --no-store or --no-store-cost there is no store-off run and store_cost is null", arguments: ["--no-store", "--no-store-cost"])
    func storeCostSkipped(_ flag: String) throws {
        let dir = Executables.temporaryFolder("bench-skip")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try bench(dir, ["--json", flag])
        #expect(result.code == 0, "\(result.stderr)")
        let r = try #require(try json(result) as? [String: Any])
        #expect(r["store_cost"] is NSNull && r["steps_per_s_no_store"] is NSNull, "\(r)")
        #expect(r["store"] as? Bool == (flag != "--no-store"))
        #expect(!entries(dir).contains("no-store"))
        #expect((number(r, "idle_wake_us") ?? -1) >= 0)
    }

    @Test("bench --compare --json under mpirun prints one row per shape × threads", arguments: [1, 2])
    func compareJSON(_ np: Int) throws {
        let dir = Executables.temporaryFolder("bench-compare")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try MPILaunch.run(np: np, "stepflow", ["bench", "--compare", "--json", "--steps", "2000", "--raw-tasks", "2000",
                                                            "--compare-threads", "1,2", "--run-dir", dir.path])
        #expect(result.code == 0, "\(result.stderr)")
        let rows = try #require(try json(result) as? [[String: Any]])
        let combinations = rows.map { "\($0["shape"] as? String ?? "?")-t\($0["threads"] as? Int ?? 0)" }
        #expect(combinations == ["independent-t1", "independent-t2", "chain-t1", "chain-t2",
                                 "diamond-t1", "diamond-t2", "random-t1", "random-t2"])
        for row in rows {
            #expect(row["mpi"] as? Int == np && row["steps"] as? Int == 2000 && row["outcome"] as? String == "finished")
            #expect((number(row, "steps_per_s") ?? 0) > 0 && (number(row, "us_per_step") ?? 0) > 0)
            let cost = try #require(number(row, "store_cost"), "\(row)")
            #expect(cost.isFinite && cost < 1, "store_cost is 1 - on/off: below 1 while both rates are positive; a negative value is noise, not an error")
            if np == 1 { #expect(row["ratio"] is NSNull) } else { #expect((number(row, "ratio") ?? 0) > 0) }
        }
    }

    @Test("--compare runs a chain of at most 10000 steps, and its text table has one row per combination")
    func compareChainCapAndTable() throws {
        let dir = Executables.temporaryFolder("bench-compare-cap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = try bench(dir, ["--compare", "--json", "--steps", "10003", "--compare-shapes", "chain", "--compare-threads", "1",
                                   "--no-store-cost"])
        #expect(json.code == 0, "\(json.stderr)")
        let rows = try #require(try self.json(json) as? [[String: Any]])
        #expect(rows.count == 1 && rows.first?["steps"] as? Int == 10000)

        let text = try bench(dir, ["--compare", "--compare-shapes", "independent,diamond", "--compare-threads", "1,2,3"])
        #expect(text.code == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n")
        #expect(lines.count == 2 + 6, "\(text.stdout)")
        #expect(lines.filter { $0.contains(" %") }.count == 6, "each row shows its store cost: \(text.stdout)")
    }

    @Test("--repeats outside 1...100 is refused before touching the run directory", arguments: ["0", "101", "-1"])
    func repeatsValidation(_ value: String) throws {
        let dir = Executables.temporaryFolder("bench-repeats-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try bench(dir, ["--repeats", value])
        #expect(result.code != 0)
        #expect(result.stderr.contains("--repeats"), "\(result.stderr)")
        #expect(entries(dir).isEmpty)
    }

    @Test("--compare refuses --threads, thread counts below 1 and the idle shape, before touching the run directory",
          arguments: [["--threads", "2"], ["--compare-threads", "0,1"], ["--compare-threads", "a"], ["--compare-shapes", "idle"],
                      ["--compare-shapes", "chain,star"]])
    func compareValidation(_ extra: [String]) throws {
        let dir = Executables.temporaryFolder("bench-compare-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try bench(dir, ["--compare"] + extra)
        #expect(result.code != 0)
        #expect(result.stderr.contains(extra[0]), "\(result.stderr)")
        #expect(entries(dir).isEmpty)
    }
}
