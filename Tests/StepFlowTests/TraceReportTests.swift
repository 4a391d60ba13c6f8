import ArgumentParser
import Foundation
import Testing
@testable import StepFlow
import StepFlowCommand

/// A protocol for the trace and report tests: a spawner that inserts steps at run time (one of them a
/// command step, named by its CommandSpec), a step that logs 40 lines then fails with markup in its
/// error, a step after it (skipped with --keep-going, so it never starts), and `--steps` work steps with
/// seeded random prerequisites and durations.
struct TimelineProtocol: StepProtocol {
    struct Params: ParsableArguments, Sendable {
        @Option var steps: Int = 200
        @Option(name: .customLong("work-us")) var workMicroseconds: Int = 2000
    }

    static let hostileError = "bad <script>alert(\"x\")</script> & 'quotes' \u{1B}[31mred\u{1B}[0m"
    static let commandName = "align[3] <fast>"

    let params: Params
    init(params: Params) { self.params = params }

    static let functions: StepFunctions<TimelineProtocol> = [
        "work": { _, s in usleep(UInt32(s.args.count > 1 ? s.args[1].intValue ?? 0 : 0)) },
        "command": { _, s in usleep(1000) },
        "spawner": { p, s in
            usleep(UInt32(p.params.workMicroseconds))
            let a = try s.insertFunctionStep("work", "child-a", .int(p.params.workMicroseconds), prerequisites: [])
            try s.insertFunctionStep("work", "child-b", .int(p.params.workMicroseconds), prerequisites: [a])
            try s.insertFunctionStep("work", "child-c", .int(p.params.workMicroseconds), prerequisites: [])
            let spec = CommandSpec(name: TimelineProtocol.commandName, argv: ["true"], cwd: "/")
            try s.insertFunctionStep("command", spec.value, prerequisites: [])
        },
        "failing": { _, s in
            for i in 1...40 { s.logger.info("line \(String(format: "%02d", i)) <of> the log") }
            throw TimelineFailure()
        },
    ]

    mutating func insertAllSteps(_ steps: StepInserter) throws {
        try steps.insertFunctionStep("spawner", prerequisites: [])                    // 1
        try steps.insertFunctionStep("failing", prerequisites: [])                    // 2
        try steps.insertFunctionStep("work", "after-failure", .int(0), prerequisites: [2]) // 3, skipped
        var rng = SeededRandom(seed: 7)
        for i in 4...max(4, params.steps) {
            let k = i < 8 ? 0 : Int.random(in: 0...2, using: &rng)
            let prerequisites = (0..<k).map { _ in Int.random(in: max(4, i - 40)..<i, using: &rng) }
            let us = Int(Double(params.workMicroseconds) * Double.random(in: 0.3...3, using: &rng))
            try steps.insertFunctionStep("work", .string("w\(i)"), .int(us), prerequisites: Array(Set(prerequisites)).sorted())
        }
    }
}

struct TimelineFailure: Error, CustomStringConvertible {
    var description: String { TimelineProtocol.hostileError }
}

@Suite(.serialized) struct TraceReportTests {
    /// Runs TimelineProtocol on 2 simulated ranks × 2 threads with --keep-going; returns its run directory.
    static func makeRun(steps: Int, workMicroseconds: Int, threads: Int = 2) throws -> URL {
        let dir = Executables.temporaryFolder("timeline")
        var settings = RunSettings(runDirectory: dir, threads: threads, mpi: 2, keepGoing: true, environment: [:])
        settings.mode = .new
        let proto = TimelineProtocol(params: try .parse(["--steps", String(steps), "--work-us", String(workMicroseconds)]))
        let report = try ProtocolRunner.runLocal(proto, settings: settings, worldSize: nil)
        #expect(report.outcome == .failed)
        // To look at what the tests draw: scripts/render-report.sh on `stepflow report` of the copy.
        if let keep = ProcessInfo.processInfo.environment["STEPFLOW_KEEP_TIMELINE_RUNS"] {
            let copy = URL(fileURLWithPath: keep).appendingPathComponent("run-\(report.records.count)")
            try? FileManager.default.removeItem(at: copy)
            try FileManager.default.createDirectory(at: copy.deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: dir, to: copy)
        }
        return dir
    }

    static func events(_ json: String) throws -> [[String: Any]] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(object?["displayTimeUnit"] as? String == "ms")
        return try #require(object?["traceEvents"] as? [[String: Any]])
    }

    /// Checks the page is well-formed XML: every tag closed in order, attribute values quoted, no bare
    /// `<` and only XML's own entities. Stricter than a browser, so a stray `<` or `&` from run data
    /// fails here. (FoundationXML on Linux recovers from broken markup without a word, so it cannot tell.)
    static func wellFormed(_ html: String) -> Bool {
        var problems: [String] = []
        var stack: [String] = []
        let text = Array(html.unicodeScalars)
        var i = 0
        func at(_ prefix: String) -> Bool {
            let p = Array(prefix.unicodeScalars)
            return i + p.count <= text.count && Array(text[i..<(i + p.count)]) == p
        }
        func checkEntities(_ chunk: ArraySlice<Unicode.Scalar>, _ where_: String) {
            var s = String(String.UnicodeScalarView(chunk))
            while let amp = s.firstIndex(of: "&") {
                let rest = s[amp...]
                let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains { rest.hasPrefix($0) }
                    || rest.range(of: "^&#[0-9]+;", options: .regularExpression) != nil
                if !ok { problems.append("bare & in \(where_): \(rest.prefix(20))") }
                s = String(rest.dropFirst())
            }
        }
        var textStart = 0
        while i < text.count {
            guard text[i] == "<" else { i += 1; continue }
            checkEntities(text[textStart..<i], "text")
            if at("<!--") {
                while i < text.count && !at("-->") { i += 1 }
                i += 3
            } else if at("<!DOCTYPE") {
                while i < text.count && text[i] != ">" { i += 1 }
                i += 1
            } else {
                var j = i + 1
                var inQuote = false
                while j < text.count && (inQuote || text[j] != ">") {
                    if text[j] == "\"" { inQuote.toggle() }
                    if text[j] == "<" { problems.append("'<' inside a tag at \(j)"); break }
                    j += 1
                }
                let tag = String(String.UnicodeScalarView(text[(i + 1)..<min(j, text.count)]))
                checkEntities(text[(i + 1)..<min(j, text.count)], "a tag")
                if tag.hasPrefix("/") {
                    let name = String(tag.dropFirst())
                    if stack.popLast() != name { problems.append("</\(name)> closes nothing open at \(i)") }
                } else {
                    let name = String(tag.prefix { $0 != " " && $0 != "/" && $0 != "\n" })
                    let attributes = tag.dropFirst(name.count)
                    let unquoted = attributes.replacingOccurrences(of: "\"[^\"]*\"", with: "Q", options: .regularExpression)
                    if unquoted.range(of: "=[^Q]|=$", options: .regularExpression) != nil { problems.append("unquoted attribute in <\(tag.prefix(40))>") }
                    if name.isEmpty || name.range(of: "^[a-zA-Z][a-zA-Z0-9-]*$", options: .regularExpression) == nil {
                        problems.append("not a tag name: <\(tag.prefix(40))")
                    }
                    if !tag.hasSuffix("/") { stack.append(name) }
                }
                i = j + 1
            }
            textStart = i
            if problems.count > 5 { break }
        }
        if !stack.isEmpty { problems.append("never closed: \(stack.suffix(5))") }
        for p in problems.prefix(5) { Issue.record("report.html is not well-formed: \(p)") }
        return problems.isEmpty
    }

    static func occurrences(_ needle: String, in text: String) -> Int {
        text.components(separatedBy: needle).count - 1
    }

    static func double(_ v: Any?) -> Double { (v as? NSNumber)?.doubleValue ?? .nan }

    @Test("trace.json: one X slice per started step, rank/slot metadata, flows for run-time inserts, failed steps marked")
    func traceOfSmallRun() throws {
        let dir = try Self.makeRun(steps: 196, workMicroseconds: 2000)
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try RunStore.read(runDirectory: dir)
        #expect(run.steps.count == 200)
        let started = run.steps.filter { $0.start != nil }
        #expect(started.count == 199, "the step after the failed one never started")
        let events = try Self.events(TraceExport.json(run, label: { "L" + ($0.spec.args.first?.stringValue ?? $0.spec.function) }))

        let slices = events.filter { $0["ph"] as? String == "X" }
        #expect(slices.count == started.count)
        let sliceByID = Dictionary(slices.map { (($0["args"] as? [String: Any])?["id"] as? Int ?? -1, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(sliceByID.keys) == Set(started.map(\.id)), "exactly one slice per started step")
        #expect(sliceByID[3] == nil, "a step that never started has no slice")
        for r in started {
            let slice = try #require(sliceByID[r.id])
            let args = try #require(slice["args"] as? [String: Any])
            #expect(args["function"] as? String == r.spec.function && args["status"] as? String == r.status.rawValue)
            #expect(args["attempts"] as? Int == r.attempts && args.keys.contains("error"))
            #expect(slice["pid"] as? Int == r.rank && slice["tid"] as? Int == r.slot)
            #expect(Self.double(slice["dur"]) >= 0 && Self.double(slice["ts"]) >= 0)
        }
        #expect((sliceByID[5]?["name"] as? String) == "Lw5", "slices are named by the label closure")

        // Failed: distinct colour, and said in name and category; its error is kept as is.
        let failed = try #require(sliceByID[2])
        #expect(failed["cname"] as? String == "terrible")
        #expect((failed["name"] as? String)?.contains("failed") == true && (failed["cat"] as? String)?.contains("failed") == true)
        #expect((failed["args"] as? [String: Any])?["error"] as? String == TimelineProtocol.hostileError)
        #expect(sliceByID[4]?["cname"] == nil)

        // Metadata names every rank and every rank/slot a step ran on.
        let meta = events.filter { $0["ph"] as? String == "M" }
        let processes = Set(meta.filter { $0["name"] as? String == "process_name" }.map { ($0["pid"] as? Int ?? -9) })
        let threads = Set(meta.filter { $0["name"] as? String == "thread_name" }.map { "\($0["pid"] as? Int ?? -9)/\($0["tid"] as? Int ?? -9)" })
        #expect(processes == Set(started.compactMap(\.rank)) && processes == [0, 1])
        #expect(threads == Set(started.map { "\($0.rank!)/\($0.slot!)" }))
        for m in meta where m["name"] as? String == "process_name" {
            #expect((m["args"] as? [String: Any])?["name"] as? String == "rank \(m["pid"] as? Int ?? -1)")
        }
        for m in meta where m["name"] as? String == "thread_name" {
            #expect((m["args"] as? [String: Any])?["name"] as? String == "slot \(m["tid"] as? Int ?? -1)")
        }

        // A flow from the spawner's slice to each step it inserted, both ends inside their slices.
        let inserted = run.steps.filter { $0.insertedBy == .step(1) }
        #expect(inserted.count == 4)
        let starts = events.filter { $0["ph"] as? String == "s" }, finishes = events.filter { $0["ph"] as? String == "f" }
        #expect(starts.count == 4 && finishes.count == 4)
        #expect(Set(starts.compactMap { $0["id"] as? Int }) == Set(inserted.map(\.id)))
        #expect(Set(finishes.compactMap { $0["id"] as? Int }) == Set(inserted.map(\.id)))
        func inside(_ e: [String: Any], _ slice: [String: Any]) -> Bool {
            let t = Self.double(e["ts"]), s = Self.double(slice["ts"]), d = Self.double(slice["dur"])
            return e["pid"] as? Int == slice["pid"] as? Int && e["tid"] as? Int == slice["tid"] as? Int && t >= s && t <= s + d
        }
        let spawner = try #require(sliceByID[1])
        for s in starts { #expect(inside(s, spawner), "the arrow starts on the inserter's slice") }
        for f in finishes {
            #expect(f["bp"] as? String == "e")
            #expect(inside(f, try #require(sliceByID[f["id"] as? Int ?? -1])), "the arrow ends on the inserted step's slice")
        }
    }

    @Test("report.html: well-formed, run data escaped, summary counts, one rect per step, the failed step's log tail")
    func reportOfSmallRun() throws {
        let dir = try Self.makeRun(steps: 196, workMicroseconds: 2000)
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try RunStore.read(runDirectory: dir)
        let logs = LogTail.failedSteps(of: run, runDirectory: dir)
        let html = HTMLReport.html(run, label: { $0.spec.function + ":" + ($0.spec.args.first?.stringValue ?? "") }, logs: logs,
                                   options: .init(subtitle: dir.path))
        #expect(Self.wellFormed(html))
        #expect(!html.contains("<script"), "no script of ours, and none from the run")
        #expect(html.contains("bad &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;"))
        #expect(html.contains("\u{241B}[31mred"), "terminal escapes are shown, not passed through")
        for status in StepStatus.allCases {
            #expect(html.contains("<li class=\"count \(status.rawValue)\(run.count(status) == 0 ? " zero" : "")\"><span class=\"n\">\(run.count(status))</span>"))
        }
        #expect(run.count(.finished) == 198 && run.count(.failed) == 1 && run.count(.skipped) == 1)
        #expect(html.contains("2 × 2 = 4 slots"))
        #expect(Self.occurrences("<rect class=\"step ", in: html) == 199, "one rect per started step")
        #expect(!html.contains("class=\"bin ") && !html.contains("Aggregated view"))
        #expect(Self.occurrences("<rect class=\"step failed", in: html) == 1)
        // Tooltips name the step, its place and its duration.
        #expect(html.contains("<title>work:w5\nstep 5 · finished · rank "))

        // The log tail: the last 30 lines (the failure line the engine appends is the last).
        let log = try #require(logs[2])
        #expect(log.lines.count == 30 && log.earlierLinesOmitted)
        #expect(html.contains("line 40 &lt;of&gt; the log") && html.contains("line 12 &lt;of&gt; the log"))
        #expect(!html.contains("line 11 &lt;of&gt; the log"), "only the last 30 lines")
        #expect(html.contains("attempt 1 failed: bad &lt;script&gt;"))

        // The critical path ends at the step that ended last and is listed and outlined.
        let timeline = RunTimeline(run)
        let path = timeline.criticalPath(run)
        let lastToEnd = try #require(run.steps.max { ($0.end ?? 0) < ($1.end ?? 0) })
        #expect(run.steps[path.last!].id == lastToEnd.id)
        for (a, b) in zip(path, path.dropFirst()) {
            #expect(run.steps[b].prerequisites.contains(run.steps[a].id) || run.steps[b].insertedBy == .step(run.steps[a].id))
        }
        #expect(Self.occurrences(" crit\"", in: html) == path.count)
        #expect(html.contains("<section id=\"critical-path\">"))
    }

    @Test("A big run (20,000 steps) is drawn aggregated: bins, failed steps on top, a page under 2 MB; the trace keeps every step")
    func bigRun() throws {
        let dir = try Self.makeRun(steps: 19_996, workMicroseconds: 50, threads: 4)
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try RunStore.read(runDirectory: dir)
        let started = run.steps.filter { $0.start != nil }.count
        #expect(run.steps.count == 20_000 && started == 19_999)
        // The CPU time of this thread (the page is written on it), which other work on the machine does
        // not stretch as it stretches the wall clock: a guard against a slow algorithm, not a benchmark.
        func threadCPUSeconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        let before = threadCPUSeconds()
        let html = HTMLReport.html(run, logs: LogTail.failedSteps(of: run, runDirectory: dir))
        let took = threadCPUSeconds() - before
        #expect(took < 20, "writing the page took \(took) s of CPU")
        #expect(html.utf8.count < 2_000_000, "page is \(html.utf8.count) bytes")
        #expect(Self.wellFormed(html))
        #expect(html.contains("Aggregated view"))
        let bins = Self.occurrences("<rect class=\"bin ", in: html)
        #expect(bins > 8 && bins <= 8 * 600, "\(bins) bins on 8 lanes")
        #expect(Self.occurrences("<rect class=\"step ", in: html) == 1, "only the failed step is drawn by itself")
        #expect(html.contains("<span class=\"n\">19,998</span> finished"))
        #expect(html.contains("line 40 &lt;of&gt; the log"))

        let events = try Self.events(TraceExport.json(run))
        #expect(events.filter { $0["ph"] as? String == "X" }.count == started)
        #expect(events.filter { $0["ph"] as? String == "M" && $0["name"] as? String == "thread_name" }.count == 8)
    }

    @Test("A worst case for page size: 20,000 steps on 64 lanes, statuses mixed, 1,000 failed with long errors: still under 2 MB")
    func bigMixedRun() {
        var rng = SeededRandom(seed: 11)
        var laneEnd = [Double](repeating: 0, count: 64)
        var steps: [StepRecord] = []
        for id in 1...20_000 {
            let lane = Int.random(in: 0..<64, using: &rng)
            let status: StepStatus = id % 20 == 0 ? .failed : id % 7 == 0 ? .aborted : .finished
            var r = StepRecord(id: id, spec: StepSpec(function: "f\(id % 13)"), prerequisites: id > 1 ? [Int.random(in: max(1, id - 30)..<id, using: &rng)] : [],
                               insertedBy: .protocolSteps, status: status)
            r.start = 1000 + laneEnd[lane] + Double.random(in: 0...0.01, using: &rng)
            r.end = r.start! + Double.random(in: 0.001...0.2, using: &rng)
            laneEnd[lane] = r.end! - 1000
            (r.rank, r.slot, r.attempts) = (lane / 8, lane % 8, 1)
            if status == .failed { r.error = String(repeating: "<error & trouble> ", count: 40) }
            steps.append(r)
        }
        let run = StoredRun(protocolName: "P", params: [], status: "failed", threads: 8, mpi: 8, started: 1000,
                            ended: 1000 + laneEnd.max()!, launches: 1, steps: steps)
        let html = HTMLReport.html(run)
        #expect(html.utf8.count < 2_000_000, "page is \(html.utf8.count) bytes")
        #expect(html.contains("Aggregated view") && Self.occurrences("<rect class=\"step failed", in: html) == 1000)
        #expect(Self.wellFormed(html))
    }

    @Test("Critical path: the prerequisite chain into the last step to end with the most step time, not the most steps")
    func criticalPathChoice() throws {
        func record(_ id: Int, _ prerequisites: [Int], start: Double, end: Double?) -> StepRecord {
            var r = StepRecord(id: id, spec: StepSpec(function: "f"), prerequisites: prerequisites, insertedBy: .protocolSteps,
                               status: end == nil ? .new : .finished)
            if end != nil { r.start = 100 + start; r.end = 100 + (end ?? 0); r.rank = 0; r.slot = id % 2 }
            return r
        }
        // 1 (0–5 s) → 4; 2 (0–1) → 3 (1–2) → 4; 4 (5–6) ends last. Chain 1,4 = 6 s beats 2,3,4 = 3 s.
        // Step 5 depends on 4 but never ran; step 6 ran but is nobody's prerequisite.
        let steps = [record(1, [], start: 0, end: 5), record(2, [], start: 0, end: 1), record(3, [2], start: 1, end: 2),
                     record(4, [1, 3], start: 5, end: 6), record(5, [4], start: 0, end: nil), record(6, [], start: 0, end: 0.5)]
        let run = StoredRun(protocolName: "P", params: [], status: "finished", threads: 2, mpi: 1, started: 100, ended: 106,
                            launches: 1, steps: steps)
        let timeline = RunTimeline(run)
        #expect(timeline.criticalPath(run).map { run.steps[$0].id } == [1, 4])
        #expect(timeline.slices.count == 5 && timeline.lanes == [.init(rank: 0, slot: 0), .init(rank: 0, slot: 1)])
        // A step inserted at run time, without prerequisites, still waited for its inserter.
        var child = record(7, [], start: 6, end: 7)
        child.insertedBy = .step(2)
        let grown = StoredRun(protocolName: "P", params: [], status: "finished", threads: 2, mpi: 1, started: 100, ended: 107,
                              launches: 1, steps: steps + [child])
        #expect(RunTimeline(grown).criticalPath(grown).map { grown.steps[$0].id } == [2, 7])
        #expect(HTMLReport.html(grown).contains("<td>inserted by 2</td>"))
        // A chain of 20,000 steps is walked without recursion.
        var chain = (1...20_000).map { record($0, $0 == 1 ? [] : [$0 - 1], start: Double($0), end: Double($0) + 0.5) }
        chain[0].prerequisites = []
        let long = StoredRun(protocolName: "P", params: [], status: "finished", threads: 2, mpi: 1, started: 100, ended: 30_000,
                             launches: 1, steps: chain)
        #expect(RunTimeline(long).criticalPath(long).count == 20_000)
        // No step started: nothing to draw, and the page says so.
        let empty = StoredRun(protocolName: "P", params: [], status: "failed", threads: 1, mpi: 1, started: 100, ended: 101,
                              launches: 1, steps: [record(1, [], start: 0, end: nil)])
        #expect(RunTimeline(empty).criticalPath(empty).isEmpty)
        let html = HTMLReport.html(empty)
        #expect(html.contains("No step started") && Self.wellFormed(html))
        #expect(try Self.events(TraceExport.json(empty)).filter { $0["ph"] as? String == "X" }.isEmpty)
    }

    @Test("Log tails: the last lines only, a missing or empty log said so, a log of a moved run directory found")
    func logTails() throws {
        let dir = Executables.temporaryFolder("logtail")
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = LogTail.read(path: dir.appendingPathComponent("nope.log").path)
        #expect(missing.lines.isEmpty && missing.problem?.contains("no such file") == true)
        let emptyPath = dir.appendingPathComponent("empty.log").path
        _ = FileManager.default.createFile(atPath: emptyPath, contents: Data())
        #expect(LogTail.read(path: emptyPath).problem == "the log is empty")
        #expect(LogTail.read(path: nil).problem != nil)
        // A big log: only its end is read, and the first (partial) line is dropped.
        let bigPath = dir.appendingPathComponent("big.log").path
        let text = (1...100_000).map { "line \($0)" }.joined(separator: "\n") + "\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: bigPath))
        let big = LogTail.read(path: bigPath, lines: 30)
        #expect(big.lines == (99_971...100_000).map { "line \($0)" } && big.earlierLinesOmitted)
        let short = LogTail.read(path: bigPath, lines: 30, maxBytes: 20)
        #expect(short.lines == ["line 100000"], "a fragment at the cut is not shown as a line")

        // A run directory moved after the run: its recorded log paths point at the old place.
        var r = StepRecord(id: 7, spec: StepSpec(function: "f"), prerequisites: [], insertedBy: .protocolSteps, status: .failed)
        r.logPath = "/old/place/run/logs/launch-2/step-7.log"
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("logs/launch-2"), withIntermediateDirectories: true)
        try Data("moved\n".utf8).write(to: dir.appendingPathComponent("logs/launch-2/step-7.log"))
        let run = StoredRun(protocolName: "P", params: [], status: "failed", threads: 1, mpi: 1, started: nil, ended: nil,
                            launches: 2, steps: [r])
        let tails = LogTail.failedSteps(of: run, runDirectory: dir)
        #expect(tails[7]?.lines == ["moved"] && tails[7]?.path == dir.path + "/logs/launch-2/step-7.log")
    }

    @Test("stepflow trace/report through the built binary: exit 0 with files, command steps named; exit 2 without run.db or with an unwritable -o")
    func commandLine() throws {
        let dir = try Self.makeRun(steps: 40, workMicroseconds: 500)
        let out = Executables.temporaryFolder("timeline-out")
        defer {
            try? FileManager.default.removeItem(at: dir)
            try? FileManager.default.removeItem(at: out)
        }
        let tracePath = out.appendingPathComponent("trace.json").path, reportPath = out.appendingPathComponent("report.html").path
        let trace = try Executables.run("stepflow", ["trace", dir.path, "-o", tracePath])
        #expect(trace.code == 0, "\(trace.stderr)")
        let traceText = try String(contentsOfFile: tracePath, encoding: .utf8)
        let names = try Self.events(traceText).filter { $0["ph"] as? String == "X" }.compactMap { $0["name"] as? String }
        #expect(names.contains(TimelineProtocol.commandName), "a command step is named by its CommandSpec")
        #expect(names.contains("work") && names.contains("failing (failed)"))

        let report = try Executables.run("stepflow", ["report", "--run-dir", dir.path, "-o", reportPath])
        #expect(report.code == 0, "\(report.stderr)")
        let html = try String(contentsOfFile: reportPath, encoding: .utf8)
        #expect(Self.wellFormed(html) && html.contains("align[3] &lt;fast&gt;") && html.contains("line 40 &lt;of&gt; the log"))

        let empty = Executables.temporaryFolder("timeline-empty")
        defer { try? FileManager.default.removeItem(at: empty) }
        for command in ["trace", "report"] {
            let result = try Executables.run("stepflow", [command, empty.path, "-o", out.appendingPathComponent("x").path])
            #expect(result.code == 2 && result.stderr.contains("no run database"), "\(command): \(result.stderr)")
            let unwritable = try Executables.run("stepflow", [command, dir.path, "-o", "/nonexistent-folder/x"])
            #expect(unwritable.code == 2 && unwritable.stderr.contains("cannot write '/nonexistent-folder/x'"), "\(command): \(unwritable.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("x").path))
        let usage = try Executables.run("stepflow", ["report", dir.path, "--log-lines", "-1"])
        #expect(usage.code == 2)
    }

    @Test("stepflow bench --steps 20000 --work-us 200 --threads 4, then trace and report: every step in the trace, an aggregated page under 2 MB")
    func benchRun() throws {
        let parent = Executables.temporaryFolder("timeline-bench")
        defer { try? FileManager.default.removeItem(at: parent) }
        let dir = parent.appendingPathComponent("run")
        let bench = try Executables.run("stepflow", ["bench", "--steps", "20000", "--work-us", "200", "--threads", "4", "--run-dir", dir.path,
                                                     "--idle-ms", "20", "--raw-tasks", "10"])
        #expect(bench.code == 0, "\(bench.stderr)")
        let tracePath = parent.appendingPathComponent("trace.json").path, reportPath = parent.appendingPathComponent("report.html").path
        let trace = try Executables.run("stepflow", ["trace", dir.path, "-o", tracePath])
        let report = try Executables.run("stepflow", ["report", dir.path, "-o", reportPath])
        #expect(trace.code == 0 && report.code == 0, "\(trace.stderr) \(report.stderr)")
        let events = try Self.events(try String(contentsOfFile: tracePath, encoding: .utf8))
        #expect(events.filter { $0["ph"] as? String == "X" }.count == 20_000)
        let html = try String(contentsOfFile: reportPath, encoding: .utf8)
        #expect(html.utf8.count < 2_000_000 && html.contains("Aggregated view") && html.contains("<span class=\"n\">20,000</span> finished"))
        #expect(Self.wellFormed(html))
    }
}
