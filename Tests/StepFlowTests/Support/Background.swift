import Foundation
@testable import StepFlow

/// A launch left running while the test watches it (status while live, signals, kills).
///
/// Spawned with posix_spawn and a clean signal mask, as a shell would: the test runner's threads block
/// most signals, and a child spawned from them (Foundation's Process) would inherit that mask, so
/// SIGTERM would never reach it.
final class Background {
    let pid: pid_t
    let output: URL
    private var status: Int32?

    /// `newProcessGroup`: the launch leads a process group of its own (its pid is the group id), as a
    /// shell starts a foreground job, so a test can signal the whole group as a terminal's Ctrl-C does.
    init(_ path: String, _ args: [String], environment: [String: String] = [:], newProcessGroup: Bool = false) throws {
        output = Executables.temporaryFolder("bg").appendingPathComponent("output.txt")
        var env = ProcessInfo.processInfo.environment
        // The suite runs built binaries: run_mpi.sh must not start a build that waits on swift test's lock.
        env["STEPFLOW_SKIP_BUILD"] = "1"
        env.merge(environment) { _, new in new }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
        pid = child
    }

    /// Launches `program` under mpirun (np > 0) or alone (np == 0).
    static func launch(np: Int, _ program: String, _ args: [String], environment: [String: String] = [:]) throws -> Background {
        let binary = Executables.buildFolder.appendingPathComponent(program).path
        guard np > 0 else { return try Background(binary, args, environment: environment) }
        var mpiArgs = ["-np", String(np), "--oversubscribe", "--bind-to", "none"]
        if getuid() == 0 { mpiArgs.append("--allow-run-as-root") }
        for (k, v) in environment { mpiArgs += ["-x", "\(k)=\(v)"] }
        return try Background(MPILaunch.mpirun ?? "/usr/bin/mpirun", mpiArgs + [binary] + args, environment: environment)
    }

    /// Waits (up to `timeout`) until `condition` holds, polling every 20 ms.
    @discardableResult
    static func waitUntil(timeout: Double = 60, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            usleep(20_000)
        }
        return false
    }

    /// Whether the launch still runs.
    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        if waitpid(pid, &raw, WNOHANG) == pid {
            status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            return false
        }
        return true
    }

    /// Sends a signal to the launch.
    func signal(_ s: Int32) { kill(pid, s) }

    /// Sends a signal to the launch's process group (a launch started with `newProcessGroup`).
    func signalGroup(_ s: Int32) { kill(-pid, s) }

    /// Waits for the launch to end (killing it after `timeout`) and returns its exit code, as a shell
    /// would give it (128+signal when a signal ended it).
    func wait(timeout: Double = 120) -> Int32 {
        if !Background.waitUntil(timeout: timeout, { !isRunning }) {
            kill(pid, SIGKILL)
            Background.waitUntil(timeout: 10) { !isRunning }
        }
        return status ?? -1
    }

    var text: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// The run's steps as its database has them now (nil while there is no readable database).
    static func stored(_ runDirectory: URL) -> StoredRun? { try? RunStore.read(runDirectory: runDirectory) }
}
