import Foundation
@testable import StepFlow

/// A launch in a session of its own, so a test can kill every process of it at once, as a node
/// failure or a batch system does. mpirun puts each rank in a process group of its own, so killing
/// mpirun's group would leave the ranks running; the session holds them all.
enum Session {
    /// Launches `program` under mpirun (np > 0) or alone (np == 0), in a new session.
    static func launch(np: Int, _ program: String, _ args: [String], environment: [String: String] = [:]) throws -> Background {
        let binary = Executables.buildFolder.appendingPathComponent(program).path
        var command = [binary] + args
        if np > 0 {
            var mpiArgs = ["-np", String(np), "--oversubscribe", "--bind-to", "none"]
            if getuid() == 0 { mpiArgs.append("--allow-run-as-root") }
            for (k, v) in environment { mpiArgs += ["-x", "\(k)=\(v)"] }
            command = [MPILaunch.mpirun ?? "/usr/bin/mpirun"] + mpiArgs + command
        }
        // setsid(1) run from a process that is not a group leader makes the new session itself, in
        // the same process, so the launch's pid is the session's id.
        return try Background("/usr/bin/setsid", command, environment: environment)
    }

    /// The processes of session `sid`.
    static func members(_ sid: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { name -> pid_t? in
            guard let pid = pid_t(name),
                  let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // Fields after the command name: state ppid pgrp session ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // A zombie is already dead; its parent (or init) reaps it.
            return fields.count > 3 && fields[0] != "Z" && pid_t(fields[3]) == sid ? pid : nil
        }
    }

    /// The process and everything it started, however deep (run_mpi.sh puts mpirun in a session of
    /// its own, so a session alone does not hold a whole launch).
    static func tree(_ root: pid_t) -> [pid_t] {
        var parent: [pid_t: pid_t] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, fields[0] != "Z", let ppid = pid_t(fields[1]) { parent[pid] = ppid }
        }
        var out = [root]
        var i = 0
        while i < out.count {
            out += parent.filter { $0.value == out[i] }.map(\.key)
            i += 1
        }
        return out
    }

    /// SIGKILLs a process and everything it started, all at once (none gets to react), until none is left.
    static func killTree(_ root: pid_t) {
        for _ in 0..<50 {
            let pids = tree(root).filter { kill($0, 0) == 0 }
            if pids.isEmpty { return }
            for pid in pids { kill(pid, SIGKILL) }
            usleep(20_000)
        }
    }

    /// SIGKILLs every process of session `sid` until none is left.
    static func killAll(_ sid: pid_t) {
        for _ in 0..<50 {
            let pids = members(sid)
            if pids.isEmpty { return }
            for pid in pids { kill(pid, SIGKILL) }
            usleep(20_000)
        }
    }
}
