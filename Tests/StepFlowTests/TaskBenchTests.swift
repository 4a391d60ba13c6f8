import Foundation
import Testing
@testable import StepFlow
@testable import StepFlowTaskBench

/// Task Bench on StepFlow (issue 21): the graphs, kernels' counts and report lines are Task Bench's,
/// checked against what Task Bench's own MPI implementation printed for 238 commands (recorded in
/// TaskBenchReference/, from a build of StanfordLegion/task-bench at bf4ad19), and every run's tasks
/// check their inputs came from the right producers.
@Suite struct TaskBenchTotalsTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("TaskBenchReference")

    /// One recorded command: its flags, Task Bench's exit code and its report lines by label.
    struct Block {
        var flags: [String]
        var code: Int
        var lines: [String]

        func total(_ label: String) -> Int? {
            lines.first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(label + " ") }
                .flatMap { Int($0.trimmingCharacters(in: .whitespaces).dropFirst(label.count + 1).split(separator: " ").first ?? "") }
        }
    }

    static func blocks() throws -> [Block] {
        let text = try String(contentsOf: folder.appendingPathComponent("reference-totals.txt"), encoding: .utf8)
        var out: [Block] = []
        for chunk in text.components(separatedBy: "\n\n") {
            let lines = chunk.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
            guard let cmd = lines.first(where: { $0.hasPrefix("CMD: ") }), let rc = lines.first(where: { $0.hasPrefix("RC: ") }) else { continue }
            out.append(Block(flags: cmd.dropFirst(5).split(separator: " ").map(String.init), code: Int(rc.dropFirst(4)) ?? -1, lines: lines))
        }
        return out
    }

    @Test("Totals (tasks, dependencies, FLOPs, bytes, local/nonlocal) equal Task Bench's for every recorded command; every command Task Bench refused or crashed on is refused with a message")
    func totalsMatchTaskBench() throws {
        let blocks = try Self.blocks()
        #expect(blocks.count >= 230)
        var compared = 0
        for block in blocks {
            let parsed = Result { () throws(TaskBenchError) in try TaskBenchConfiguration(arguments: block.flags) }
            guard block.code == 0 else {
                if case .success = parsed { Issue.record("Task Bench refused \(block.flags.joined(separator: " ")) (exit \(block.code)); StepFlow accepted it") }
                continue
            }
            let configuration: TaskBenchConfiguration
            switch parsed {
            case .success(let c): configuration = c
            case .failure(let error):
                Issue.record("\(block.flags.joined(separator: " ")): refused (\(error)); Task Bench ran it")
                continue
            }
            let ours = configuration.report(elapsed: 1).split(separator: "\n").map(String.init)
            let mine = Block(flags: block.flags, code: 0, lines: ours)
            for label in ["Total Tasks", "Total Dependencies", "Total FLOPs", "Total Bytes", "Local Dependencies", "Nonlocal Dependencies", "Local Bytes", "Nonlocal Bytes"] {
                #expect(mine.total(label) == block.total(label), "\(block.flags.joined(separator: " ")): \(label) \(mine.total(label).map(String.init) ?? "-") vs Task Bench's \(block.total(label).map(String.init) ?? "-")")
            }
            compared += 1
        }
        #expect(compared >= 150, "\(compared) commands compared")
    }

    @Test("SipHash-2-4 draws and load_imbalance iterations equal Task Bench's recorded vectors")
    func randomVectors() throws {
        let text = try String(contentsOf: Self.folder.appendingPathComponent("reference-vectors.txt"), encoding: .utf8)
        var checked = 0
        for line in text.split(separator: "\n") where line.hasPrefix("RU ") || line.hasPrefix("LI ") {
            var fields: [String: String] = [:]
            for word in line.split(separator: " ") {
                let kv = word.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
            }
            if line.hasPrefix("RU ") {
                let seedText = fields["seed"] ?? ""
                let seed = seedText.dropFirst().dropLast().split(separator: ",").compactMap { Int($0) }
                let hashText = fields["siphash"] ?? ""
                let hash = UInt64(hashText.dropFirst(2), radix: 16)
                var bytes: [UInt8] = []
                for v in seed { withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) } }
                #expect(hash != nil && TaskBenchRandom.sipHash24(bytes, key: TaskBenchRandom.key) == hash, "\(line)")
                #expect(TaskBenchRandom.uniform(seed) == Double(fields["value"] ?? ""), "\(line)")
            } else {
                var g = TaskBenchGraph(index: Int(fields["g"] ?? "") ?? -1)
                g.kernel = .load_imbalance
                g.iterations = 1024
                g.imbalance = 0.5
                let it = g.imbalanceIterations(timestep: Int(fields["t"] ?? "") ?? -1, point: Int(fields["p"] ?? "") ?? -1)
                #expect(it == Int(fields["iterations"] ?? ""), "\(line)")
            }
            checked += 1
        }
        #expect(checked >= 25)
    }

    @Test("Every task's inputs looked up (TaskBenchInputs) equal the ones computed from the pattern, for every pattern, width and period, and with the table turned off")
    func inputsLookedUp() {
        var compared = 0
        for dependence in TaskBenchGraph.Dependence.allCases {
            for width in [2, 5, 16] {
                for period in [-1, 3] where !(dependence.needsPeriod && period < 0) {
                    var g = TaskBenchGraph()
                    g.dependence = dependence
                    g.maxWidth = width
                    g.timesteps = 12
                    g.radix = 5
                    g.period = period
                    for looked in [TaskBenchInputs(g), TaskBenchInputs(g, limit: 0)] {
                        for t in 0..<g.timesteps {
                            for p in g.points(t) {
                                #expect(looked.of(timestep: t, point: p) == g.inputs(timestep: t, point: p), "\(dependence) w\(width) period \(period) t\(t) p\(p)")
                                compared += 1
                            }
                        }
                    }
                }
            }
        }
        #expect(compared > 5_000)
    }

    @Test("A task's input check: outputs of the right producers pass; a wrong or missing input fails naming the task and the input, expected and found")
    func inputCheck() throws {
        var g = TaskBenchGraph()
        g.dependence = .stencil_1d
        g.maxWidth = 4
        g.timesteps = 3
        g.outputBytes = 48
        // Task (2, 1) reads points 0, 1, 2 of timestep 1.
        let good = [0, 1, 2].map { Optional(TaskBenchTask.output(graph: g, timestep: 1, point: $0)) }
        let out = try TaskBenchTask.execute(graph: g, timestep: 2, point: 1, inputs: good, scratch: nil)
        #expect(out == TaskBenchTask.output(graph: g, timestep: 2, point: 1) && out.count == 48)
        var swapped = good
        swapped.swapAt(0, 2)
        #expect(throws: TaskBenchInputError(message: "Task Bench detected corrupted value in task (graph 0 timestep 2 point 1) input 0: at position 0 within the buffer, expected value (timestep 1 point 0) but got (timestep 1 point 2)")) {
            _ = try TaskBenchTask.execute(graph: g, timestep: 2, point: 1, inputs: swapped, scratch: nil)
        }
        var missing = good
        missing[1] = nil
        #expect(throws: TaskBenchInputError.self) { _ = try TaskBenchTask.execute(graph: g, timestep: 2, point: 1, inputs: missing, scratch: nil) }
        #expect(throws: TaskBenchInputError.self) { _ = try TaskBenchTask.execute(graph: g, timestep: 2, point: 1, inputs: Array(good.prefix(2)), scratch: nil) }
    }
}

/// Task Bench graphs run on StepFlow, where every task checks its inputs (order, producers).
@Suite(.serialized) struct TaskBenchRunTests {
    /// The totals `stepflow taskbench` printed, by label.
    static func printedTotals(_ output: String) -> [String: Int] {
        var out: [String: Int] = [:]
        for line in output.split(separator: "\n") {
            for label in ["Total Tasks", "Total Dependencies", "Total FLOPs", "Total Bytes"] where line.hasPrefix(label + " ") {
                out[label] = Int(line.dropFirst(label.count + 1))
            }
        }
        return out
    }

    static let patterns: [[String]] = [
        ["-type", "trivial"], ["-type", "no_comm"], ["-type", "stencil_1d"], ["-type", "stencil_1d_periodic"], ["-type", "dom"],
        ["-type", "tree"], ["-type", "fft"], ["-type", "all_to_all"], ["-type", "nearest", "-radix", "5"],
        ["-type", "spread", "-radix", "3", "-period", "2"], ["-type", "random_nearest", "-radix", "5", "-period", "3", "-fraction", "0.5"],
    ]

    @Test("Every pattern under real mpirun -np 2 (threads 2): every task's input check passes, and the printed totals are the graph's", arguments: patterns)
    func everyPatternOnMPI(_ pattern: [String]) throws {
        let dir = Executables.temporaryFolder("taskbench")
        defer { try? FileManager.default.removeItem(at: dir) }
        let flags = ["-steps", "12", "-width", "8"] + pattern + ["-kernel", "compute_bound", "-iter", "64", "-output", "48"]
        let result = try MPILaunch.run(np: 2, "stepflow", ["taskbench", "--run-dir", dir.path, "--threads", "2"] + flags)
        #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
        let expected = try TaskBenchConfiguration(arguments: flags).totals
        let printed = Self.printedTotals(result.stdout)
        #expect(printed["Total Tasks"] == expected.tasks && printed["Total Dependencies"] == expected.dependencies
                && printed["Total FLOPs"] == expected.flops, "\(printed) vs \(expected)")
        #expect(result.stdout.contains("Running Task Benchmark") && result.stdout.contains("Elapsed Time ") && result.stdout.contains("FLOP/s "))
    }

    @Test("Two graphs (-and) with memory_bound (scratch) and load_imbalance kernels under mpirun -np 3: inputs pass, totals match")
    func kernelsAndGraphs() throws {
        let dir = Executables.temporaryFolder("taskbench-and")
        defer { try? FileManager.default.removeItem(at: dir) }
        let flags = ["-steps", "10", "-width", "8", "-type", "nearest", "-radix", "3", "-kernel", "memory_bound", "-scratch", "8192", "-iter", "16",
                     "-output", "64", "-and", "-steps", "10", "-width", "8", "-type", "stencil_1d", "-kernel", "load_imbalance", "-iter", "1024",
                     "-imbalance", "0.5"]
        let result = try MPILaunch.run(np: 3, "stepflow", ["taskbench", "--run-dir", dir.path, "--threads", "2"] + flags)
        #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
        let expected = try TaskBenchConfiguration(arguments: flags).totals
        #expect(Self.printedTotals(result.stdout) == ["Total Tasks": expected.tasks, "Total Dependencies": expected.dependencies,
                                                        "Total FLOPs": expected.flops, "Total Bytes": expected.bytes])
    }

    @Test("Bad flags exit 2 with Task Bench's message, once, without usage noise")
    func badFlags() throws {
        let result = try Executables.run("stepflow", ["taskbench", "-steps", "0"])
        #expect(result.code == 2 && result.stderr == "error: Invalid flag \"-steps 0\" must be > 0\n", "\(result.stderr)")
        let spread = try Executables.run("stepflow", ["taskbench", "-type", "spread", "-width", "4"])
        #expect(spread.code == 2 && spread.stderr.contains("requires a period that is at most 2"), "\(spread.stderr)")
    }

    /// A seeded random Task Bench command: a random_nearest graph (sometimes another pattern too, by
    /// -and), random shape, radix, period and fraction.
    static func randomFlags(_ rng: inout SeededRandom) -> [String] {
        func pick(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(rng.next() % UInt64(range.count)) }
        var flags: [String] = []
        for graph in 0..<pick(1...2) {
            if graph > 0 { flags.append("-and") }
            let width = pick(1...12)
            flags += ["-steps", String(pick(1...12)), "-width", String(width)]
            if graph == 0 || rng.next() % 2 == 0 {
                flags += ["-type", "random_nearest", "-radix", String(pick(1...7)), "-period", String(pick(1...4)),
                          "-fraction", String(format: "%.2f", Double(rng.next() % 101) / 100)]
            } else {
                let others = ["stencil_1d", "dom", "tree", "all_to_all", "nearest", "no_comm"]
                flags += ["-type", others[pick(0...(others.count - 1))]]
            }
            flags += ["-output", String(16 * pick(1...3))]
        }
        return flags
    }

    @Test("200 seeded random graphs × ranks 1–4 × threads 1–4, in one process over the in-memory ranks: no deadlock, no mis-ordered input, every check passes")
    func randomGraphs() throws {
        var rng = SeededRandom(seed: 2026)
        var ran = 0
        for n in 0..<200 {
            let flags = Self.randomFlags(&rng)
            guard (try? TaskBenchConfiguration(arguments: flags)) != nil else { continue }
            let ranks = 1 + n % 4, threads = 1 + (n / 4) % 4
            let dir = Executables.temporaryFolder("taskbench-random")
            defer { try? FileManager.default.removeItem(at: dir) }
            var settings = RunSettings(runDirectory: dir, threads: threads, mpi: ranks, environment: [:])
            settings.storeEnabled = n % 2 == 0
            let report = try ProtocolRunner.runLocal(TaskBenchProtocol(params: .init(flags: flags)), settings: settings, worldSize: nil)
            let failed = report.records.filter { $0.status != .finished }
            #expect(report.outcome == .finished && failed.isEmpty,
                    "\(flags.joined(separator: " ")) on \(ranks)×\(threads): \(failed.prefix(3).map { "\($0.id) \($0.error ?? $0.status.rawValue)" })")
            ran += 1
        }
        #expect(ran >= 150, "\(ran) graphs ran")
    }
}
