import Foundation
import Testing
@testable import StepFlow

/// Two "hosts" on one machine: network namespaces joined over a bridge, each with its own hostname,
/// launched through a hostfile and an rsh agent (scripts/netns-hosts.sh, scripts/netns-rsh.sh), with
/// MPI over TCP between them, as on a cluster.
@Suite(.serialized) struct TwoHostTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let hostsScript = root.appendingPathComponent("scripts/netns-hosts.sh").path

    /// Brings the two hosts up (or cancels the test, saying why they cannot be made here); returns
    /// the hostfile and the subnet. `down` must follow.
    func hostsUp() throws -> (hostfile: String, subnet: String) {
        let up = try Executables.runProcess("/bin/bash", [Self.hostsScript, "up", "sftest"])
        if up.code != 0 {
            let reason = up.stderr.split(separator: "\n").last.map(String.init) ?? "exit \(up.code)"
            try Test.cancel("two-host test skipped: \(reason)")
        }
        let hostfile = up.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let subnet = try String(contentsOfFile: hostfile, encoding: .utf8).split(separator: "\n")
            .first { !$0.hasPrefix("#") }.map { $0.split(separator: " ")[0].split(separator: ".").prefix(3).joined(separator: ".") + ".0/24" }
        return (hostfile, try #require(subnet))
    }

    func hostsDown() { _ = try? Executables.runProcess("/bin/bash", [Self.hostsScript, "down", "sftest"]) }

    @Test("A run across two hosts over TCP: the seed example and a random DAG spread over both")
    func twoHosts() throws {
        let (hostfile, subnet) = try hostsUp()
        defer { hostsDown() }
        let mpiArgs = ["--hostfile", hostfile,
                       "--mca", "plm_rsh_agent", Self.root.appendingPathComponent("scripts/netns-rsh.sh").path,
                       "--mca", "btl", "tcp,self",
                       "--mca", "btl_tcp_if_include", subnet,
                       "--mca", "oob_tcp_if_include", subnet]

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

    /// How host B is lost mid-run.
    enum Loss: String, CaseIterable, Sendable {
        /// Every process of host B SIGKILLed, and the host gone (its namespace deleted).
        case killed
        /// Host B's link taken down: its ranks live on, unreachable.
        case linkDown
    }

    @Test("The seed example on 3,000 movies, 4 ranks × 2 threads over two hosts; host B lost mid-run (killed, or its link down): run_mpi.sh --relaunch 2 finishes on host A alone, exit 0, no register step recorded finished before the loss ran again",
          arguments: Loss.allCases)
    func hostLost(_ loss: Loss) throws {
        let (hostfile, subnet) = try hostsUp()
        defer { hostsDown() }
        let dir = Executables.temporaryFolder("host-lost")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        // mpirun's options for these hosts, as a user's environment would hold them.
        let env = ["OMPI_MCA_plm_rsh_agent": Self.root.appendingPathComponent("scripts/netns-rsh.sh").path, "OMPI_MCA_btl": "tcp,self",
                   "OMPI_MCA_btl_tcp_if_include": subnet, "OMPI_MCA_oob_tcp_if_include": subnet]
        let launch = try Background(Self.root.appendingPathComponent("run_mpi.sh").path,
                                    ["--debug", "--hostfile", hostfile, "--mpi", "4", "--threads", "2", "--relaunch", "2", "--",
                                     "ImportMovies", "--run-dir", run.path, "--samples", "3000", "--register-ms", "20", "--rank-timeout", "3s"],
                                    environment: env, newProcessGroup: true)
        defer { if launch.isRunning { launch.signalGroup(SIGKILL) } }
        func registered() -> [String] {
            (Background.stored(run)?.steps ?? []).filter { $0.spec.function == "registerImageStep" && $0.status == .finished }
                .compactMap { $0.spec.args.first?.stringValue.map { URL(fileURLWithPath: $0).lastPathComponent + ".json" } }
        }
        #expect(Background.waitUntil(timeout: 120) { registered().count >= 300 }, "\(launch.text)")
        // What the database holds as finished before the loss, and when each output was written.
        var mtimes: [String: Date] = [:]
        for name in registered() {
            let path = run.appendingPathComponent("registered").appendingPathComponent(name).path
            mtimes[name] = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
        }
        switch loss {
        case .killed:
            _ = try Executables.runProcess("/bin/sh", ["-c", "ip netns pids sftest2 | xargs -r kill -9; ip netns del sftest2"])
        case .linkDown:
            _ = try Executables.runProcess("/bin/sh", ["-c", "ip link set sftestv2 down"])
        }
        #expect(launch.wait(timeout: 240) == 0, "\(launch.text)")
        #expect(launch.text.contains("10.231.7.2 does not answer; relaunching on 1 host(s), 2 ranks × 2 threads (relaunch 1 of 2)"), "\(launch.text)")
        let stored = try #require(Background.stored(run))
        #expect(stored.steps.count == 3003 && stored.steps.allSatisfy { $0.status == .finished })
        #expect(stored.launchRecords.count == 2, "\(stored.launchRecords)")
        #expect(Set(stored.launchRecords[0].hosts) == ["sftest1", "sftest2"], "\(stored.launchRecords[0].hosts)")
        #expect(stored.launchRecords[1].hosts == ["sftest1", "sftest1"], "the second launch ran on host A only: \(stored.launchRecords[1].hosts)")
        #expect(stored.launchRecords[1].ending == "finished")
        if loss == .linkDown { #expect(stored.launchRecords[0].ending == "rank-silent", "\(stored.launchRecords[0])") }
        var rewritten: [String] = []
        for (name, before) in mtimes {
            let path = run.appendingPathComponent("registered").appendingPathComponent(name).path
            if try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date != before { rewritten.append(name) }
        }
        #expect(rewritten.isEmpty, "\(rewritten.count) of \(mtimes.count) outputs recorded before the loss were written again")
        let set = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("set.json"))) as! [String: Any]
        #expect(set["count"] as? Int == 3000)
    }
}
