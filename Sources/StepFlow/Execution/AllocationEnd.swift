import Foundation

/// When the batch allocation this launch runs in ends, for `--stop-before`.
package enum AllocationEnd {
    /// Seconds since the epoch, and where it came from; nil outside an allocation whose end is known.
    /// `STEPFLOW_END_TIME` (seconds since the epoch) first, then Slurm's `SLURM_JOB_END_TIME`, then
    /// `squeue` for `SLURM_JOB_ID`.
    package static func find(_ environment: [String: String]) -> (time: Double, source: String)? {
        if let raw = environment["STEPFLOW_END_TIME"], let t = Double(raw) { return (t, "STEPFLOW_END_TIME") }
        if let raw = environment["SLURM_JOB_END_TIME"], let t = Double(raw) { return (t, "SLURM_JOB_END_TIME") }
        guard let job = environment["SLURM_JOB_ID"], !job.isEmpty else { return nil }
        // %e: the end time, in the local time zone, as YYYY-MM-DDTHH:MM:SS.
        guard let text = run("squeue", ["-h", "-j", job, "-o", "%e"], environment: environment)?
            .trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
        let parser = DateFormatter()
        parser.locale = Locale(identifier: "en_US_POSIX")
        parser.timeZone = .current
        parser.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return parser.date(from: text).map { ($0.timeIntervalSince1970, "squeue") }
    }

    /// A command's standard output, or nil when it cannot run or fails. Process spawns with
    /// posix_spawn, never fork, which an MPI rank must not do.
    private static func run(_ name: String, _ args: [String], environment: [String: String]) -> String? {
        let path = (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }
}
