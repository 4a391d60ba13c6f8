import Foundation
import Testing
@testable import StepFlow

/// Runs whose graph grows while they run (steps and the stepsCheck hook insert steps), killed whole
/// at random moments and continued (S9, S10, S12), checked against what the steps wrote down.
@Suite(.serialized) struct GrowingRunRecoveryTests {
    static func modified(_ url: URL) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date
    }

    /// Waits until `condition` holds on the stored run, or the launch ends.
    static func waitFor(_ run: URL, _ launch: Background, timeout: Double = 120, _ condition: (StoredRun) -> Bool) -> Bool {
        Background.waitUntil(timeout: timeout) {
            if let stored = Background.stored(run), condition(stored) { return true }
            return !launch.isRunning
        }
    }

    @Test("S12: the seed example killed whole while its download step inserts: --continue keeps every finished register step (same output file, one attempt), and --dry-run listed exactly what then ran",
          arguments: Array(UInt64(1)...5))
    func seedKilledMidInsert(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let dir = Executables.temporaryFolder("seed-kill")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--threads", "2", "--samples", "240", "--sample-kb", "512", "--progress", "never"]
        let launch = try Session.launch(np: 3, "ImportMovies", args)
        let threshold = Int.random(in: 3...20, using: &rng)
        let registered = { (s: StoredRun) in s.steps.filter { $0.spec.function == "registerImageStep" } }
        #expect(Self.waitFor(run, launch) { s in registered(s).filter { $0.status == .finished }.count >= threshold })
        Session.killAll(launch.pid)
        _ = launch.wait()

        let before = try #require(Background.stored(run))
        let download = try #require(before.steps.first { $0.spec.function == "downloadMoviesStep" })
        #expect(download.status == .running, "the kill landed while the download step was still inserting")
        #expect(registered(before).count < 240)
        var finishedBefore: [String: (id: StepID, start: Double?, mtime: Date?)] = [:]
        for r in registered(before) where r.status == .finished {
            let path = try #require(r.spec.args.first?.stringValue)
            let json = run.appendingPathComponent("registered/\(URL(fileURLWithPath: path).lastPathComponent).json")
            finishedBefore[path] = (r.id, r.start, Self.modified(json))
        }
        #expect(finishedBefore.count >= threshold)

        // What --dry-run says would run again, and that it changed nothing.
        let db = RunStore.path(in: run)
        let bytesBefore = [db, db + "-wal"].map { FileManager.default.contents(atPath: $0) }
        let dry = try MPILaunch.run(np: 3, "ImportMovies", args + ["--continue", "--dry-run"])
        #expect(dry.code == 0, "\(dry.stderr)")
        #expect([db, db + "-wal"].map { FileManager.default.contents(atPath: $0) } == bytesBefore, "a dry run writes nothing")
        let listed = Set(dry.stderr.split(separator: "\n").compactMap { line -> StepID? in
            let trimmed = line.drop { $0 == " " }
            guard line.hasPrefix("    "), let space = trimmed.firstIndex(of: " "), trimmed[space...].hasPrefix(" '") else { return nil }
            return StepID(trimmed[..<space])
        })
        let planned = try #require(dry.stderr.split(separator: "\n").first { $0.contains(" steps: ") && $0.contains("stay finished") }
            .flatMap { Int($0.split(separator: " ").first ?? "") }, "\(dry.stderr)")
        #expect(!listed.isEmpty)

        let resumed = try MPILaunch.run(np: 3, "ImportMovies", args + ["--continue"])
        #expect(resumed.code == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        let after = try #require(Background.stored(run))
        #expect(after.steps.count == 243 && after.steps.allSatisfy { $0.status == .finished })
        for (path, old) in finishedBefore {
            let r = try #require(after.steps.first { $0.spec.args.first?.stringValue == path })
            #expect(r.attempts == 1 && r.start == old.start && r.id == old.id, "\(path) ran again")
            let json = run.appendingPathComponent("registered/\(URL(fileURLWithPath: path).lastPathComponent).json")
            #expect(Self.modified(json) == old.mtime, "\(path): its output was written again")
        }
        let beforeByID = Dictionary(uniqueKeysWithValues: before.steps.map { ($0.id, $0) })
        let ran = Set(after.steps.filter { r in beforeByID[r.id].map { $0.status != .finished || $0.start != r.start } ?? true }.map(\.id))
        #expect(listed == ran.filter { $0 <= planned }, "dry run listed \(listed.sorted()), ran \(ran.sorted())")

        let set = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("set.json"))) as! [String: Any]
        let files = set["files"] as! [[String: Any]]
        #expect(files.count == 240)
        let movies = run.appendingPathComponent("movies")
        let expected = Set(try Executables.sha256sums(files.map { movies.appendingPathComponent($0["name"] as! String) }).values)
        #expect(Set(files.map { $0["sha256"] as! String }) == expected)
    }

    @Test("S12: a streaming run (the hook inserts chunks, each work step a follow-up that needs a protocol step still pending) killed whole: nothing recorded finished runs again, nothing starts before its prerequisites end",
          arguments: Array(UInt64(1)...5))
    func streamingKilled(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let dir = Executables.temporaryFolder("stream-kill")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--scenario", "stream", "--steps", "10", "--chunks", "20", "--work-us", "20000",
                    "--threads", "2", "--progress", "never"]
        let env = ["PROBE_RUN_DIR": run.path]
        let launch = try Session.launch(np: 3, "StepFlowProbe", args, environment: env)
        let threshold = Int.random(in: 10...80, using: &rng)
        #expect(Self.waitFor(run, launch) { s in s.steps.filter { $0.spec.function == "streamWork" && $0.status == .finished }.count >= threshold })
        Session.killAll(launch.pid)
        _ = launch.wait()
        let before = try #require(Background.stored(run))
        #expect(before.steps.first?.status != .finished, "the pivot step was still pending at the kill")
        let finishedBefore = Set(before.steps.filter { $0.status == .finished }.map(\.id))
        let oldFiles = Set(try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.hasPrefix("probe-") })

        let resumed = try MPILaunch.run(np: 3, "StepFlowProbe", args + ["--continue"], environment: env)
        #expect(resumed.code == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        let after = try #require(Background.stored(run))
        #expect(after.steps.count == 402 && after.steps.allSatisfy { $0.status == .finished }, "\(after.steps.count) steps")

        let probe = try ProbeRecords(runDirectory: run)
        var rerun = Set<Int>()
        for f in try FileManager.default.contentsOfDirectory(atPath: run.path) where f.hasPrefix("probe-") && !oldFiles.contains(f) {
            for line in try String(contentsOf: run.appendingPathComponent(f), encoding: .utf8).split(separator: "\n") where line.hasPrefix("run ") {
                rerun.insert(Int(line.split(separator: " ")[1])!)
            }
        }
        #expect(rerun.isDisjoint(with: finishedBefore), "recorded finished, then ran again: \(rerun.intersection(finishedBefore).sorted())")
        // A finished streaming run (its close step released by the hook) continues to nothing.
        let again = try MPILaunch.run(np: 3, "StepFlowProbe", args + ["--continue"], environment: env)
        #expect(again.code == 0 && again.stderr.contains("nothing left to run"), "\(again.stderr)")
        #expect(try ProbeRecords(runDirectory: run).runs.count == probe.runs.count, "nothing ran again")
        #expect(try #require(Background.stored(run)).steps.allSatisfy { $0.status == .finished })
        let runs = Dictionary(grouping: probe.runs, by: \.id)
        for r in after.steps {
            let mine = runs[r.id] ?? []
            #expect(!mine.isEmpty, "step \(r.id) never ran")
            for p in r.prerequisites {
                let ends = (runs[p] ?? []).map(\.end)
                for m in mine {
                    #expect(ends.contains { $0 <= m.start }, "step \(r.id) started before its prerequisite \(p) ended")
                }
            }
        }
    }

    @Test("S12: a step that kills its own rank is recorded failed after 3 deaths (--crash-limit), and the rest of the run finishes")
    func crashLimit() throws {
        let dir = Executables.temporaryFolder("crash-limit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let args = ["--run-dir", run.path, "--scenario", "killer", "--steps", "60", "--work-us", "15000", "--threads", "2", "--progress", "never"]
        let env = ["PROBE_RUN_DIR": run.path]
        for launchNumber in 1...3 {
            let result = try MPILaunch.run(np: 2, "StepFlowProbe", args + (launchNumber > 1 ? ["--continue"] : []), environment: env)
            #expect(result.code != 0)
            let killer = try #require(Background.stored(run)?.steps[1])
            #expect(killer.spec.function == "killer" && killer.status == .running, "launch \(launchNumber): \(killer.status)")
        }
        let limited = try MPILaunch.run(np: 2, "StepFlowProbe", args + ["--continue"], environment: env)
        #expect(limited.code == 1, "\(limited.stdout)\n\(limited.stderr)")
        #expect(limited.stdout.contains("died 3 times"))
        let stored = try #require(Background.stored(run))
        #expect(stored.steps[1].status == .failed && stored.steps[1].crashes == 3)
        #expect(stored.steps[2].status == .new, "its dependent did not run")
        #expect(stored.steps.filter { $0.id > 3 || $0.id == 1 }.allSatisfy { $0.status == .finished }, "the rest of the run finished")
        // Fixed (it no longer kills) and given a higher limit, it runs again.
        _ = FileManager.default.createFile(atPath: run.appendingPathComponent("spare").path, contents: nil)
        let fixed = try MPILaunch.run(np: 2, "StepFlowProbe", args + ["--continue", "--crash-limit", "5"], environment: env)
        #expect(fixed.code == 0, "\(fixed.stdout)\n\(fixed.stderr)")
    }

    @Test("Ranks whose insertAllSteps numbered different steps: every rank stops with exit 2, naming the rank; nothing is written")
    func nondeterministicInsertAllSteps() throws {
        let dir = Executables.temporaryFolder("nondeterministic")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let result = try MPILaunch.run(np: 3, "StepFlowProbe", ["--run-dir", run.path, "--scenario", "nondeterministic", "--steps", "5"],
                                       environment: ["PROBE_RUN_DIR": run.path])
        #expect(result.code == 2)
        let text = result.stdout + result.stderr
        #expect(text.contains("insertAllSteps is not deterministic: rank 2 numbered 6 steps, rank 0 numbered 5"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: RunStore.path(in: run)))
    }
}
