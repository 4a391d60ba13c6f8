import Foundation
import Testing
@testable import StepFlow

/// `run_mpi.sh --relaunch N` (issue 20): a launch that lost ranks or nodes is followed by another with
/// --continue, on what is left, with no human; never after an ending a relaunch cannot fix.
@Suite(.serialized) struct RelaunchTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let runMPI = root.appendingPathComponent("run_mpi.sh").path

    /// run_mpi.sh with `args` in the background, in a process group of its own.
    func start(_ args: [String], environment: [String: String] = [:]) throws -> Background {
        try Background(Self.runMPI, ["--debug"] + args, environment: environment, newProcessGroup: true)
    }

    func stored(_ run: URL) throws -> StoredRun { try #require(Background.stored(run)) }

    @Test("One host: a worker rank SIGKILLed mid-run; the relaunch finishes the run on the same host, the database lists both launches and why the first ended")
    func workerKilledOnOneHost() throws {
        let dir = Executables.temporaryFolder("relaunch-one")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let launch = try start(["--mpi", "3", "--threads", "2", "--relaunch", "2", "--", "StepFlowProbe", "--run-dir", run.path,
                                "--scenario", "sleep", "--steps", "1000", "--work-us", "20000"], environment: ["PROBE_RUN_DIR": run.path])
        #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 30 }, "\(launch.text)")
        let victim = try #require(Int32(try String(contentsOf: run.appendingPathComponent("pids/rank-1"), encoding: .utf8)))
        kill(victim, SIGKILL)
        #expect(launch.wait(timeout: 120) == 0, "\(launch.text)")
        #expect(launch.text.contains("rank 1 on host") && launch.text.contains("relaunching on this machine, 3 ranks × 2 threads (relaunch 1 of 2)"), "\(launch.text)")
        let s = try stored(run)
        #expect(s.steps.count == 1000 && s.steps.allSatisfy { $0.status == .finished })
        #expect(s.launchRecords.count == 2, "\(s.launchRecords)")
        #expect(s.launchRecords.first?.ending == "signal" && s.launchRecords.first?.lostRanks == [1], "\(s.launchRecords)")
        #expect(s.launchRecords.last?.ending == "finished")
        // status and the report show the launches.
        let status = try Executables.run("stepflow", ["status", run.path])
        #expect(status.stdout.contains("launches:\n  1  ") && status.stdout.contains("3 ranks × 2 threads on ")
                && status.stdout.contains("signal: stopped by signal 15 (SIGTERM); rank 1 did not answer"), "\(status.stdout.prefix(600))")
        let page = dir.appendingPathComponent("report.html")
        #expect(try Executables.run("stepflow", ["report", run.path, "-o", page.path]).code == 0)
        let html = try String(contentsOf: page, encoding: .utf8)
        #expect(html.contains("<h2>Launches</h2>") && html.contains("finished: every step finished"))
    }

    @Test("A step that SIGKILLs its rank every time: recorded failed after --crash-limit deaths, and the relaunches stop there (3 launches, not 6)")
    func killerStopsAtCrashLimit() throws {
        let dir = Executables.temporaryFolder("relaunch-killer")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let launch = try start(["--mpi", "3", "--threads", "2", "--relaunch", "5", "--", "StepFlowProbe", "--run-dir", run.path,
                                "--scenario", "killer", "--steps", "40", "--work-us", "50000", "--crash-limit", "2"],
                               environment: ["PROBE_RUN_DIR": run.path])
        #expect(launch.wait(timeout: 180) == 1, "\(launch.text)")
        let s = try stored(run)
        #expect(s.launchRecords.count == 3, "\(s.launchRecords.map { $0.ending ?? "-" })")
        #expect(s.steps[1].status == .failed && s.steps[1].error?.contains("crash limit 2") == true)
        #expect(s.launchRecords.last?.ending == "failed")
        #expect(!launch.text.contains("relaunch 3 of 5"), "\(launch.text)")
    }

    @Test("No relaunch after an ending a relaunch cannot fix: a step failure, bad usage, SIGTERM and SIGINT from the user, --stop-before, a finished run")
    func noRelaunch() throws {
        let dir = Executables.temporaryFolder("relaunch-none")
        defer { try? FileManager.default.removeItem(at: dir) }
        func probe(_ name: String, _ extra: [String], environment: [String: String] = [:]) throws -> (Background, URL) {
            let run = dir.appendingPathComponent(name)
            let launch = try start(["--mpi", "2", "--threads", "2", "--relaunch", "3", "--", "StepFlowProbe", "--run-dir", run.path] + extra,
                                   environment: environment.merging(["PROBE_RUN_DIR": run.path]) { a, _ in a })
            return (launch, run)
        }
        // A step failure: exit 1, one launch.
        var (launch, run) = try probe("fail", ["--scenario", "fail"])
        #expect(launch.wait(timeout: 60) == 1, "\(launch.text)")
        #expect(try stored(run).launchRecords.count == 1 && !launch.text.contains("relaunch 1 of"), "\(launch.text)")
        // Bad usage: exit 2, nothing relaunched.
        (launch, run) = try probe("usage", ["--scenario", "bogus"])
        #expect(launch.wait(timeout: 60) == 2 && !launch.text.contains("relaunch 1 of"), "\(launch.text)")
        // SIGTERM and SIGINT from the user, to the script's whole process group (a terminal, a scheduler).
        for (signal, code) in [(SIGTERM, Int32(143)), (SIGINT, Int32(130))] {
            (launch, run) = try probe("signal-\(signal)", ["--scenario", "gated", "--steps", "50", "--work-us", "20000"])
            #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 5 }, "\(launch.text)")
            launch.signalGroup(signal)
            #expect(launch.wait(timeout: 60) == code, "\(launch.text)")
            #expect(try stored(run).launchRecords.count == 1 && !launch.text.contains("relaunch 1 of"), "\(launch.text)")
        }
        // --stop-before: the allocation "ends" 5 min 3 s from now, so nothing starts after 3 s.
        let end = String(Int(Date().timeIntervalSince1970) + 303)
        (launch, run) = try probe("stop-before", ["--scenario", "sleep", "--steps", "400", "--work-us", "50000", "--stop-before", "5m"],
                                  environment: ["STEPFLOW_END_TIME": end])
        let stopCode = launch.wait(timeout: 120)
        #expect(stopCode == 143, "\(launch.text)")
        let stopped = try stored(run)
        #expect(stopped.launchRecords.count == 1 && stopped.launchRecords[0].ending == "stopped", "\(stopped.launchRecords)")
        #expect(!launch.text.contains("relaunch 1 of"), "\(launch.text)")
        // A finished run: exit 0 and one launch.
        (launch, run) = try probe("finished", ["--scenario", "sleep", "--steps", "20"])
        #expect(launch.wait(timeout: 60) == 0, "\(launch.text)")
        #expect(try stored(run).launchRecords.count == 1)
    }

    @Test("S9 with a new shape: --continue on 2 ranks of a run started on 4 keeps every finished step; none runs again")
    func continueWithFewerRanks() throws {
        let dir = Executables.temporaryFolder("fewer-ranks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--scenario", "sleep", "--steps", "2000", "--work-us", "20000", "--threads", "2"]
        let first = try Background.launch(np: 4, "StepFlowProbe", args, environment: ["PROBE_RUN_DIR": run.path])
        #expect(Background.waitUntil { (Background.stored(run)?.count(.finished) ?? 0) >= 40 }, "\(first.text)")
        first.signal(SIGTERM)
        _ = first.wait(timeout: 60)
        let before = try stored(run)
        let finished = Set(before.steps.filter { $0.status == .finished }.map(\.id))
        #expect(finished.count >= 40 && finished.count < 2000)
        let probeFiles = Set(try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasPrefix("probe-") })
        let resumed = try MPILaunch.run(np: 2, "StepFlowProbe", args + ["--continue"], environment: ["PROBE_RUN_DIR": run.path])
        #expect(resumed.code == 0, "\(resumed.stdout)\(resumed.stderr)")
        let after = try stored(run)
        #expect(after.mpi == 2 && after.steps.allSatisfy { $0.status == .finished })
        #expect(after.launchRecords.map(\.mpi) == [4, 2])
        // What the second launch ran, from the probe files it wrote.
        var ranAgain: Set<Int> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: run.path) where file.hasPrefix("probe-") && !probeFiles.contains(file) {
            for line in try String(contentsOf: run.appendingPathComponent(file), encoding: .utf8).split(separator: "\n") where line.hasPrefix("run ") {
                ranAgain.insert(Int(line.split(separator: " ")[1])!)
            }
        }
        #expect(ranAgain.isDisjoint(with: finished), "finished steps ran again: \(ranAgain.intersection(finished).sorted())")
        #expect(ranAgain.count == 2000 - finished.count)
    }
}
