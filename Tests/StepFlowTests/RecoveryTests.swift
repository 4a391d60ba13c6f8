import Foundation
import Testing
@testable import StepFlow

/// Runs stopped by signals and killed ranks, then finished with --continue (S8–S10), checked against
/// what the steps wrote down themselves.
@Suite(.serialized) struct RecoveryTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `status --json` of a run, parsed.
    func statusJSON(_ run: URL) throws -> [String: Any] {
        let result = try Executables.run("StepFlowProbe", ["status", "--json", "--run-dir", run.path])
        #expect(result.code == 0, "\(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    func checkSchema(_ doc: [String: Any]) throws {
        let run = try #require(doc["run"] as? [String: Any])
        for key in ["protocol", "status", "threads", "mpi", "started", "ended", "counts"] { #expect(run.keys.contains(key), "run.\(key)") }
        let counts = try #require(run["counts"] as? [String: Int])
        #expect(Set(counts.keys) == Set(StepStatus.allCases.map(\.rawValue)))
        let steps = try #require(doc["steps"] as? [[String: Any]])
        #expect(counts.values.reduce(0, +) == steps.count)
        for s in steps {
            for key in ["id", "function", "args", "prerequisites", "status", "rank", "slot", "attempts", "start", "end", "insertedBy", "error", "log"] {
                #expect(s.keys.contains(key), "step.\(key)")
            }
            if s["status"] as? String == "finished" {
                #expect(s["start"] is Double && s["end"] is Double && s["rank"] is Int && s["slot"] is Int)
            }
        }
    }

    @Test("status --json works on a live run (read-only, the run goes on) and on a finished one")
    func statusLiveAndFinished() throws {
        let dir = Executables.temporaryFolder("status")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let launch = try Background.launch(np: 2, "StepFlowProbe",
                                           ["--run-dir", run.path, "--scenario", "gated", "--steps", "40", "--work-us", "20000", "--threads", "2"],
                                           environment: ["PROBE_RUN_DIR": run.path])
        #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 4 })
        let live = try statusJSON(run)
        let cli = try Executables.run("stepflow", ["status", run.path])
        try checkSchema(live)
        #expect(cli.code == 0 && cli.stdout.contains("Probe: running"), "\(cli.stdout)")
        let liveRun = try #require(live["run"] as? [String: Any])
        #expect(liveRun["status"] as? String == "running")
        #expect(((liveRun["counts"] as? [String: Int])?["finished"] ?? 0) < 41, "the gate step had not run")
        let table = try Executables.run("StepFlowProbe", ["status", "--run-dir", run.path])
        #expect(table.code == 0 && table.stdout.contains("RANK/SLOT"))
        FileManager.default.createFile(atPath: run.appendingPathComponent("go").path, contents: nil)
        #expect(launch.wait() == 0, "\(launch.text)")
        let done = try statusJSON(run)
        try checkSchema(done)
        let doneRun = try #require(done["run"] as? [String: Any])
        #expect(doneRun["status"] as? String == "finished" && doneRun["ended"] is Double)
        #expect((doneRun["counts"] as? [String: Int])?["finished"] == 41)
    }

    @Test("S12: one owner per run directory: a second launch on a live run exits 2 naming host and pid; after SIGKILL of rank 0 status says interrupted and --continue takes over")
    func oneOwner() throws {
        let dir = Executables.temporaryFolder("owner")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--scenario", "gated", "--steps", "40", "--work-us", "20000", "--threads", "2"]
        let env = ["PROBE_RUN_DIR": run.path]
        let launch = try Background.launch(np: 2, "StepFlowProbe", args, environment: env)
        #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 4 }, "\(launch.text)")
        let rank0 = try #require(Int32(try String(contentsOf: run.appendingPathComponent("pids/rank-0"), encoding: .utf8)))
        for flags in [[], ["--continue"], ["--restart"]] {
            let second = try MPILaunch.run(np: 2, "StepFlowProbe", args + flags, environment: env)
            #expect(second.code == 2, "\(flags): \(second.stderr)")
            #expect(second.stderr.contains("pid \(rank0) on host \(ProbeHost.name)"), "\(flags): \(second.stderr)")
            #expect(second.stderr.contains("owns run directory"), "\(flags): \(second.stderr)")
        }
        #expect(launch.isRunning, "the live run was not disturbed")
        kill(rank0, SIGKILL)
        _ = launch.wait()
        let status = try Executables.run("StepFlowProbe", ["status", "--run-dir", run.path])
        #expect(status.code == 0 && status.stdout.contains("interrupted"), "\(status.stdout)")
        _ = FileManager.default.createFile(atPath: run.appendingPathComponent("go").path, contents: nil)
        let resumed = try MPILaunch.run(np: 2, "StepFlowProbe", args + ["--continue"], environment: env)
        #expect(resumed.code == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        #expect(try #require(Background.stored(run)).steps.allSatisfy { $0.status == .finished })
    }

    /// With `argBytes`, every frame to a rank is above the eager limit (64 KB): sends to the stopped
    /// rank never complete, and ending must not wait for them (issue 19).
    @Test("A worker rank stopped with SIGSTOP: the run ends by itself, naming the rank and --rank-timeout, with frames small and above 64 KB; --continue finishes",
          arguments: [0, 70_000])
    func hungRank(argBytes: Int) throws {
        let dir = Executables.temporaryFolder("hung")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        // Gated: the run is still live when the rank stops, however slow the machine.
        let args = ["--run-dir", run.path, "--scenario", "gated", "--steps", "300", "--work-us", "20000", "--threads", "2",
                    "--arg-bytes", String(argBytes)]
        let env = ["PROBE_RUN_DIR": run.path]
        let launch = try Background.launch(np: 3, "StepFlowProbe", args + ["--rank-timeout", "3s"], environment: env)
        #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 20 }, "\(launch.text)")
        let victim = try #require(Int32(try String(contentsOf: run.appendingPathComponent("pids/rank-1"), encoding: .utf8)))
        kill(victim, SIGSTOP)
        let stopped = ContinuousClock.now
        // Ended by itself (the wait's timeout would kill it with 137), for the reason the message gives.
        // The bound is loose: under load the test's clock says more about the machine than the run
        // (3 s of silence, a check a second, 2 s for the ending's frames: ~6 s when idle).
        let endedByItself = Background.waitUntil(timeout: 60) { !launch.isRunning }
        let took = ContinuousClock.now - stopped
        let code = launch.wait(timeout: 1)
        kill(victim, SIGKILL)
        #expect(endedByItself && code != 0 && code != 137, "exit \(code): \(launch.text)")
        #expect(took < .seconds(30), "ended \(took) after the stop")
        print("hungRank(argBytes: \(argBytes)): the launch ended \(took) after SIGSTOP")
        #expect(launch.text.contains("rank 1 on host") && launch.text.contains("has sent nothing for more than 3s")
                && launch.text.contains("--rank-timeout"), "\(launch.text)")
        let stored = try #require(Background.stored(run))
        #expect(stored.status == "failed" && stored.count(.running) == 0 && stored.count(.aborted) > 0 && stored.count(.finished) < 301)
        FileManager.default.createFile(atPath: run.appendingPathComponent("go").path, contents: nil)
        let resumed = try MPILaunch.run(np: 3, "StepFlowProbe", args + ["--continue"], environment: env)
        #expect(resumed.code == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        #expect(try #require(Background.stored(run)).steps.allSatisfy { $0.status == .finished })
    }

    @Test("Real MPI: a 1 MB frame to a rank that never reads never goes, and the ending's wait for it gives up after its bound (2 s) instead of hanging")
    func endingNeverWaitsOnTheDead() throws {
        let result = try MPILaunch.run(np: 2, "StepFlowProbe", [], environment: ["PROBE_STUCK_SEND": "1"])
        let line = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("stuck-send:") }, "\(result.stdout)\(result.stderr)")
        #expect(line.contains("went=false"), "\(line)")
        let waited = try #require(Double(line.split(separator: "waited=").last ?? ""))
        #expect(waited >= 1.9 && waited < 10, "\(line)")
    }

    @Test("A stepsCheck hook that takes 5 s, twice, under --rank-timeout 3s on 3 ranks: a slow hook delays the run, it never fails it")
    func slowHookIsNotSilence() throws {
        let dir = Executables.temporaryFolder("slowhook")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--scenario", "slowhook", "--hook-ms", "5000", "--steps", "400", "--work-us", "30000",
                    "--threads", "2", "--rank-timeout", "3s"]
        let result = try MPILaunch.run(np: 3, "StepFlowProbe", args, environment: ["PROBE_RUN_DIR": run.path])
        #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
        let stored = try #require(Background.stored(run))
        #expect(stored.status == "finished" && stored.steps.allSatisfy { $0.status == .finished })
        // The hook really ran while the workers worked (else the test shows nothing).
        let lines = try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasPrefix("probe-") }
            .flatMap { try String(contentsOf: run.appendingPathComponent($0), encoding: .utf8).split(separator: "\n") }
        #expect(lines.filter { $0.hasPrefix("hook ") }.count >= 1, "the hook ran while the steps ran")
    }

    /// Ids the probe's steps recorded running, from the probe files whose names are not in `except`.
    func ranIDs(_ run: URL, except: Set<String> = []) throws -> (ids: [Int], files: Set<String>) {
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasPrefix("probe-") })
        var ids: [Int] = []
        for f in files.subtracting(except) {
            for line in try String(contentsOf: run.appendingPathComponent(f), encoding: .utf8).split(separator: "\n")
            where line.hasPrefix("run ") {
                ids.append(Int(line.split(separator: " ")[1])!)
            }
        }
        return (ids, files)
    }

    /// Stops a launch with `stop` once `threshold` steps are finished, then checks the database and
    /// finishes the run with --continue: every step ends finished, and none that was recorded finished
    /// before the stop ran again. The run is gated (its last step waits for `<run-dir>/go`, created
    /// before the continue), so the stop lands mid-run however slow the machine makes the test.
    func stopAndContinue(np: Int, steps: Int, threshold: Int, expectCode: Int32?, stop: (Background, URL) throws -> Void) throws {
        let dir = Executables.temporaryFolder("recover")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--scenario", "gated", "--steps", String(steps), "--work-us", "15000", "--threads", "2"]
        let launch = try Background.launch(np: np, "StepFlowProbe", args, environment: ["PROBE_RUN_DIR": run.path])
        #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= threshold }, "\(launch.text)")
        #expect(launch.isRunning, "the gate holds the run open")
        try stop(launch, run)
        let code = launch.wait()
        if let expectCode { #expect(code == expectCode, "\(launch.text)") } else { #expect(code != 0) }
        let before = try #require(Background.stored(run))
        #expect(before.count(.running) == 0 || expectCode == nil, "no step is left running after a signal")
        let finishedBefore = Set(before.steps.filter { $0.status == .finished }.map(\.id))
        let (_, oldFiles) = try ranIDs(run)
        FileManager.default.createFile(atPath: run.appendingPathComponent("go").path, contents: nil)

        let resumed = try MPILaunch.run(np: max(np, 1), "StepFlowProbe", args + ["--continue"], environment: ["PROBE_RUN_DIR": run.path])
        #expect(resumed.code == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        let after = try #require(Background.stored(run))
        #expect(after.steps.count == steps + 1 && after.steps.allSatisfy { $0.status == .finished })
        let rerun = Set(try ranIDs(run, except: oldFiles).ids)
        #expect(rerun.isDisjoint(with: finishedBefore), "steps recorded finished before the stop ran again: \(rerun.intersection(finishedBefore).sorted())")
        let everRan = Set(try ranIDs(run).ids)
        #expect(everRan == Set(1...steps + 1), "every step ran, the gate too")
    }

    @Test("SIGTERM to a run: exit 143, running steps aborted, --continue completes it")
    func sigtermAlone() throws {
        try stopAndContinue(np: 0, steps: 200, threshold: 20, expectCode: 143) { launch, _ in
            launch.signal(SIGTERM)
        }
    }

    @Test("SIGINT (Ctrl-C) to a run: exit 130, --continue completes it")
    func sigintAlone() throws {
        try stopAndContinue(np: 0, steps: 200, threshold: 20, expectCode: 130) { launch, _ in
            launch.signal(SIGINT)
        }
    }

    @Test("SIGTERM ends a run in every phase: during insertAllSteps, while steps run, while only the hook can release a step",
          arguments: [("slowinsert", ["--steps", "300", "--work-us", "10000"]),
                      ("gated", ["--steps", "300", "--work-us", "15000"]),
                      ("stream", ["--steps", "2", "--chunks", "1000", "--work-us", "1000"])])
    func sigtermInEveryPhase(scenario: String, extra: [String]) throws {
        let dir = Executables.temporaryFolder("phase")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let launch = try Background.launch(np: 0, "StepFlowProbe", ["--run-dir", run.path, "--scenario", scenario, "--threads", "2"] + extra,
                                           environment: ["PROBE_RUN_DIR": run.path])
        if scenario == "slowinsert" {
            // The probe's insertAllSteps holds its last step until the signal came: it lands mid-insert.
            #expect(Background.waitUntil { FileManager.default.fileExists(atPath: run.appendingPathComponent("inserting").path) })
        } else {
            #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 5 }, "\(launch.text)")
        }
        launch.signal(SIGTERM)
        #expect(launch.wait(timeout: 30) == 143, "\(scenario): \(launch.text)")
        let stored = try #require(Background.stored(run))
        #expect(stored.status == "aborted" && stored.count(.running) == 0, "\(scenario)")
    }

    @Test("SIGTERM to run_mpi.sh mid-run: exit 143, the aborted run continues to the end")
    func sigtermRunMPI() throws {
        let dir = Executables.temporaryFolder("sigterm-mpi")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        // Gated: the run is still live when the signal reaches the ranks a second later.
        let args = ["--debug", "--mpi", "2", "--threads", "2", "--", "StepFlowProbe", "--run-dir", run.path,
                    "--scenario", "gated", "--steps", "200", "--work-us", "50000"]
        let launch = try Background(Self.root.appendingPathComponent("run_mpi.sh").path, args,
                                    environment: ["PROBE_RUN_DIR": run.path, "STEPFLOW_SKIP_BUILD": "1"])
        #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 10 }, "\(launch.text)")
        launch.signal(SIGTERM)
        #expect(launch.wait() == 143, "\(launch.text)")
        let stopped = try #require(Background.stored(run))
        #expect(stopped.status == "aborted" && stopped.count(.running) == 0)
        // mpirun passes SIGTERM on to the ranks one second after it gets it.
        #expect(stopped.count(.aborted) > 0 && stopped.count(.finished) < 201)
        FileManager.default.createFile(atPath: run.appendingPathComponent("go").path, contents: nil)
        let resumed = try MPILaunch.run(np: 2, "StepFlowProbe", Array(args.dropFirst(7)) + ["--threads", "2", "--continue"],
                                        environment: ["PROBE_RUN_DIR": run.path])
        #expect(resumed.code == 0, "\(resumed.stderr)")
        #expect(try #require(Background.stored(run)).steps.allSatisfy { $0.status == .finished })
    }

    @Test("SIGKILL a worker rank, then rank 0, at seeded random moments: --continue finishes, nothing finished runs again",
          arguments: Array(UInt64(1)...10))
    func killRanks(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let steps = 300
        for victim in [Int.random(in: 1...2, using: &rng), 0] {
            // Up to half-way: the database lags the run by up to 100 ms, and the kill must land mid-run.
            let threshold = Int.random(in: 10...(steps / 2), using: &rng)
            try stopAndContinue(np: 3, steps: steps, threshold: threshold, expectCode: nil) { _, run in
                let pid = try #require(Int32(try String(contentsOf: run.appendingPathComponent("pids/rank-\(victim)"), encoding: .utf8)))
                kill(pid, SIGKILL)
            }
        }
    }
}

/// This machine's host name, as the lock records it.
enum ProbeHost {
    static var name: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(cString: buffer)
    }
}
