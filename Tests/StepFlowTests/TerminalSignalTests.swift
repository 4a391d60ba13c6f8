import Foundation
import Testing
@testable import StepFlow

/// run_mpi.sh as a terminal sees it: Ctrl-C goes to the whole foreground process group (the script and
/// everything in its group) at once, and a clean error from rank 0 is the only thing printed.
///
/// Measured on OpenMPI 4.1.4: mpirun puts every rank in a process group of its own, so the group's
/// signal reaches the script and mpirun, never the ranks; mpirun answers its first SIGINT/SIGTERM with
/// SIGCONT to the ranks, SIGTERM a second later and SIGKILL a second after that, and a second signal
/// within 5 s makes it exit at once, leaving the ranks behind.
@Suite(.serialized) struct TerminalSignalTests {
    static let runMPI = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("run_mpi.sh").path

    /// What mpirun prints when it reports on a job itself; none of it may reach the user.
    static let mpirunNoise = ["abort is already in progress", "Abort is in progress", "Primary job", "mpirun detected",
                              "mpirun noticed", "ORTE_ERROR_LOG", "-----------------", "mpirun exited with"]

    /// A process as /proc shows it, with its start time, so a reused pid is not mistaken for it.
    struct ProcessIdentity: CustomStringConvertible {
        let pid: pid_t
        let start: Substring

        init?(_ pid: pid_t) {
            guard let fields = Self.fields(pid), fields.count > 19 else { return nil }
            self.pid = pid
            start = fields[19]
        }

        /// The fields of /proc/PID/stat after the command name (which may hold spaces): state first.
        static func fields(_ pid: pid_t) -> [Substring]? {
            guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/stat") else { return nil }
            defer { try? handle.close() }
            let stat = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
            guard let close = stat.lastIndex(of: ")") else { return nil }
            return stat[stat.index(after: close)...].split(separator: " ")
        }

        var parent: pid_t? { Self.fields(pid).flatMap { $0.count > 1 ? pid_t($0[1]) : nil } }

        /// Whether it can still run. mpirun exits without reaping the ranks it killed, so they stay
        /// zombies until init reaps them: dead, just not yet collected.
        var isRunning: Bool {
            guard let fields = Self.fields(pid), fields.count > 19, fields[19] == start else { return false }
            return fields[0] != "Z" && fields[0] != "X"
        }

        var description: String { "pid \(pid) (\(Self.fields(pid)?.first ?? "gone"))" }
    }

    /// A run of the probe under run_mpi.sh, leading a process group of its own, as a shell's job. Gated
    /// (its last step waits for `<run-dir>/go`): it is live when the signal comes, however slow the machine.
    struct Job {
        let launch: Background
        let dir: URL
        let run: URL
        let args: [String]
    }

    func start(steps: Int) throws -> Job {
        let dir = Executables.temporaryFolder("terminal")
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--scenario", "gated", "--steps", String(steps), "--work-us", "50000"]
        let launch = try Background(Self.runMPI, ["--debug", "--mpi", "2", "--threads", "2", "--", "StepFlowProbe"] + args,
                                    environment: ["PROBE_RUN_DIR": run.path, "STEPFLOW_SKIP_BUILD": "1"], newProcessGroup: true)
        return Job(launch: launch, dir: dir, run: run, args: args)
    }

    /// The launch's processes once the run is well under way: both ranks (from the probe's pid files)
    /// and mpirun, their parent.
    func processes(_ job: Job) throws -> [String: ProcessIdentity] {
        #expect(Background.waitUntil { (Background.stored(job.run)?.count(.finished) ?? 0) >= 10 }, "\(job.launch.text)")
        var found: [String: ProcessIdentity] = [:]
        for rank in 0..<2 {
            let text = try String(contentsOf: job.run.appendingPathComponent("pids/rank-\(rank)"), encoding: .utf8)
            let pid = try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
            let rankProcess = try #require(ProcessIdentity(pid), "rank \(rank) (pid \(pid)) ended before the signal")
            found["rank \(rank)"] = rankProcess
        }
        let rank0 = try #require(found["rank 0"])
        let mpirun = try #require(rank0.parent)
        let mpirunProcess = try #require(ProcessIdentity(mpirun))
        found["mpirun"] = mpirunProcess
        return found
    }

    /// Nothing of the launch may outlive it: not the script's process group, not mpirun, not a rank.
    func expectNothingLeft(_ job: Job, _ processes: [String: ProcessIdentity]) {
        errno = 0
        let group = kill(-job.launch.pid, 0)
        #expect(group == -1 && errno == ESRCH, "the launch's process group outlived it")
        for (name, process) in processes.sorted(by: { $0.key < $1.key }) {
            // A rank SIGKILLed as mpirun exits may still be tearing down its threads a moment later
            // (seen under load: state R just after the launch ended); one that lives on for 3 s is left.
            let ended = Background.waitUntil(timeout: 3) { !process.isRunning }
            #expect(ended, "\(name) (\(process)) outlived the launch")
        }
        // A failed check must not leave a job running into the next test.
        for process in processes.values where process.isRunning { kill(process.pid, SIGKILL) }
        kill(-job.launch.pid, SIGKILL)
    }

    func expectNoMPIRunNoise(_ output: String) {
        for noise in Self.mpirunNoise {
            #expect(!output.contains(noise), "mpirun's '\(noise)' in the output:\n\(output)")
        }
    }

    /// `status --json` of a run: the run's status and its step counts.
    func status(_ run: URL) throws -> (status: String?, counts: [String: Int]) {
        let result = try Executables.run("StepFlowProbe", ["status", "--json", "--run-dir", run.path])
        #expect(result.code == 0, "\(result.stderr)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let info = try #require(doc["run"] as? [String: Any])
        return (info["status"] as? String, info["counts"] as? [String: Int] ?? [:])
    }

    @Test("Ctrl-C (SIGINT to the whole process group): exit 130, run aborted, nothing left, no mpirun banner")
    func ctrlC() throws {
        let job = try start(steps: 400)
        defer { try? FileManager.default.removeItem(at: job.dir) }
        let processes = try processes(job)
        job.launch.signalGroup(SIGINT)
        #expect(job.launch.wait(timeout: 30) == 130, "\(job.launch.text)")
        expectNothingLeft(job, processes)
        let stopped = try status(job.run)
        #expect(stopped.status == "aborted", "\(job.launch.text)")
        #expect(stopped.counts["running"] == 0 && (stopped.counts["finished"] ?? 0) < 401, "\(stopped.counts)")
        expectNoMPIRunNoise(job.launch.text)
    }

    @Test("Ctrl-C twice, 200 ms apart: exit 130, the run stopped mid-way, nothing left, --continue finishes the run")
    func ctrlCTwice() throws {
        let job = try start(steps: 300)
        defer { try? FileManager.default.removeItem(at: job.dir) }
        let processes = try processes(job)
        job.launch.signalGroup(SIGINT)
        // Any gap under mpirun's 5 s makes the second Ctrl-C the "exit at once" one.
        usleep(200_000)
        job.launch.signalGroup(SIGINT)
        // A launch that hung would be killed by the wait and exit 137, not 130.
        #expect(job.launch.wait(timeout: 30) == 130, "\(job.launch.text)")
        // Stopped, not run to its end: the steps' own record, where the test's clock would measure load.
        let stopped = try status(job.run)
        #expect((stopped.counts["finished"] ?? 0) < 301, "\(stopped.counts)")
        expectNothingLeft(job, processes)
        expectNoMPIRunNoise(job.launch.text)
        // The ranks were killed: what rank 0 had committed is kept, and --continue finishes the rest.
        FileManager.default.createFile(atPath: job.run.appendingPathComponent("go").path, contents: nil)
        let resumed = try MPILaunch.run(np: 2, "StepFlowProbe", job.args + ["--threads", "2", "--continue"],
                                        environment: ["PROBE_RUN_DIR": job.run.path])
        #expect(resumed.code == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        #expect(try status(job.run).counts["finished"] == 301)
    }

    @Test("A clean error from rank 0 through run_mpi.sh: exit 2, its one message, no mpirun banner")
    func cleanErrorIsQuiet() throws {
        let dir = Executables.temporaryFolder("quiet")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let launch = ["--debug", "--mpi", "2", "--threads", "2", "--", "StepFlowProbe", "--run-dir", run.path,
                      "--scenario", "sleep", "--steps", "4"]
        let finished = try Executables.runProcess(Self.runMPI, launch, environment: ["PROBE_RUN_DIR": run.path, "STEPFLOW_SKIP_BUILD": "1"])
        #expect(finished.code == 0, "\(finished.stdout)\n\(finished.stderr)")

        // The run directory holds a finished run and no --continue was given.
        let again = try Executables.runProcess(Self.runMPI, launch, environment: ["PROBE_RUN_DIR": run.path, "STEPFLOW_SKIP_BUILD": "1"])
        let output = again.stdout + again.stderr
        #expect(again.code == 2, "\(output)")
        #expect(output.components(separatedBy: "already holds a run of Probe").count == 2, "the message, once:\n\(output)")
        expectNoMPIRunNoise(output)

        // --mpi that disagrees with the launch: every rank stops, rank 0 says why.
        let mismatch = try Executables.runProcess(Self.runMPI, ["--debug", "--mpi", "2", "--", "StepFlowProbe", "--run-dir",
                                                                dir.appendingPathComponent("other").path, "--mpi", "3"])
        let said = mismatch.stdout + mismatch.stderr
        #expect(mismatch.code == 2, "\(said)")
        #expect(said.components(separatedBy: "but was launched on 2 MPI rank(s)").count == 2, "the message, once:\n\(said)")
        expectNoMPIRunNoise(said)

        // A bad flag: every rank parses the command line before MPI starts, so each one says it (that
        // is ProtocolMain's to change); mpirun adds nothing.
        let bogus = try Executables.runProcess(Self.runMPI, ["--debug", "--mpi", "2", "--", "StepFlowProbe", "--run-dir",
                                                             dir.appendingPathComponent("bogus").path, "--bogus"])
        #expect(bogus.code == 2 && bogus.stderr.contains("Unknown option '--bogus'"), "\(bogus.stderr)")
        expectNoMPIRunNoise(bogus.stdout + bogus.stderr)
    }
}
