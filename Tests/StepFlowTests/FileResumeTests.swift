import Foundation
import Testing
@testable import StepFlow
@testable import StepFlowCommand

/// S9 with files: declared inputs and outputs, their fingerprints, and `--continue` using them.
@Suite(.serialized) struct FileResumeTests {
    let workflows = WorkflowRunTests()

    @Test("XXH64 equals the reference implementation (Python xxhash 3.5) on recorded vectors, fed whole or in odd pieces")
    func xxh64() {
        let vectors: [([UInt8], UInt64)] = [
            ([], 0xEF46_DB37_51D8_E999), (Array("a".utf8), 0xD24E_C4F1_A98C_6E5B), (Array("abc".utf8), 0x44BC_2CF5_AD77_0999),
            (Array((0..<5).flatMap { _ in (0...255).map { UInt8($0) } }), 0xAFC1_84AD_7938_A354),
            ([UInt8](repeating: UInt8(ascii: "x"), count: 31), 0x60DD_0D01_083B_99F0),
            ([UInt8](repeating: UInt8(ascii: "y"), count: 32), 0x64DA_1F1D_3495_CE66),
            ([UInt8](repeating: UInt8(ascii: "z"), count: 33), 0xC524_1253_C64E_0268),
        ]
        for (bytes, expected) in vectors {
            #expect(XXH64.hash(bytes) == expected, "\(bytes.count) bytes")
            var pieces = XXH64()
            var at = 0, size = 1
            while at < bytes.count {
                let end = min(at + size, bytes.count)
                bytes[at..<end].withUnsafeBytes { pieces.update($0) }
                at = end
                size = size * 3 % 41 + 1
            }
            #expect(pieces.finish() == expected, "\(bytes.count) bytes in pieces")
        }
    }

    @Test("ContinuePlan: a finished step whose files changed runs again with its dependents and says why; the others stay finished")
    func planUsesFiles() throws {
        func step(_ id: StepID, _ after: [StepID], _ tag: UInt8) -> StepRecord {
            var r = StepRecord(id: id, spec: StepSpec(function: "f", args: [.int(id)]), prerequisites: after, insertedBy: .protocolSteps, status: .new)
            r.result = [tag]
            return r
        }
        let current = [step(1, [], 0), step(2, [1], 0), step(3, [2], 0), step(4, [], 0)].map { r in
            var r = r
            r.result = nil
            return r
        }
        let previous = [step(1, [], 1), step(2, [1], 2), step(3, [2], 3), step(4, [], 4)].map { r in
            var r = r
            r.status = .finished
            return r
        }
        let plan = try ContinuePlan(current: current, previous: previous, fileProblems: { r in
            r.result == [2] ? ["input a.txt changed (size 1 → 2)"] : []
        })
        #expect(plan.records.map(\.status) == [.finished, .new, .new, .finished])
        #expect(plan.reasons[2] == .files(["input a.txt changed (size 1 → 2)"]) && plan.reasons[3] == .prerequisiteRuns(2))
        #expect(plan.reasons[2]?.description == "input a.txt changed (size 1 → 2)")
    }

    @Test("Workflow files: an input another step declares as output makes that step (that item) a prerequisite when no after says otherwise; globs take every match; two makers of one file, or a glob output, are refused with where")
    func impliedPrerequisites() throws {
        let dir = Executables.temporaryFolder("wf-files-parse")
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = """
            steps:
              - name: make
                foreach: {from: 1, to: 3}
                shell: echo {item:q} > out/{item:q}.txt
                outputs: ["out/{item}.txt"]
              - name: use
                foreach: {from: 1, to: 3}
                shell: cat out/{item:q}.txt
                inputs: ["out/{item}.txt", "raw/{item}.dat"]
              - name: gather
                shell: cat out/*.txt
                inputs: out/*.txt
                outputs: [all.txt]
              - name: alone
                shell: "true"
                inputs: [raw/x.dat]
              - name: chained
                shell: "true"
              - name: told
                shell: "true"
                after: [make]
                inputs: [all.txt]
            """
        let w = try Workflow.parse(text: yaml, path: dir.appendingPathComponent("w.yaml").path)
        func index(_ name: String) -> Int { w.steps.firstIndex { $0.command.name == name }! }
        for i in 1...3 {
            #expect(w.steps[index("use[\(i - 1)]")].after == [index("make[\(i - 1)]")], "item \(i) needs exactly its own maker")
            #expect(w.steps[index("use[\(i - 1)]")].command.madeBy == ["out/\(i).txt": "'make[\(i - 1)]'"])
        }
        #expect(w.steps[index("gather")].after == (0..<3).map { index("make[\($0)]") })
        #expect(w.steps[index("alone")].after == [], "its input is nobody's output: it needs no step")
        #expect(w.steps[index("chained")].after == [index("alone")], "no files: the step above, as before")
        #expect(w.steps[index("told")].after == (0..<3).map { index("make[\($0)]") }, "after says otherwise")
        #expect(w.steps[index("make[0]")].command.outputs == ["out/1.txt"] && w.steps[index("gather")].command.inputs == ["out/*.txt"])

        let twice = "steps:\n  - name: a\n    shell: x\n    outputs: [f.txt]\n  - name: b\n    shell: y\n    outputs: [./f.txt]\n"
        #expect(throws: WorkflowError.self) { try Workflow.parse(text: twice, path: dir.appendingPathComponent("t.yaml").path) }
        do {
            _ = try Workflow.parse(text: twice, path: dir.appendingPathComponent("t.yaml").path)
        } catch {
            #expect("\(error)".contains("both declare the output ./f.txt") && "\(error)".contains(":7:"), "\(error)")
        }
        let globOut = "steps:\n  - name: a\n    shell: x\n    outputs: [out/*.txt]\n"
        do {
            _ = try Workflow.parse(text: globOut, path: dir.appendingPathComponent("g.yaml").path)
            Issue.record("a glob output was taken")
        } catch {
            #expect("\(error)".contains("is a glob; outputs are the files a step makes"), "\(error)")
        }
    }

    /// Runs the seed example to its end in a fresh folder.
    func finishedSeedRun(_ fingerprint: String) throws -> (dir: URL, run: URL, file: String) {
        let dir = Executables.temporaryFolder("wf-files-seed")
        let run = dir.appendingPathComponent("run")
        let file = WorkflowRunTests.root.appendingPathComponent("examples/import-movies.yaml").path
        let first = try workflows.runMPI(mpi: 2, threads: 2, file, ["--run-dir", run.path, "--fingerprint", fingerprint])
        #expect(first.code == 0, "\(first.stdout)\n\(first.stderr)")
        return (dir, run, file)
    }

    /// The names `--continue --dry-run` lists as running again, with their reasons.
    func dryRun(_ file: String, _ run: URL, _ fingerprint: String) throws -> [String: String] {
        let dry = try workflows.runMPI(mpi: 2, threads: 2, file, ["--run-dir", run.path, "--continue", "--dry-run", "--fingerprint", fingerprint])
        #expect(dry.code == 0, "\(dry.stderr)")
        var out: [String: String] = [:]
        for line in dry.stderr.split(separator: "\n") where line.hasPrefix("    ") {
            guard let open = line.firstIndex(of: "'"), let close = line[line.index(after: open)...].firstIndex(of: "'") else { continue }
            out[String(line[line.index(after: open)..<close])] = String(line[line.index(close, offsetBy: 2)...]).trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    func modified(_ folder: URL) throws -> [String: Date] {
        var out: [String: Date] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
            out[name] = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path)[.modificationDate] as? Date
        }
        return out
    }

    @Test("The seed example: one movie's bytes change → --continue --dry-run names that register step and close, --continue re-runs those two only (the other outputs keep their mtimes) and set.json has the new checksum; a deleted registered/*.json the same", arguments: ["stat", "content"])
    func seedExample(_ fingerprint: String) throws {
        let (dir, run, file) = try finishedSeedRun(fingerprint)
        defer { try? FileManager.default.removeItem(at: dir) }
        let movie = run.appendingPathComponent("movies/movie_0003.mrc")
        var bytes = try [UInt8](Data(contentsOf: movie))
        bytes[0] ^= 0x20
        Thread.sleep(forTimeInterval: 0.01)
        try Data(bytes).write(to: movie)
        let reasons = try dryRun(file, run, fingerprint)
        #expect(Set(reasons.keys) == ["register-3", "close"], "\(reasons)")
        let why = reasons["register-3"] ?? ""
        #expect(why.contains("input \(movie.path) changed") && why.contains(fingerprint == "content" ? "content (same size, other bytes)" : "modified"), "\(why)")
        #expect(reasons["close"]?.contains("its prerequisite step") == true || reasons["close"]?.contains("registered/movie_0003.mrc.json") == true)

        let registered = run.appendingPathComponent("registered")
        let before = try modified(registered)
        let again = try workflows.runMPI(mpi: 2, threads: 2, file, ["--run-dir", run.path, "--continue", "--fingerprint", fingerprint])
        #expect(again.code == 0, "\(again.stderr)")
        #expect(again.stderr.contains("21 of 23 steps stay finished"), "\(again.stderr)")
        let after = try modified(registered)
        for (name, date) in before where name != "movie_0003.mrc.json" { #expect(after[name] == date, "\(name) was written again") }
        #expect(after["movie_0003.mrc.json"] != before["movie_0003.mrc.json"])
        let sum = Self.sha256(bytes)
        let set = try String(contentsOf: run.appendingPathComponent("set.json"), encoding: .utf8)
        #expect(set.contains("\"name\": \"movie_0003.mrc\", \"sha256\": \"\(sum)\""), "\(set)")

        // Nothing changed: nothing runs. In content mode a file touched with the same bytes is unchanged.
        if fingerprint == "content" {
            let other = run.appendingPathComponent("movies/movie_0005.mrc")
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(60)], ofItemAtPath: other.path)
        }
        #expect(try dryRun(file, run, fingerprint).isEmpty)

        try FileManager.default.removeItem(at: registered.appendingPathComponent("movie_0007.mrc.json"))
        let gone = try dryRun(file, run, fingerprint)
        #expect(Set(gone.keys) == ["register-7", "close"], "\(gone)")
        #expect(gone["register-7"] == "output \(registered.path)/movie_0007.mrc.json is missing")
        let third = try workflows.runMPI(mpi: 2, threads: 2, file, ["--run-dir", run.path, "--continue", "--fingerprint", fingerprint])
        #expect(third.code == 0 && third.stderr.contains("21 of 23 steps stay finished"), "\(third.stderr)")
        #expect(FileManager.default.fileExists(atPath: registered.appendingPathComponent("movie_0007.mrc.json").path))
        // status --json shows a step's files.
        let status = try Executables.runProcess(Executables.buildFolder.appendingPathComponent("stepflow").path, ["status", run.path, "--json"])
        #expect(status.stdout.contains("\"inputs\":[{\"path\":\"\(movie.path)\""), "\(status.stdout.prefix(2000))")
        let table = try Executables.runProcess(Executables.buildFolder.appendingPathComponent("stepflow").path, ["status", run.path, "--files"])
        #expect(table.stdout.contains("input  \(movie.path) (\(HTMLText.count(bytes.count)) bytes, modified "), "\(table.stdout.prefix(2000))")
        #expect(table.stdout.contains("output $STEPFLOW_RUN_DIR/set.json ("))
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        let file = Executables.temporaryFolder("sha").appendingPathComponent("f")
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        try? Data(bytes).write(to: file)
        let out = (try? Executables.runProcess("/usr/bin/sha256sum", [file.path]).stdout) ?? ""
        return String(out.prefix(64))
    }

    @Test("An input written after its step started is noticed by the next --continue; a missing input fails its step naming the step that should have made it; a declared output not made fails the step")
    func inputsDuringAndMissing() throws {
        let dir = Executables.temporaryFolder("wf-files-during")
        defer { try? FileManager.default.removeItem(at: dir) }
        try "one\n".write(to: dir.appendingPathComponent("in.txt"), atomically: true, encoding: .utf8)
        let yaml = """
            steps:
              - name: copy
                shell: cat in.txt > out.txt; sleep 0.05; echo two >> in.txt
                inputs: [in.txt]
                outputs: [out.txt]
            """
        let file = try workflows.write(yaml, "during.yaml", in: dir)
        let run = dir.appendingPathComponent("run")
        let first = try workflows.runMPI(mpi: 1, threads: 1, file, ["--run-dir", run.path])
        #expect(first.code == 0, "\(first.stderr)")
        let reasons = try dryRun(file, run, "stat")
        #expect(reasons["copy"]?.hasPrefix("input in.txt changed (size 4 → 8)") == true, "\(reasons)")

        let broken = """
            steps:
              - name: make
                shell: "true"
                outputs: [made.txt]
              - name: use
                shell: cat made.txt
                inputs: [made.txt]
              - name: orphan
                shell: cat nowhere.txt
                inputs: [nowhere.txt]
                after: []
            """
        let brokenFile = try workflows.write(broken, "broken.yaml", in: dir)
        let brokenRun = dir.appendingPathComponent("run-broken")
        let result = try workflows.runMPI(mpi: 1, threads: 1, brokenFile, ["--run-dir", brokenRun.path, "--keep-going"])
        #expect(result.code == 1, "\(result.stderr)")
        let stored = try RunStore.read(runDirectory: brokenRun)
        let byName = Dictionary(uniqueKeysWithValues: stored.steps.map { ($0.displayName, $0) })
        #expect(byName["make"]?.status == .failed && byName["make"]?.error?.contains("finished without making its declared output made.txt") == true,
                "\(String(describing: byName["make"]?.error))")
        #expect(byName["use"]?.status == .skipped)
        #expect(byName["orphan"]?.status == .failed && byName["orphan"]?.error?.contains("its input nowhere.txt does not exist. No step of the run declares it") == true,
                "\(String(describing: byName["orphan"]?.error))")
    }

    @Test("declareFiles: a missing input names the step that should have made it; a folder or an unreadable input is refused saying why; a missing output fails the step")
    func declareErrors() throws {
        let dir = Executables.temporaryFolder("declare-errors")
        defer { try? FileManager.default.removeItem(at: dir) }
        let context = StepContext(id: 7, function: "use", args: [], rank: 0, slot: 0, gpus: [], attempt: 1, runDirectory: dir,
                                  editor: NoEdits(), functionNames: [], fingerprintContent: true)
        do {
            try context.declareFiles(inputs: [("made.txt", dir.path + "/made.txt")], outputs: [], producers: ["made.txt": "make[3]"])
            Issue.record("a missing input was taken")
        } catch {
            #expect("\(error)" == "step 7 ('use'): its input made.txt does not exist. It is an output of step 'make[3]', which should have made it: look at that step's log.")
        }
        do {
            try context.declareFiles(inputs: [("sub", dir.path)], outputs: [], producers: [:])
            Issue.record("a folder was taken")
        } catch {
            #expect("\(error)".contains("it is a folder; declare the files in it, or a glob like sub/*"), "\(error)")
        }
        let locked = dir.appendingPathComponent("locked.txt")
        try "x".write(to: locked, atomically: true, encoding: .utf8)
        chmod(locked.path, 0)
        if getuid() != 0 {
            #expect(throws: StepFilesError.self) { try context.declareFiles(inputs: [("locked.txt", locked.path)], outputs: [], producers: [:]) }
        }
        try context.declareFiles(inputs: [], outputs: [("out.txt", dir.path + "/out.txt")], producers: [:])
        #expect(throws: StepFilesError.missingOutput(step: 7, name: "use", path: "out.txt")) { try context.fingerprintOutputs() }
        try "y".write(to: dir.appendingPathComponent("out.txt"), atomically: true, encoding: .utf8)
        try context.fingerprintOutputs()
        let blob = try #require(context.resultEncoded)
        let files = try #require(StepOutcomeBlob.split(blob).files)
        #expect(files.outputs.map(\.path) == ["out.txt"] && files.outputs.first?.size == 1 && files.content)
    }

    @Test("A random 150-step file DAG with inputs and outputs and no after, under run_mpi.sh --mpi 3 --threads 2: every step ran once, after every step that wrote its inputs, and on every rank")
    func randomFileDAG() throws {
        let dir = Executables.temporaryFolder("wf-files-dag")
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededRandom(seed: 23)
        var yaml = "steps:\n"
        var inputsOf: [Int: Set<Int>] = [:]
        for i in 0..<150 {
            let k = i == 0 ? 0 : Int.random(in: 0...3, using: &rng)
            let deps = Set((0..<k).map { _ in Int.random(in: max(0, i - 40)..<i, using: &rng) })
            inputsOf[i] = deps
            yaml += "  - name: s\(i)\n"
            if !deps.isEmpty { yaml += "    inputs: [\(deps.sorted().map { "f/\($0).txt" }.joined(separator: ", "))]\n" } else { yaml += "    inputs: []\n" }
            yaml += "    outputs: [f/\(i).txt]\n"
            yaml += "    shell: s=$(date +%s.%N); sleep 0.0\(Int.random(in: 1...3, using: &rng)); e=$(date +%s.%N); "
            yaml += "echo \"$STEPFLOW_STEP_NAME $s $e $STEPFLOW_RANK\" > \"$STEPFLOW_RUN_DIR/times-$STEPFLOW_STEP_NAME\"; echo \(i) > f/\(i).txt\n"
        }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("f"), withIntermediateDirectories: true)
        let file = try workflows.write(yaml, "dag.yaml", in: dir)
        let run = dir.appendingPathComponent("run")
        let result = try workflows.runMPI(mpi: 3, threads: 2, file, ["--run-dir", run.path])
        #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
        var times: [Int: (start: Double, end: Double, rank: Int)] = [:]
        for f in try FileManager.default.contentsOfDirectory(atPath: run.path) where f.hasPrefix("times-") {
            let p = try String(contentsOf: run.appendingPathComponent(f), encoding: .utf8).split(separator: " ")
            times[Int(p[0].dropFirst())!] = (Double(p[1])!, Double(p[2])!, Int(p[3].trimmingCharacters(in: .whitespacesAndNewlines))!)
        }
        #expect(times.count == 150)
        var edges = 0
        for (i, deps) in inputsOf {
            guard let mine = times[i] else { continue }
            for d in deps {
                let before = try #require(times[d])
                #expect(before.end <= mine.start, "s\(i) started before s\(d), which writes its input, ended")
                edges += 1
            }
        }
        #expect(edges > 100)
        #expect(Set(times.values.map(\.rank)) == [0, 1, 2], "steps ran on every rank")
        // The run's graph holds exactly the implied prerequisites.
        let stored = try RunStore.read(runDirectory: run)
        let idOf = Dictionary(uniqueKeysWithValues: stored.steps.map { ($0.displayName, $0.id) })
        for r in stored.steps {
            let i = Int(r.displayName.dropFirst())!
            #expect(Set(r.prerequisites) == Set(inputsOf[i]!.map { idOf["s\($0)"]! }), "s\(i)")
        }
    }
}

/// An editor for a step context that inserts nothing (the test refuses every edit).
private struct NoEdits: GraphEditor {
    func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? { throw GraphEditError("no edits in this test") }
}
