import Foundation
import Testing

/// Two "hosts" on one machine: network namespaces joined over a bridge, each with its own hostname,
/// launched through a hostfile and an rsh agent (scripts/netns-hosts.sh, scripts/netns-rsh.sh), with
/// MPI over TCP between them, as on a cluster.
@Suite(.serialized) struct TwoHostTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("A run across two hosts over TCP: the seed example and a random DAG spread over both")
    func twoHosts() throws {
        let script = Self.root.appendingPathComponent("scripts/netns-hosts.sh").path
        let up = try Executables.runProcess("/bin/bash", [script, "up", "sftest"])
        if up.code != 0 {
            let reason = up.stderr.split(separator: "\n").last.map(String.init) ?? "exit \(up.code)"
            try Test.cancel("two-host test skipped: \(reason)")
        }
        defer { _ = try? Executables.runProcess("/bin/bash", [script, "down", "sftest"]) }
        let hostfile = up.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let subnet = try String(contentsOfFile: hostfile, encoding: .utf8).split(separator: "\n")
            .first { !$0.hasPrefix("#") }.map { $0.split(separator: " ")[0].split(separator: ".").prefix(3).joined(separator: ".") + ".0/24" }
        let mpiArgs = ["--hostfile", hostfile,
                       "--mca", "plm_rsh_agent", Self.root.appendingPathComponent("scripts/netns-rsh.sh").path,
                       "--mca", "btl", "tcp,self",
                       "--mca", "btl_tcp_if_include", try #require(subnet),
                       "--mca", "oob_tcp_if_include", try #require(subnet)]

        let dir = Executables.temporaryFolder("two-hosts")
        defer { try? FileManager.default.removeItem(at: dir) }
        let seedRun = dir.appendingPathComponent("seed")
        let seed = try MPILaunch.run(np: 4, "ImportMovies", ["--run-dir", seedRun.path, "--threads", "2"], extraMPIArgs: mpiArgs)
        #expect(seed.code == 0, "\(seed.stdout)\n\(seed.stderr)")
        let set = try JSONSerialization.jsonObject(with: Data(contentsOf: seedRun.appendingPathComponent("set.json"))) as! [String: Any]
        #expect((set["files"] as! [Any]).count == 20)
        #expect(try ReportJSON(runDirectory: seedRun).ranks() == [0, 1, 2, 3])

        let probeRun = dir.appendingPathComponent("probe")
        let probe = try MPILaunch.run(np: 4, "StepFlowProbe", ["--run-dir", probeRun.path, "--threads", "2", "--steps", "200"],
                                      environment: ["PROBE_RUN_DIR": probeRun.path], extraMPIArgs: mpiArgs)
        #expect(probe.code == 0, "\(probe.stdout)\n\(probe.stderr)")
        let records = try ProbeRecords(runDirectory: probeRun)
        #expect(Set(records.runs.map(\.host)).count == 2, "steps ran on both hosts: \(Set(records.runs.map(\.host)))")
        #expect(Set(records.runs.map(\.id)).count == records.runs.count, "each step ran once")
        #expect(records.runs.count == (try ReportJSON(runDirectory: probeRun)).steps.count)
    }
}
