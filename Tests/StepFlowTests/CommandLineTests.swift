import ArgumentParser
import Foundation
import Testing
@testable import StepFlow

/// A protocol whose insertAllSteps makes the mistake named on its command line.
struct MistakeProtocol: StepProtocol {
    struct Params: ParsableArguments, Sendable {
        @Option var mistake: String = "none"
    }

    let params: Params
    init(params: Params) { self.params = params }

    static let functions: StepFunctions<MistakeProtocol> = ["ok": { _, _ in }]

    mutating func insertAllSteps(_ steps: StepInserter) throws {
        try steps.insertFunctionStep("ok")
        switch params.mistake {
        case "unknown-function": try steps.insertFunctionStep("nope")
        case "missing-prerequisite": try steps.insertFunctionStep("ok", prerequisites: [7])
        case "self-prerequisite": try steps.insertFunctionStep("ok", prerequisites: [2])
        case "too-many-threads": try steps.insertFunctionStep("ok", threads: 64)
        default: break
        }
    }
}

@Suite struct CommandLineTests {
    func runMistake(_ args: [String]) throws -> (Int32, RunSetupError?) {
        let dir = Executables.temporaryFolder("mistake")
        defer { try? FileManager.default.removeItem(at: dir) }
        let all = args + ["--run-dir", dir.path, "--progress", "never"]
        let command = try ProtocolCommand<MistakeProtocol>.parse(all)
        let code = ProtocolMain.run(command)
        do {
            _ = try ProtocolRunner.runLocal(MistakeProtocol(params: command.params), settings: command.options.settings(printer: nil))
            return (code, nil)
        } catch {
            return (code, error)
        }
    }

    @Test("Bad insertions exit 2 with a message naming the step and the line", arguments: [
        ("unknown-function", "unknown step function 'nope'"),
        ("missing-prerequisite", "step 7 does not exist"),
        ("self-prerequisite", "step 2 cannot be its own prerequisite"),
        ("too-many-threads", "threads: 64"),
    ])
    func badInsertions(mistake: String, message: String) throws {
        let (code, error) = try runMistake(["--mistake", mistake])
        #expect(code == 2)
        let text = try #require(error).description
        #expect(text.contains(message), "\(text)")
        #expect(text.contains("CommandLineTests.swift:"), "the message points at the insert call: \(text)")
    }

    @Test("A protocol without mistakes exits 0")
    func noMistake() throws {
        #expect(try runMistake([]).0 == 0)
    }

    @Test("ImportMovies --threads 4 on 50 generated movies: exit 0, set.json lists all 50 with correct SHA-256")
    func importMoviesEndToEnd() throws {
        let dir = Executables.temporaryFolder("import")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let result = try Executables.run("ImportMovies", ["--threads", "4", "--samples", "50", "--run-dir", run.path])
        #expect(result.code == 0, "\(result.stderr)")
        #expect(result.stdout.contains("53 finished"), "\(result.stdout)")
        let set = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("set.json"))) as! [String: Any]
        let files = set["files"] as! [[String: Any]]
        #expect(files.count == 50)
        let names = files.map { $0["name"] as! String }
        #expect(names == names.sorted())
        // Check every checksum with the system's sha256sum, independent of the code under test.
        let movies = run.appendingPathComponent("movies")
        let expected = try Executables.sha256sums(names.map { movies.appendingPathComponent($0) })
        for f in files {
            let name = f["name"] as! String
            #expect(f["sha256"] as? String == expected[name], "\(name)")
            let size = try FileManager.default.attributesOfItem(atPath: movies.appendingPathComponent(name).path)[.size] as! Int
            #expect(f["size"] as? Int == size)
        }
    }

    @Test("ImportMovies on an --input folder registers exactly its files")
    func importMoviesInput() throws {
        let dir = Executables.temporaryFolder("input")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        for name in ["b.mrc", "a.mrc", "c.tif"] { try Data(name.utf8).write(to: input.appendingPathComponent(name)) }
        let run = dir.appendingPathComponent("run")
        let result = try Executables.run("ImportMovies", ["--input", input.path, "--run-dir", run.path, "--threads", "2"])
        #expect(result.code == 0, "\(result.stderr)")
        let set = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("set.json"))) as! [String: Any]
        #expect((set["files"] as! [[String: Any]]).map { $0["name"] as! String } == ["a.mrc", "b.mrc", "c.tif"])
    }

    static let sixtyFiveGPUs: String = [String](repeating: "0", count: 65).joined(separator: ",")

    @Test("Bad command lines exit 2 with a message saying what to do, never a crash", arguments: [
        (["--threads", "0"], "--threads must be at least 1"),
        (["--mpi", "0"], "--mpi must be at least 1"),
        (["--mpi", "3"], "mpirun -np 3"),
        (["--input", "/nonexistent/stepflow"], "is not a folder"),
        (["--input", "/etc/hostname"], "is not a folder"),
        (["--run-dir", "/etc/hostname/run"], "cannot use run directory"),
        (["--run-dir", "/proc/stepflow-run"], "cannot use run directory"),
        (["--threads", "x"], "threads"),
        (["--bogus"], "Unknown option"),
        (["--threads", "100000"], "at most 1024 worker threads per rank"),
        (["--gpus", "100000"], "each 0...4095"),
        (["--gpus", "0,GPU-3"], "GPU ids separated by commas"),
        (["--gpus", Self.sixtyFiveGPUs], "at most 64 GPUs per node"),
        (["--rank-timeout", "1s"], "3 seconds or more"),
        (["--rank-timeout", "soon"], "--rank-timeout must be a duration"),
        (["--stop-before", "5 parsecs"], "--stop-before takes a duration"),
        (["--dry-run"], "add --continue"),
        (["--crash-limit", "0"], "--crash-limit must be at least 1"),
        (["--samples", "100000000"], "--samples must be at most 100000"),
        (["--sample-kb", "0"], "--sample-kb must be between 1 and"),
    ])
    func badCommandLines(args: [String], message: String) throws {
        let dir = Executables.temporaryFolder("bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Executables.run("ImportMovies", args, cwd: dir)
        #expect(result.code == 2, "\(args): \(result.stderr)")
        #expect(result.stderr.contains(message), "\(args): \(result.stderr)")
    }

    @Test("Absurd numbers from the environment or the protocol are refused too, naming the limit and where they came from")
    func absurdDefaults() throws {
        let dir = Executables.temporaryFolder("absurd")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Executables.run("ImportMovies", ["--run-dir", dir.appendingPathComponent("run").path],
                                         environment: ["STEPFLOW_THREADS": "100000"])
        #expect(result.code == 2 && result.stderr.contains("at most 1024") && result.stderr.contains("STEPFLOW_THREADS"), "\(result.stderr)")
        var form = ProtocolForm()
        form.addParallelSection(threads: 5000, mpi: 1)
        #expect(throws: RunSetupError.self) {
            try ResolvedParallelSection.resolve(form: form, settings: RunSettings(runDirectory: dir, environment: [:]), worldSize: 1)
        }
    }

    @Test("An --input folder with a subfolder and odd names: the subfolder is skipped, every odd name is registered")
    func oddInputNames() throws {
        let dir = Executables.temporaryFolder("odd")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input.appendingPathComponent("sub folder"), withIntermediateDirectories: true)
        try Data("inside".utf8).write(to: input.appendingPathComponent("sub folder/deep.mrc"))
        let names = ["a b.mrc", "quote'\"s.mrc", "ünïcödé.mrc", "-dash.mrc", "new\nline.mrc", "$(echo no).mrc"]
        for name in names { try Data(name.utf8).write(to: input.appendingPathComponent(name)) }
        let run = dir.appendingPathComponent("run")
        let result = try Executables.run("ImportMovies", ["--input", input.path, "--run-dir", run.path, "--threads", "2"])
        #expect(result.code == 0, "\(result.stdout)\n\(result.stderr)")
        let set = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("set.json"))) as! [String: Any]
        #expect((set["files"] as! [[String: Any]]).map { $0["name"] as! String } == names.sorted())
    }

    @Test("A step's error is a sentence naming the file, not a debug dump")
    func errorSentence() throws {
        struct P: StepProtocol {
            init(params: NoParams) {}
            static let functions: StepFunctions<P> = ["read": { _, _ in _ = try Data(contentsOf: URL(fileURLWithPath: "/nonexistent/movie.mrc")) }]
            mutating func insertAllSteps(_ steps: StepInserter) throws { try steps.insertFunctionStep("read") }
        }
        let dir = Executables.temporaryFolder("sentence")
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try ProtocolRunner.runLocal(P(), settings: RunSettings(runDirectory: dir, environment: [:]))
        let error = try #require(report.records[0].error)
        #expect(!error.contains("Error Domain") && error.contains("/nonexistent/movie.mrc") && error.lowercased().contains("no such file"), "\(error)")
    }

    @Test("STEPFLOW_THREADS is a default below --threads, above the protocol's parallel section")
    func environmentDefaults() throws {
        let form = { () -> ProtocolForm in var f = ProtocolForm(); f.addParallelSection(threads: 2, mpi: 1); return f }()
        let dir = URL(fileURLWithPath: "/tmp")
        let fromEnv = try ResolvedParallelSection.resolve(form: form, settings: RunSettings(runDirectory: dir, environment: ["STEPFLOW_THREADS": "5"]), worldSize: 1)
        #expect(fromEnv.threads == 5)
        let fromFlag = try ResolvedParallelSection.resolve(form: form, settings: RunSettings(runDirectory: dir, threads: 3, environment: ["STEPFLOW_THREADS": "5"]), worldSize: 1)
        #expect(fromFlag.threads == 3)
        let fromForm = try ResolvedParallelSection.resolve(form: form, settings: RunSettings(runDirectory: dir, environment: [:]), worldSize: 1)
        #expect(fromForm.threads == 2)
        #expect(throws: RunSetupError.self) {
            try ResolvedParallelSection.resolve(form: form, settings: RunSettings(runDirectory: dir, environment: ["STEPFLOW_THREADS": "many"]), worldSize: 1)
        }
    }
}
