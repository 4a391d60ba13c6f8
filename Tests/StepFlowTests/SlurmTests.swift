import Foundation
import Testing
@testable import StepFlow

/// The examples/slurm templates on a real one-node Slurm that scripts/local-slurm.sh starts (as root; it
/// installs slurm-wlm and munge when missing). Each job runs with RUN_DIR in a fresh folder and
/// STEPFLOW_BUILD=debug, the build scripts/test.sh made (the launched processes get
/// STEPFLOW_SKIP_BUILD=1 from Executables.runProcess, and sbatch passes the environment on).
@Suite(.serialized) struct SlurmTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Why Slurm cannot be used here, or nil once it runs. Started once for the suite; the script is
    /// idempotent, so a cluster left running by an earlier run is simply reused.
    static let unavailable: String? = {
        let script = root.appendingPathComponent("scripts/local-slurm.sh").path
        guard let up = try? Executables.runProcess("/bin/bash", [script, "start"]) else { return "cannot run \(script)" }
        if up.code == 0 { return nil }
        return up.stderr.split(separator: "\n").last.map(String.init) ?? "local-slurm.sh start exited \(up.code)"
    }()

    /// Cancels (skips, with the reason on one line) the test when Slurm cannot start here: not root, no
    /// packages and no network to install them. Never a silent pass.
    static func requireSlurm() throws {
        if let reason = unavailable { try Test.cancel("Slurm test skipped: \(reason)") }
    }

    /// `sbatch ARGS` from the project's folder (so SLURM_SUBMIT_DIR finds run_mpi.sh), with the job's
    /// output in `output`.
    static func sbatch(_ args: [String], output: URL, environment: [String: String]) throws -> ProcessResult {
        var env = environment
        env["STEPFLOW_BUILD"] = "debug"
        return try Executables.runProcess("/usr/bin/sbatch", ["--output", output.path] + args, cwd: root, environment: env)
    }

    /// What slurmctld still remembers of a finished job (MinJobAge=300 s): JobState, ExitCode, times.
    static func job(_ id: String) throws -> [String: String] {
        let shown = try Executables.runProcess("/usr/bin/scontrol", ["show", "job", "-o", id])
        var fields: [String: String] = [:]
        for word in shown.stdout.split(whereSeparator: \.isWhitespace) {
            let pair = word.split(separator: "=", maxSplits: 1).map(String.init)
            if pair.count == 2 { fields[pair[0]] = pair[1] }
        }
        return fields
    }

    /// `stepflow status DIR --json` (any protocol's run).
    static func status(_ run: URL) throws -> (run: [String: Any], steps: [[String: Any]]) {
        let result = try Executables.run("stepflow", ["status", run.path, "--json"])
        #expect(result.code == 0, "\(result.stderr)")
        let top = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        return (try #require(top["run"] as? [String: Any]), try #require(top["steps"] as? [[String: Any]]))
    }

    static func text(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "(no \(url.lastPathComponent))" }

    /// The seed example's run: finished on 4 ranks × 2 threads, steps on every rank, slots 0 and 1
    /// used, and set.json lists every movie with the size and SHA-256 that sha256sum gives.
    static func checkSeedRun(_ run: URL, samples: Int, jobLog: URL) throws {
        let (summary, steps) = try status(run)
        #expect(summary["status"] as? String == "finished", "\(text(jobLog))")
        #expect(summary["mpi"] as? Int == 4 && summary["threads"] as? Int == 2)
        #expect(steps.count == samples + 3 && steps.allSatisfy { $0["status"] as? String == "finished" })
        var slots: [Int: Set<Int>] = [:]
        for step in steps {
            if let rank = step["rank"] as? Int, let slot = step["slot"] as? Int { slots[rank, default: []].insert(slot) }
        }
        // Which of its slots a rank's steps land on depends on timing (rank 0 may keep its steps on
        // slot 0 while it is busy coordinating), so each rank's slots are only checked to be in 0...1.
        #expect(Set(slots.keys) == [0, 1, 2, 3], "steps ran on ranks 0-3: \(slots)")
        #expect(slots.values.allSatisfy { $0.isSubset(of: [0, 1]) }, "slots are 0 and 1: \(slots)")
        #expect(slots.values.reduce(into: Set<Int>()) { $0.formUnion($1) } == [0, 1], "both slots were used: \(slots)")

        let set = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("set.json"))) as? [String: Any])
        let files = try #require(set["files"] as? [[String: Any]])
        let movies = try FileManager.default.contentsOfDirectory(at: run.appendingPathComponent("movies"), includingPropertiesForKeys: nil)
        let sums = try Executables.sha256sums(movies)
        #expect(set["count"] as? Int == samples && files.count == samples)
        #expect(Set(files.compactMap { $0["name"] as? String }) == Set(sums.keys))
        for file in files {
            let name = try #require(file["name"] as? String)
            let size = try FileManager.default.attributesOfItem(atPath: run.appendingPathComponent("movies/\(name)").path)[.size] as? Int
            #expect(file["sha256"] as? String == sums[name] && file["size"] as? Int == size, "\(name)")
        }
    }

    @Test("local-slurm.sh start is idempotent and status names the idle node")
    func localSlurmScript() throws {
        try Self.requireSlurm()
        let script = Self.root.appendingPathComponent("scripts/local-slurm.sh").path
        let again = try Executables.runProcess("/bin/bash", [script, "start"])
        #expect(again.code == 0, "\(again.stderr)")
        #expect(!again.stderr.contains("started "), "a second start starts nothing: \(again.stderr)")
        let status = try Executables.runProcess("/bin/bash", [script, "status"])
        #expect(status.code == 0)
        #expect(status.stdout.contains("slurmctld: running") && status.stdout.contains("slurmd: running"), "\(status.stdout)")
        #expect(status.stdout.range(of: #"node \S+: (idle|mixed|allocated)"#, options: .regularExpression) != nil, "\(status.stdout)")
    }

    @Test("import-movies.sbatch -n 4 -c 2: run_mpi.sh's srun --mpi=pmix runs the seed example on ranks 0-3, slots 0-1")
    func importMoviesThroughRunMPI() throws {
        try Self.requireSlurm()
        let dir = Executables.temporaryFolder("slurm-srun")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run"), log = dir.appendingPathComponent("job.out")
        let job = try Self.sbatch(["--wait", "-n", "4", "-c", "2", "examples/slurm/import-movies.sbatch", "--samples", "40"],
                                  output: log, environment: ["RUN_DIR": run.path])
        #expect(job.code == 0, "\(job.stderr)\n\(Self.text(log))")
        #expect(Self.text(log).contains("srun --mpi=pmix -n 4"), "\(Self.text(log))")
        try Self.checkSeedRun(run, samples: 40, jobLog: log)
    }

    @Test("import-movies-mpirun.sbatch -n 4 -c 2: mpirun inside the allocation runs the seed example on ranks 0-3, slots 0-1")
    func importMoviesThroughMpirun() throws {
        try Self.requireSlurm()
        let dir = Executables.temporaryFolder("slurm-mpirun")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run"), log = dir.appendingPathComponent("job.out")
        let job = try Self.sbatch(["--wait", "-n", "4", "-c", "2", "examples/slurm/import-movies-mpirun.sbatch", "--samples", "40"],
                                  output: log, environment: ["RUN_DIR": run.path])
        #expect(job.code == 0, "\(job.stderr)\n\(Self.text(log))")
        try Self.checkSeedRun(run, samples: 40, jobLog: log)
    }

    @Test("pipeline.sbatch runs examples/fan-out.yaml: every count step and the total, which matches the words in the texts")
    func pipelineTemplate() throws {
        try Self.requireSlurm()
        let dir = Executables.temporaryFolder("slurm-pipeline")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run"), log = dir.appendingPathComponent("job.out")
        let job = try Self.sbatch(["--wait", "-n", "2", "-c", "2", "examples/slurm/pipeline.sbatch"],
                                  output: log, environment: ["RUN_DIR": run.path])
        #expect(job.code == 0, "\(job.stderr)\n\(Self.text(log))")
        let (summary, steps) = try Self.status(run)
        #expect(summary["status"] as? String == "finished" && summary["mpi"] as? Int == 2)
        let texts = try FileManager.default.contentsOfDirectory(at: Self.root.appendingPathComponent("examples/fan-out/texts"),
                                                                includingPropertiesForKeys: nil).filter { $0.pathExtension == "txt" }
        #expect(steps.count == texts.count + 1 && steps.allSatisfy { $0["status"] as? String == "finished" })
        let words = try texts.reduce(0) { sum, url in
            sum + (try String(contentsOf: url, encoding: .utf8)).split(whereSeparator: \.isWhitespace).count
        }
        let total = try String(contentsOf: run.appendingPathComponent("total.txt"), encoding: .utf8)
        #expect(total.trimmingCharacters(in: .whitespacesAndNewlines) == String(words))
    }

    /// A workflow whose first steps finish at once and whose later steps sleep NAP_SECONDS (30 in the
    /// first job), two waves of them on 4 slots: a 1-minute job is still in the middle of them when its
    /// signal comes. Each step writes when it starts and ends, with its job id.
    static let napWorkflow = """
        steps:
          - name: quick
            foreach: {from: 1, to: 4}
            shell: echo "quick-{index} start $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log" && echo "quick-{index} end $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log"
          - name: slow
            foreach: {from: 1, to: 8}
            after: [quick]
            shell: echo "slow-{index} start $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log" && sleep "$NAP_SECONDS" && echo "slow-{index} end $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log"
          - name: done
            after: [slow]
            shell: echo "done start $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log" && echo "done end $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log"

        """

    // Slurm checks time limits and --signal every 30 s (measured, Slurm 22.05), so with --time=1 and
    // --signal=B:TERM@5 the signal comes 25 to 55 s into the job, always during the slow steps (about
    // 2 to 62 s in), and the limit itself not before 60 s.
    @Test("A 1-minute job stopped by --signal=B:TERM@5 before its limit, then a --continue job chained with --dependency=afterany: every step finished, none that finished ran again")
    func timeLimitThenContinue() throws {
        try Self.requireSlurm()
        let dir = Executables.temporaryFolder("slurm-time-limit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let workflow = dir.appendingPathComponent("naps.yaml")
        try Self.napWorkflow.write(to: workflow, atomically: true, encoding: .utf8)
        let env = ["RUN_DIR": run.path, "WORKFLOW": workflow.path]
        let firstLog = dir.appendingPathComponent("first.out"), secondLog = dir.appendingPathComponent("second.out")

        let first = try Self.sbatch(["--parsable", "-n", "2", "-c", "2", "--time=1", "--signal=B:TERM@5", "examples/slurm/pipeline.sbatch"],
                                    output: firstLog, environment: env.merging(["NAP_SECONDS": "30"]) { $1 })
        #expect(first.code == 0, "\(first.stderr)")
        let firstID = try #require(first.stdout.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
        // NAP_SECONDS is not part of a step's identity (only its command and the workflow's env are), so
        // the continue may nap shorter without changing which steps count as finished.
        let second = try Self.sbatch(["--wait", "--dependency=afterany:\(firstID)", "-n", "2", "-c", "2", "examples/slurm/pipeline.sbatch", "--continue"],
                                     output: secondLog, environment: env.merging(["NAP_SECONDS": "1"]) { $1 })
        let secondID = second.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "?"
        #expect(second.code == 0, "\(second.stderr)\n\(Self.text(secondLog))")

        // The first job: ended by StepFlow itself (exit 143, the run recorded aborted) before the limit.
        let job = try Self.job(firstID)
        #expect(job["JobState"] == "FAILED" && job["ExitCode"] == "143:0", "\(job["JobState"] ?? "?") \(job["ExitCode"] ?? "?")\n\(Self.text(firstLog))")
        // scontrol prints local times without a zone.
        let format = DateFormatter()
        format.locale = Locale(identifier: "en_US_POSIX")
        format.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        if let start = job["StartTime"].flatMap({ format.date(from: $0) }), let end = job["EndTime"].flatMap({ format.date(from: $0) }) {
            #expect(end.timeIntervalSince(start) < 60, "stopped before the 1-minute limit: \(job["StartTime"]!) to \(job["EndTime"]!)")
        }
        #expect(Self.text(firstLog).contains("ABORTED (signal 15)"), "\(Self.text(firstLog))")
        #expect(Self.text(secondLog).contains("--continue"), "\(Self.text(secondLog))")

        let (summary, steps) = try Self.status(run)
        #expect(summary["status"] as? String == "finished")
        #expect(steps.count == 13 && steps.allSatisfy { $0["status"] as? String == "finished" }, "\(steps.map { "\($0["function"] ?? "?") \($0["status"] ?? "?")" })")

        // What the steps wrote: every step ended exactly once; one that ended in the first job never
        // started in the second; at least one was stopped mid-nap in the first and ran again.
        let (starts, ends) = Self.napRecords(run)
        #expect(ends.count == 13 && ends.values.allSatisfy { $0.count == 1 }, "each step ended once: \(ends)")
        let endedFirst = ends.filter { $0.value == [firstID] }.map(\.key)
        #expect(endedFirst.count >= 4, "the quick steps finished in job \(firstID): \(ends)")
        for name in endedFirst { #expect(starts[name] == [firstID], "\(name) finished in job \(firstID) and ran again: \(starts[name] ?? [])") }
        #expect(starts.contains { $0.value.first == firstID && $0.value.count == 2 && $0.value.last == secondID },
                "a step stopped in job \(firstID) ran again in job \(secondID): \(starts)")
    }

    /// Twelve naps of NAP_SECONDS after a quick step, on 4 slots, each writing when it starts and ends.
    static let napsAfterQuick = """
        steps:
          - name: quick
            shell: echo "quick start $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log" && echo "quick end $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log"
          - name: nap
            foreach: {from: 1, to: 12}
            shell: echo "nap-{index} start $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log" && sleep "$NAP_SECONDS" && echo "nap-{index} end $SLURM_JOB_ID" >> "$STEPFLOW_RUN_DIR/naps.log"

        """

    /// Who started and ended each step, by job id, from naps.log.
    static func napRecords(_ run: URL) -> (starts: [String: [String]], ends: [String: [String]]) {
        var starts: [String: [String]] = [:], ends: [String: [String]] = [:]
        for line in text(run.appendingPathComponent("naps.log")).split(separator: "\n") {
            let p = line.split(separator: " ").map(String.init)
            guard p.count == 3 else { continue }
            if p[1] == "start" { starts[p[0], default: []].append(p[2]) } else { ends[p[0], default: []].append(p[2]) }
        }
        return (starts, ends)
    }

    // A 2-minute job with --stop-before 100s: rank 0 reads the job's end from squeue and starts no step
    // later than 20 s into the job; the naps of 10 s on 4 slots start in waves at about 1 s and 11 s,
    // so a third wave is left. The template's --signal=B:TERM@5 comes at 85 s at the earliest.
    @Test("--stop-before in a 2-minute Slurm job: no step starts after the job's end minus 100 s, running steps finish, the job ends 143 and the run 'stopped'; a --continue job runs only the rest")
    func stopBeforeAllocationEnd() throws {
        try Self.requireSlurm()
        let dir = Executables.temporaryFolder("slurm-stop-before")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let workflow = dir.appendingPathComponent("naps.yaml")
        try Self.napsAfterQuick.write(to: workflow, atomically: true, encoding: .utf8)
        let env = ["RUN_DIR": run.path, "WORKFLOW": workflow.path, "NAP_SECONDS": "10"]
        let firstLog = dir.appendingPathComponent("first.out"), secondLog = dir.appendingPathComponent("second.out")

        let first = try Self.sbatch(["--wait", "-n", "2", "-c", "2", "--time=2", "--signal=B:TERM@5", "examples/slurm/pipeline.sbatch", "--stop-before", "100s"],
                                    output: firstLog, environment: env)
        let firstID = first.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "?"
        #expect(first.code == 143, "sbatch --wait gives the job's exit code: \(first.code)\n\(Self.text(firstLog))")
        let job = try Self.job(firstID)
        #expect(job["ExitCode"] == "143:0", "\(job["JobState"] ?? "?") \(job["ExitCode"] ?? "?")\n\(Self.text(firstLog))")
        #expect(Self.text(firstLog).contains("STOPPED before the allocation's end") && Self.text(firstLog).contains("(squeue)"), "\(Self.text(firstLog))")
        let (stoppedRun, stoppedSteps) = try Self.status(run)
        #expect(stoppedRun["status"] as? String == "stopped")
        let statuses = stoppedSteps.compactMap { $0["status"] as? String }
        #expect(statuses.allSatisfy { $0 == "finished" || $0 == "new" } && statuses.contains("new") && statuses.contains("finished"),
                "running steps finished, none was aborted, some were left: \(statuses)")
        let firstRecords = Self.napRecords(run)
        #expect(firstRecords.starts.keys.sorted() == firstRecords.ends.keys.sorted(), "every step that started in job \(firstID) ended: \(firstRecords)")

        let second = try Self.sbatch(["--wait", "-n", "2", "-c", "2", "examples/slurm/pipeline.sbatch", "--continue"],
                                     output: secondLog, environment: env.merging(["NAP_SECONDS": "1"]) { $1 })
        #expect(second.code == 0, "\(second.stderr)\n\(Self.text(secondLog))")
        let (summary, steps) = try Self.status(run)
        #expect(summary["status"] as? String == "finished")
        #expect(steps.count == 13 && steps.allSatisfy { $0["status"] as? String == "finished" })
        let (starts, ends) = Self.napRecords(run)
        #expect(ends.count == 13 && ends.values.allSatisfy { $0.count == 1 } && starts.values.allSatisfy { $0.count == 1 },
                "each step started and ended once over both jobs: \(starts)")
    }

    @Test("Two Slurm nodes: sbatch -N 2 --no-kill of import-movies.sbatch, node sf2 killed mid-run: the job ends COMPLETED on sf1 with every step finished, after a second job step; no step recorded finished before the loss ran again")
    func nodeLostInAllocation() throws {
        try Self.requireSlurm()
        let script = Self.root.appendingPathComponent("scripts/local-slurm.sh").path
        let two = try Executables.runProcess("/bin/bash", [script, "start", "--nodes", "2"])
        // Back to one node for the other tests, whatever happens here.
        defer { _ = try? Executables.runProcess("/bin/bash", [script, "start"]) }
        #expect(two.code == 0, "\(two.stderr)")
        // Outside /tmp: each node of the local cluster has a /tmp of its own.
        let dir = URL(fileURLWithPath: "/var/tmp").appendingPathComponent("stepflow-node-lost-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run"), log = dir.appendingPathComponent("job.out")
        let submitted = try Self.sbatch(["--parsable", "-N", "2", "-n", "4", "--ntasks-per-node=2", "-c", "2", "examples/slurm/import-movies.sbatch",
                                         "--samples", "3000", "--register-ms", "20", "--rank-timeout", "3s"],
                                        output: log, environment: ["RUN_DIR": run.path])
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(submitted.code == 0 && !id.isEmpty, "\(submitted.stderr)")
        defer { _ = try? Executables.runProcess("/usr/bin/scancel", [id]) }
        func registered() -> [String] {
            (Background.stored(run)?.steps ?? []).filter { $0.spec.function == "registerImageStep" && $0.status == .finished }
                .compactMap { $0.spec.args.first?.stringValue.map { URL(fileURLWithPath: $0).lastPathComponent + ".json" } }
        }
        #expect(Background.waitUntil(timeout: 180) { registered().count >= 300 }, "\(Self.text(log))")
        var mtimes: [String: Date] = [:]
        for name in registered() {
            mtimes[name] = try FileManager.default.attributesOfItem(atPath: run.appendingPathComponent("registered/\(name)").path)[.modificationDate] as? Date
        }
        let kill = try Executables.runProcess("/bin/bash", [script, "kill-node", "sf2"])
        #expect(kill.code == 0, "\(kill.stderr)")
        #expect(Background.waitUntil(timeout: 300) { !["RUNNING", "PENDING", "COMPLETING"].contains((try? Self.job(id))?["JobState"] ?? "") },
                "\(Self.text(log))")
        let job = try Self.job(id)
        #expect(job["JobState"] == "COMPLETED" && job["ExitCode"] == "0:0", "\(job["JobState"] ?? "?") \(job["ExitCode"] ?? "?")\n\(Self.text(log))")
        let text = Self.text(log)
        #expect(text.contains("sf2 down; relaunching on 1 node(s), 2 ranks × 2 threads (relaunch 1 of 3)")
                && text.contains("-J stepflow-") && text.contains("--overlap --exclude=sf2 -N 1"), "\(text)")
        // Accounting (slurmdbd, which the local cluster runs with several nodes) lists both launches'
        // job steps, named stepflow-<pid>-<launch>.
        var steps: [String] = []
        let accounted = Background.waitUntil(timeout: 60) {
            let listed = (try? Executables.runProcess("/usr/bin/sacct", ["-j", id, "-n", "-P", "--format=JobID,JobName,State"]))?.stdout ?? ""
            steps = listed.split(separator: "\n").map(String.init)
            // The lost node shrinks the allocation: sacct lists the job RESIZING, then COMPLETED.
            return steps.contains { $0.range(of: #"^\d+\.\d+\|stepflow-\d+-1\|"#, options: .regularExpression) != nil }
                && steps.contains { $0.range(of: #"^\d+\.\d+\|stepflow-\d+-2\|"#, options: .regularExpression) != nil }
                && steps.last?.hasSuffix("|COMPLETED") == true
        }
        #expect(accounted, "sacct -j \(id): \(steps)")
        let stored = try #require(Background.stored(run))
        #expect(stored.steps.count == 3003 && stored.steps.allSatisfy { $0.status == .finished })
        #expect(stored.launchRecords.count == 2 && stored.launchRecords[0].hosts.contains("sf2") && stored.launchRecords[1].hosts == ["sf1", "sf1"],
                "\(stored.launchRecords)")
        let rewritten = try mtimes.filter { name, before in
            try FileManager.default.attributesOfItem(atPath: run.appendingPathComponent("registered/\(name)").path)[.modificationDate] as? Date != before
        }
        #expect(rewritten.isEmpty, "\(rewritten.count) of \(mtimes.count) outputs recorded before the loss were written again")
    }
}
