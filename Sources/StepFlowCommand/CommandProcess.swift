import Foundation
import StepFlow

/// Why a command step failed. The text is what `status` and the summary show.
package enum CommandError: Error, CustomStringConvertible, Sendable, Equatable {
    case exited(code: Int32)
    case signaled(signal: Int32)
    case timedOut(seconds: Double)
    /// The run was stopped (a signal) while the command ran.
    case stopped
    case cannotStart(String)
    /// A line the command wrote to `STEPFLOW_INSERT` could not be used.
    case badInsert(line: Int, reason: String)
    case notACommand(StepID)
    /// Its result (`$STEPFLOW_RESULT`) could not be taken: too large, not a file, unreadable.
    case badResult(String)
    /// A declared file: an input missing when the step is due, an output it did not make.
    case files(String)

    package var description: String {
        switch self {
        case .exited(let code): return "the command exited with code \(code)"
        case .signaled(let signal):
            return "the command was killed by signal \(signal) (SIG\(Self.signalName(signal)))"
        case .timedOut(let seconds): return "timed out after \(DurationText.text(seconds)) (its process group was ended)"
        case .stopped: return "stopped: the run was stopped while the command ran (its process group was ended)"
        case .cannotStart(let why): return "the command could not start: \(why)"
        case .badInsert(let line, let reason): return "STEPFLOW_INSERT line \(line): \(reason)"
        case .notACommand(let id): return "step \(id) has no command argument; it was not inserted by a workflow"
        case .badResult(let why): return why
        case .files(let why): return why
        }
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "TERM"
        case SIGKILL: return "KILL"
        case SIGINT: return "INT"
        case SIGSEGV: return "SEGV"
        case SIGABRT: return "ABRT"
        case SIGBUS: return "BUS"
        case SIGPIPE: return "PIPE"
        case SIGHUP: return "HUP"
        case SIGFPE: return "FPE"
        case SIGILL: return "ILL"
        default: return String(signal)
        }
    }
}

/// A started command: its own process group (so a timeout or a stop ends everything it started), its
/// output read into the step's capped log by a thread of its own. Spawned with `posix_spawn`, never
/// `fork()`, which is unsafe in an MPI process.
final class CommandProcess {
    let pid: pid_t
    private let readerDone = DispatchSemaphore(value: 0)
    /// Set when the step ended but its output did not: the reader stops and closes its end.
    private let readerDetached = Cancellation()
    /// How long the output may go on after the command's group is gone: a process that left the
    /// group (`setsid`) and kept the pipe is cut off after this.
    static let outputGrace: Duration = .seconds(2)

    /// Starts `argv` (argv[0] searched in the command's PATH) in `cwd` with `environment`.
    /// - Throws: `CommandError.cannotStart` with the reason (not found, not executable, no such folder).
    init(argv: [String], cwd: String, environment: [String: String], log: CappedLog) throws(CommandError) {
        guard let first = argv.first, !first.isEmpty else { throw .cannotStart("the command is empty") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: cwd, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .cannotStart("its folder (cwd) \(cwd) does not exist")
        }
        let resolved = try Self.resolve(first, cwd: cwd, path: environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .cannotStart("no pipe for its output: \(String(cString: strerror(errno)))") }
        // Close-on-exec: the command gets the pipe as its stdout and stderr only (dup2 clears the flag).
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        // The rank's own descriptors (MPI's sockets, the run database) stay out of the command.
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        var argv = argv
        var executable = resolved
        if let chdir = Self.addChdir {
            _ = chdir(&actions, cwd)
        } else {
            // A C library without posix_spawn_file_actions_addchdir_np: coreutils' env changes folder.
            argv = ["/usr/bin/env", "-C", cwd, "--", executable] + argv.dropFirst()
            executable = "/usr/bin/env"
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        // A worker rank ignores SIGINT/SIGTERM, and ignored signals survive exec: the command must not.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, cArgv, cEnv)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw .cannotStart("\(executable): \(String(cString: strerror(rc)))")
        }
        pid = child
        ChildProcesses.add(child)
        let readEnd = fds[0]
        let done = readerDone
        let detached = readerDetached
        // The reader owns the pipe's read end: it alone reads and closes it, so the number is never
        // reused under it. It wakes every 100 ms to see whether the step let it go.
        let reader = Thread {
            // Named from inside (Foundation does not name the OS thread), so `top -H` and /proc show it.
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 {
                _ = "stepflow-output".withCString { Glibc.write(comm, $0, 15) }
                close(comm)
            }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var ready = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            while !detached.isCancelled {
                let polled = Glibc.poll(&ready, 1, 100)
                if polled < 0 && errno == EINTR { continue }
                guard polled != 0 else { continue }
                let n = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                guard n > 0 else { break }
                buffer.withUnsafeBytes { log.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
            close(readEnd)
            done.signal()
        }
        reader.start()
    }

    /// The exit status once the command ended (nil while it runs). Reaps it.
    func poll() -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        return r == pid ? status : nil
    }

    /// Sends `signal` to the command's whole process group.
    func signalGroup(_ signal: Int32) { kill(-pid, signal) }

    /// After the command itself ended: ends what it left running in its group (SIGTERM, then
    /// SIGKILL after `grace`, whatever its output is connected to), waits for the output to be read,
    /// and forgets the group once it is gone. A process that left the group and keeps the output
    /// open is cut off after `outputGrace`: nothing it writes later reaches the log.
    func finish(grace: Duration) {
        let gone = ChildProcesses.end(pid, grace: grace)
        if readerDone.wait(timeout: .now() + Self.seconds(Self.outputGrace)) == .timedOut {
            readerDetached.cancel()
            _ = readerDone.wait(timeout: .now() + 1)
        }
        // A group that survived SIGKILL stays recorded: the rank's exit tries again.
        if gone { ChildProcesses.remove(pid) }
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// The executable for `name`: a path (relative to `cwd`) when it holds a slash, else the first
    /// executable file of that name in `path`.
    static func resolve(_ name: String, cwd: String, path: String) throws(CommandError) -> String {
        if name.contains("/") {
            let full = name.hasPrefix("/") ? name : cwd + "/" + name
            guard access(full, X_OK) == 0 else {
                throw .cannotStart("\(name) \(FileManager.default.fileExists(atPath: full) ? "is not executable" : "does not exist") (in \(cwd))")
            }
            return full
        }
        for dir in path.split(separator: ":", omittingEmptySubsequences: false) {
            let base = dir.isEmpty ? cwd : dir.hasPrefix("/") ? String(dir) : cwd + "/" + dir
            let candidate = base + "/" + name
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
               access(candidate, X_OK) == 0 { return candidate }
        }
        throw .cannotStart("'\(name)' was not found in PATH (\(path)); give its full path or add its folder to PATH (env: in the workflow)")
    }

    /// glibc 2.34's `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module does not
    /// declare; nil where the C library lacks it (then the rank's descriptors rely on close-on-exec).
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// glibc 2.29's `posix_spawn_file_actions_addchdir_np` (not declared to Swift either).
    private static let addChdir: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
    }()
}
