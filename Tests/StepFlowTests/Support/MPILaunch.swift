import Foundation
import Testing

/// Launches package executables under a real `mpirun`, as users do.
enum MPILaunch {
    static var mpirun: String? {
        ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `program args` on `np` ranks; more ranks than cores are allowed (oversubscribed).
    static func run(np: Int, _ program: String, _ args: [String], environment: [String: String] = [:],
                    extraMPIArgs: [String] = []) throws -> ProcessResult {
        let mpirun = try #require(mpirun, "mpirun is missing: run ./scripts/test.sh, which installs openmpi-bin")
        var mpiArgs = ["-np", String(np), "--oversubscribe", "--bind-to", "none"]
        if getuid() == 0 { mpiArgs.append("--allow-run-as-root") }
        for (k, v) in environment { mpiArgs += ["-x", "\(k)=\(v)"] }
        let path = Executables.buildFolder.appendingPathComponent(program).path
        return try Executables.runProcess(mpirun, mpiArgs + extraMPIArgs + [path] + args, environment: environment)
    }
}

/// What a probe run's steps wrote down themselves (see StepFlowProbe).
struct ProbeRecords {
    struct Run {
        var id: Int, rank: Int, slot: Int, start: Double, end: Double, host: String
    }

    var runs: [Run] = []
    var plans: [Int: Set<Int>] = [:]
    var planCount = 0

    init(runDirectory: URL) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: runDirectory.path).filter { $0.hasPrefix("probe-") }
        for f in files {
            for line in try String(contentsOf: runDirectory.appendingPathComponent(f), encoding: .utf8).split(separator: "\n") {
                let p = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
                if p[0] == "run" {
                    runs.append(Run(id: Int(p[1])!, rank: Int(p[2])!, slot: Int(p[3])!, start: Double(p[4])!, end: Double(p[5])!, host: p.count > 6 ? p[6] : ""))
                } else if p[0] == "plan" {
                    planCount += 1
                    plans[Int(p[1])!] = Set(p.count > 2 ? p[2].split(separator: ",").map { Int($0)! } : [])
                }
            }
        }
    }
}

/// `<run-dir>/report.json` as the tests read it.
struct ReportJSON {
    let run: [String: Any]
    let steps: [[String: Any]]

    init(runDirectory: URL) throws {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: runDirectory.appendingPathComponent("report.json")))
        let top = try #require(object as? [String: Any])
        run = try #require(top["run"] as? [String: Any])
        steps = try #require(top["steps"] as? [[String: Any]])
    }

    var statuses: [String] { steps.map { $0["status"] as! String } }
    func ranks() -> Set<Int> { Set(steps.compactMap { $0["rank"] as? Int }) }
}
