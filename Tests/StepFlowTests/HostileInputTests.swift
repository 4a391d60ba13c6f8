import Foundation
import GRDB
import Testing
@testable import StepFlow
@testable import StepFlowCommand

/// What a workflow file, a file name, a command's output, a `STEPFLOW_INSERT` line or a damaged run
/// directory can do to the run or the machine (issue 19's review): each finding, tried as found.
@Suite(.serialized) struct HostileInputTests {
    func write(_ text: String, _ name: String, in dir: URL) throws -> String {
        let url = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func stepflow(_ args: [String], in dir: URL) throws -> ProcessResult {
        try Executables.run("stepflow", args, cwd: dir)
    }

    @Test("A file named like an option (--checkpoint-action=exec=…) reaches tar as a path (./--…), never as an option")
    func globMatchesAreNeverOptions() throws {
        let dir = Executables.temporaryFolder("hostile-dash")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for name in ["--checkpoint=1", "--checkpoint-action=exec=touch PWNED", "a.dat"] {
            #expect(FileManager.default.createFile(atPath: data.appendingPathComponent(name).path, contents: Data("x".utf8)))
        }
        _ = try write(#"steps: [{name: pack, foreach: "*", batch: 10, run: [tar, cf, "../out-{index}.tar", "{items}"]}]"#, "w.yaml", in: data)
        let run = try stepflow(["run", "w.yaml", "--run-dir", dir.appendingPathComponent("run").path, "--progress", "never"], in: data)
        #expect(run.code == 0, "\(run.stdout)\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("PWNED").path), "a file name ran as tar's option")
        let workflow = try Workflow.load(path: data.appendingPathComponent("w.yaml").path)
        #expect(workflow.steps[0].command.argv?.contains("./--checkpoint=1") == true, "\(workflow.steps[0].command.argv ?? [])")
    }

    @Test("Links planted in a run directory (run.lock, a step's log, its tail) are never followed: the files they name are left as they were")
    func plantedLinks() throws {
        let dir = Executables.temporaryFolder("hostile-links")
        defer { try? FileManager.default.removeItem(at: dir) }
        let victim = dir.appendingPathComponent("victim.txt")
        try Data("precious".utf8).write(to: victim)
        let file = try write("log_limit: 16\nsteps:\n  - name: a\n    shell: head -c 5000 /dev/zero | tr '\\\\0' x\n", "w.yaml", in: dir)
        // run.lock → victim: the lock would be written to and emptied through it.
        let run1 = dir.appendingPathComponent("run1")
        try FileManager.default.createDirectory(at: run1, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: run1.appendingPathComponent("run.lock").path, withDestinationPath: victim.path)
        let locked = try stepflow(["run", file, "--run-dir", run1.path, "--progress", "never"], in: dir)
        #expect(locked.code == 2 && locked.stderr.contains("symbolic link"), "\(locked.stdout)\(locked.stderr)")
        #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
        // A step's log and its tail → the victim: output would be appended to it, the tail overwrite it.
        let run2 = dir.appendingPathComponent("run2")
        try FileManager.default.createDirectory(at: run2.appendingPathComponent("logs"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: run2.appendingPathComponent("logs/step-1.log").path, withDestinationPath: victim.path)
        try FileManager.default.createSymbolicLink(atPath: run2.appendingPathComponent("logs/step-1.log.tail").path, withDestinationPath: victim.path)
        _ = try stepflow(["run", file, "--run-dir", run2.path, "--progress", "never"], in: dir)
        #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
        // Without the log link, the tail link alone is replaced by a file of the step's own.
        let run3 = dir.appendingPathComponent("run3")
        try FileManager.default.createDirectory(at: run3.appendingPathComponent("logs"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: run3.appendingPathComponent("logs/step-1.log.tail").path, withDestinationPath: victim.path)
        let tailed = try stepflow(["run", file, "--run-dir", run3.path, "--progress", "never"], in: dir)
        #expect(tailed.code == 0, "\(tailed.stdout)\(tailed.stderr)")
        #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
        #expect(try String(contentsOf: run3.appendingPathComponent("logs/step-1.log"), encoding: .utf8).contains("bytes of output cut here"))
    }

    @Test("Durations too long to compute with (timeout: 1e17, in the file or in an insert line) are refused with a message; nothing traps")
    func absurdDurations() throws {
        let dir = Executables.temporaryFolder("hostile-durations")
        defer { try? FileManager.default.removeItem(at: dir) }
        for field in ["timeout", "expect"] {
            let file = try write("steps:\n  - name: a\n    run: [true]\n    \(field): 1e17\n", "\(field).yaml", in: dir)
            let result = try stepflow(["validate", file], in: dir)
            #expect(result.code == 2 && result.stderr.contains("at most 10 years"), "\(result.stderr)")
        }
        let file = try write(#"steps: [{name: a, shell: "echo '{\"name\": \"x\", \"run\": [\"true\"], \"timeout\": \"1e17\"}' >> \"$STEPFLOW_INSERT\""}]"#, "insert.yaml", in: dir)
        let result = try stepflow(["run", file, "--run-dir", dir.appendingPathComponent("run").path, "--progress", "never"], in: dir)
        #expect(result.code == 1 && result.stdout.contains("at most 10 years"), "\(result.stdout)\(result.stderr)")
    }

    @Test("STEPFLOW_INSERT replaced by a FIFO or /dev/zero, or cut short (> instead of >>), fails the step at once with what to do; a flood of blank lines is read in linear time")
    func insertFileAbuse() throws {
        let dir = Executables.temporaryFolder("hostile-insert")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, String)] = [
            (#"rm "$STEPFLOW_INSERT"; mkfifo "$STEPFLOW_INSERT"; sleep 3"#, "was replaced"),
            (#"ln -sf /dev/zero "$STEPFLOW_INSERT"; sleep 3"#, "replaced"),
            (#"echo '{"name": "first", "run": ["true"]}' >> "$STEPFLOW_INSERT"; sleep 0.3; echo '{"name": "second", "run": ["true"]}' > "$STEPFLOW_INSERT"; sleep 1"#, "with >>"),
        ]
        for (n, (command, message)) in cases.enumerated() {
            let file = try write("steps:\n  - name: a\n    timeout: 20s\n    shell: '\(command.replacingOccurrences(of: "'", with: "''"))'\n", "i\(n).yaml", in: dir)
            let start = ContinuousClock.now
            let result = try stepflow(["run", file, "--run-dir", dir.appendingPathComponent("run\(n)").path, "--progress", "never"], in: dir)
            #expect(result.code == 1 && result.stdout.contains(message), "case \(n): \(result.stdout)\(result.stderr)")
            #expect(ContinuousClock.now - start < .seconds(15), "case \(n) took \(ContinuousClock.now - start)")
        }
        // 2 million blank lines, then an insert: read in linear time, and the inserted step runs.
        let flood = try write(#"steps: [{name: a, timeout: 60s, shell: "yes '' | head -n 2000000 >> \"$STEPFLOW_INSERT\"; echo '{\"name\": \"late\", \"run\": [\"true\"]}' >> \"$STEPFLOW_INSERT\""}]"#, "flood.yaml", in: dir)
        let run = dir.appendingPathComponent("flood-run")
        let result = try stepflow(["run", flood, "--run-dir", run.path, "--progress", "never"], in: dir)
        #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
        #expect(try #require(Background.stored(run)).steps.count == 2)
    }

    @Test("YAML merge keys nested through aliases (each level doubles the work) are refused quickly: in an insert line at all, in a file past a budget")
    func mergeBombs() throws {
        // level k: &ak {<<: [&a(k-1) {…}, *a(k-1)]}; 24 levels held a rank for 40 s before.
        func bomb(_ levels: Int) -> String {
            var text = "&a0 {K: v}"
            for k in 1...levels { text = "&a\(k) {<<: [\(text), *a\(k - 1)]}" }
            return text
        }
        let start = ContinuousClock.now
        #expect(throws: InsertLineError.self) {
            try InsertLine.parse(#"{"name": "x", "run": ["true"], "env": \#(bomb(24))}"#, line: 1, folder: "/tmp", logLimit: 1)
        }
        let dir = Executables.temporaryFolder("hostile-merge")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try write("steps:\n  - name: a\n    run: [true]\n    env: \(bomb(30))\n", "w.yaml", in: dir)
        let result = try stepflow(["validate", file], in: dir)
        #expect(result.code == 2 && result.stderr.contains("merge more than"), "\(result.stderr)")
        #expect(ContinuousClock.now - start < .seconds(10))
        // Merges in moderation still work.
        let fine = try write("steps:\n  - name: a\n    run: [true]\n    env: &d {MODE: fast}\n  - name: b\n    run: [true]\n    env: {<<: *d, OTHER: x}\n", "ok.yaml", in: dir)
        #expect(try Workflow.load(path: fine).steps[1].command.env == ["MODE": "fast", "OTHER": "x"])
    }

    @Test("A brace glob that stands for millions of patterns ({.,.}/ twenty times) is refused before glob expands it")
    func braceBomb() throws {
        let dir = Executables.temporaryFolder("hostile-brace")
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try write("x", "x.txt", in: dir)
        let pattern = String(repeating: "{.,.}/", count: 20) + "x.txt"
        let file = try write("steps:\n  - name: a\n    foreach: \"\(pattern)\"\n    run: [true]\n", "w.yaml", in: dir)
        let start = ContinuousClock.now
        let result = try stepflow(["validate", file], in: dir)
        #expect(result.code == 2 && result.stderr.contains("1048576 patterns"), "\(result.stderr)")
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(Foreach.braceExpansions(Array("a{b,c{d,e}}f{1,2,3}".utf8)[...]) == 9)
        #expect(Foreach.braceExpansions(Array(#"a\{b,c}"#.utf8)[...]) == 1)
    }

    /// A finished one-step run to damage.
    func finishedRun(_ dir: URL, failing: Bool = false) throws -> URL {
        let file = try write("steps:\n  - name: a\n    shell: echo hello; exit \(failing ? 3 : 0)\n", "w.yaml", in: dir)
        let run = dir.appendingPathComponent("run")
        _ = try stepflow(["run", file, "--run-dir", run.path, "--progress", "never"], in: dir)
        return run
    }

    @Test("report reads logs only from the run's logs folder: a database that points a failed step's log at another file (or a FIFO) shows none of it and never hangs")
    func reportReadsOnlyTheRunsLogs() throws {
        let dir = Executables.temporaryFolder("hostile-report")
        defer { try? FileManager.default.removeItem(at: dir) }
        let secret = try write("BEGIN PRIVATE KEY secret-text", "secret.txt", in: dir)
        let fifo = dir.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o644) == 0)
        for target in [secret, fifo] {
            let run = try finishedRun(dir, failing: true)
            defer { try? FileManager.default.removeItem(at: run) }
            let stored = try #require(Background.stored(run))
            var step = try #require(stored.steps.first)
            step.logPath = target
            let db = try DatabaseQueue(path: run.appendingPathComponent("run.db").path)
            try db.write { try $0.execute(sql: "INSERT INTO step_log (steps) VALUES (?)", arguments: [Data(StepLog.encode([step]))]) }
            let out = dir.appendingPathComponent("report.html")
            let report = try stepflow(["report", run.path, "-o", out.path], in: dir)
            #expect(report.code == 0, "\(report.stderr)")
            let page = try String(contentsOf: out, encoding: .utf8)
            #expect(!page.contains("secret-text") && page.contains("not in this run&#39;s logs folder") || page.contains("not in this run's logs folder"), "\(target)")
        }
    }

    @Test("A damaged run database (a negative prerequisite, times of 1e300 or NaN, mpi × threads past Int) gets a message or reads the times as missing; nothing traps")
    func damagedDatabase() throws {
        let dir = Executables.temporaryFolder("hostile-db")
        defer { try? FileManager.default.removeItem(at: dir) }
        func damaged(_ sql: String) throws -> URL {
            let run = try finishedRun(dir)
            try DatabaseQueue(path: run.appendingPathComponent("run.db").path).write { try $0.execute(sql: sql) }
            return run
        }
        // A row of the older per-step table with a prerequisite no step can have.
        var run = try damaged("""
            INSERT INTO step (id, function, args, prerequisites, status, wait, threads, needs_gpu, retries, inserter, attempts)
            VALUES (50, 'command', x'00', '[-1]', 'new', 0, 1, 0, 0, 'stepsCheck', 0)
            """)
        var result = try stepflow(["run", dir.appendingPathComponent("w.yaml").path, "--run-dir", run.path, "--continue", "--dry-run"], in: dir)
        #expect(result.code == 2 && result.stderr.contains("prerequisites cannot be read"), "\(result.stdout)\(result.stderr)")
        try FileManager.default.removeItem(at: run)
        for sql in ["UPDATE run SET started = 1e300, ended = 1e300", "UPDATE run SET ended = 9e999"] {
            run = try damaged(sql)
            result = try stepflow(["report", run.path, "-o", dir.appendingPathComponent("r.html").path], in: dir)
            #expect(result.code == 0, "\(sql): \(result.stderr)")
            result = try stepflow(["status", run.path], in: dir)
            #expect(result.code == 0, "\(sql): \(result.stderr)")
            try FileManager.default.removeItem(at: run)
        }
        run = try damaged("UPDATE run SET mpi = 4294967296, threads = 4294967296")
        result = try stepflow(["report", run.path, "-o", dir.appendingPathComponent("r.html").path], in: dir)
        #expect(result.code == 2 && result.stderr.contains("no run can have"), "\(result.stderr)")
    }

    @Test("Escape sequences in an insert line's names never reach the terminal raw: the line is refused, and summary and status show controls visibly")
    func terminalEscapes() throws {
        let dir = Executables.temporaryFolder("hostile-escapes")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try write(#"steps: [{name: a, shell: "printf '{\"release\": \"\\\\u001b[2J\\\\u001b]0;owned\\\\u0007\"}\\n' >> \"$STEPFLOW_INSERT\""}]"#, "w.yaml", in: dir)
        let run = dir.appendingPathComponent("run")
        let result = try stepflow(["run", file, "--run-dir", run.path, "--progress", "never"], in: dir)
        #expect(result.code == 1 && result.stdout.contains("control character"), "\(result.stdout)\(result.stderr)")
        #expect(!result.stdout.contains("\u{1b}") && !result.stderr.contains("\u{1b}"))
        let status = try stepflow(["status", run.path], in: dir)
        #expect(!status.stdout.contains("\u{1b}"))
        #expect(TerminalText.visible("a\u{1b}[2Jb\u{7}\n\tc\u{9b}") == "a^[[2Jb^G\n\tc<U+009B>")
    }

    @Test("A workflow file's error is printed once, alone: no usage banner (nothing was wrong with the command line)")
    func fileErrorWithoutUsage() throws {
        let dir = Executables.temporaryFolder("hostile-usage")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try stepflow(["run", "missing.yaml"], in: dir)
        #expect(result.code == 2 && result.stderr.contains("missing.yaml") && !result.stderr.contains("Usage:"), "\(result.stderr)")
    }

    @Test("Too-large counts are refused as given (retries/threads past 32 bits), not stored clamped")
    func countsAsGiven() throws {
        let dir = Executables.temporaryFolder("hostile-counts")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try write("steps:\n  - name: a\n    run: [true]\n    retries: 99999999999\n", "w.yaml", in: dir)
        let result = try stepflow(["validate", file], in: dir)
        #expect(result.code == 2 && result.stderr.contains("not 99999999999"), "\(result.stderr)")
        let message = StepGraphError.tooLarge(function: "f", field: "threads", value: 99_999_999_999, at: nil).description
        #expect(message.contains("99999999999"))
    }

    @Test("Report files: a killed launch's .report.json.<pid>.partial is removed by the next write; a report that cannot be created says why (not always 'permission')")
    func partialReports() throws {
        let dir = Executables.temporaryFolder("hostile-partial")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try finishedRun(dir)
        let stale = run.appendingPathComponent(".report.json.999999.partial")
        #expect(FileManager.default.createFile(atPath: stale.path, contents: Data("half".utf8)))
        let again = try stepflow(["run", dir.appendingPathComponent("w.yaml").path, "--run-dir", run.path, "--continue", "--progress", "never"], in: dir)
        #expect(again.code == 0, "\(again.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stale.path))
        let report = RunReport(outcome: .finished, records: [], config: SchedulerConfig(), wallSeconds: 0, started: 0, hookError: nil)
        do {
            try RunReportFile.write(report, protocolName: "P", to: dir.appendingPathComponent("no/such/folder"))
            Issue.record("a report was written into a folder that does not exist")
        } catch {
            #expect(ErrorText.sentence(error).contains("No such file or directory"), "\(ErrorText.sentence(error))")
        }
    }
}
