import ArgumentParser
import Foundation
import StepFlow
import StepFlowMPI

/// `stepflow bench`: N steps of a shape on M ranks × T threads, side by side with the raw MPI
/// master/worker message rate of the same launch; what the run database costs (the same run with the
/// store off); rank 0's memory above its pre-run baseline; each rank's CPU while it waits, and how
/// long the engine takes to start a step after a long idle. `--compare` instead runs a table of
/// shapes × threads in one launch.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure step throughput against the raw MPI message rate of the same launch.",
        discussion: """
            Run it like any protocol: ./run_mpi.sh --mpi 4 --threads 1 -- stepflow bench --shape independent --steps 200000

            One launch measures, in order: the raw MPI message rate; the run; the same run again with the store off, \
            in <run-dir>/no-store (store_cost = 1 - steps/s with the store ÷ steps/s without; --no-store-cost skips it); \
            --repeats more such pairs, each after the raw rate again, in <run-dir>/repeat-<n> and no-store-<n>, every \
            other pair store-off first (steps/s, the raw rate and store_cost are medians over the pairs, the ratio is \
            that of the two medians; memory is the first run's); \
            and an idle run in <run-dir>/idle, where one step sleeps --idle-ms while the other ranks wait and a second \
            step waits for it (idle CPU of every rank while the step sleeps; idle_wake_us, from the sleeping step's end \
            to the next step's start).

            --compare runs instead every shape of --compare-shapes at every thread count of --compare-threads, each in \
            <run-dir>/compare-<shape>-t<T> (a chain runs at most 10000 steps), and prints one row per combination \
            (--json: an array). The ranks M are the launch's and cannot change inside it: to compare M, launch once \
            per M, each with its own --run-dir:

              for m in 1 2 4; do ./run_mpi.sh --mpi $m -- stepflow bench --compare --json --run-dir /tmp/bench-m$m; done
            """)

    @OptionGroup var bench: BenchProtocol.Params
    @Option(name: .customLong("run-dir"), help: "Where the benchmark's runs live: a new or empty folder, or a previous benchmark's, which is replaced. Anything else is refused.")
    var runDir: String = FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-bench").path
    @Option(help: "Worker threads per rank (default: STEPFLOW_THREADS, then 1). Not with --compare.")
    var threads: Int?
    @Option(help: "MPI ranks; must equal the world size.")
    var mpi: Int?
    @Flag(name: .customLong("no-store"), help: "Run without the run database (store_cost is then not measured).")
    var noStore = false
    @Flag(name: .customLong("no-store-cost"), help: "Skip the second, store-off run that measures what the store costs.")
    var noStoreCost = false
    @Option(help: "Runs of the shape (each with its store-off twin), whose medians are reported: a run of 0.3 s on a shared machine varies by a third from one to the next.")
    var repeats: Int = 3
    @Flag(help: "Print one JSON object (with --compare: an array) instead of text.")
    var json = false
    @Option(name: .customLong("raw-tasks"), help: "Messages in the raw MPI measurement.")
    var rawTasks: Int = 200_000
    @Flag(help: "Run every shape of --compare-shapes at every thread count of --compare-threads; one row each.")
    var compare = false
    @Option(name: .customLong("compare-threads"), help: "With --compare: threads per rank to try, comma-separated.")
    var compareThreads: String = "1,2"
    @Option(name: .customLong("compare-shapes"), help: "With --compare: shapes to run, comma-separated (--shape is ignored).")
    var compareShapes: String = "independent,chain,diamond,random"

    /// A chain is one step at a time: its rate is a latency, and more steps only take longer.
    static let compareChainSteps = 10_000

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads)).") }
        if let mpi, mpi < 1 { throw ValidationError("--mpi must be at least 1 (got \(mpi)).") }
        if repeats < 1 || repeats > 100 { throw ValidationError("--repeats must be 1 to 100 (got \(repeats)).") }
        if compare {
            if threads != nil { throw ValidationError("--threads does not apply with --compare; give the thread counts with --compare-threads.") }
            _ = try Self.threadCounts(compareThreads)
            _ = try Self.shapes(compareShapes)
        }
    }

    /// `--compare-threads`: positive integers, comma-separated.
    static func threadCounts(_ text: String) throws(ValidationError) -> [Int] {
        let counts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--compare-threads must be thread counts of at least 1, comma-separated, like 1,2,4 (got '\(text)').")
        }
        return counts.compactMap { $0 }
    }

    /// `--compare-shapes`: shape names, comma-separated; `idle` is not a throughput shape.
    static func shapes(_ text: String) throws(ValidationError) -> [BenchShape] {
        let runnable = BenchShape.allCases.filter { $0 != .idle }
        let shapes = text.split(separator: ",").map { BenchShape(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
        guard !shapes.isEmpty, shapes.allSatisfy({ $0.map(runnable.contains) ?? false }) else {
            throw ValidationError("--compare-shapes must be some of \(runnable.map(\.rawValue).joined(separator: ", ")), comma-separated (got '\(text)').")
        }
        return shapes.compactMap { $0 }
    }

    func run() throws {
        let world = MPIWorld.initialize()
        defer { world.finalize() }
        let directory = URL(fileURLWithPath: runDir)
        try Self.clearRunDirectory(directory, world: world)
        let raw = RawMessageRate.measure(world: world, tasks: rawTasks)
        if compare {
            try runCompare(directory: directory, raw: raw, world: world)
        } else {
            try runSingle(directory: directory, raw: raw, world: world)
        }
    }

    // MARK: - One shape

    /// The run, its store-off twin, the idle run; then one JSON object or the text summary on rank 0.
    private func runSingle(directory: URL, raw: Double?, world: MPIWorld) throws {
        let sampler = BenchSampler()
        defer { sampler.stop() }
        // Rank 0's memory before the run: after start-up, clearing the run directory and the raw MPI
        // measurement, less what those freed.
        BenchProcess.releaseFreedMemory()
        let baselineRSS = BenchProcess.currentRSSBytes()
        let peakBefore = BenchProcess.peakRSSBytes()
        var settings = RunSettings(runDirectory: directory, threads: threads, mpi: mpi)
        settings.storeEnabled = !noStore
        let report = try Self.runOnce(bench, settings: settings, world: world)
        let peakRSS = BenchProcess.peakRSSBytes()
        let main = report.map(BenchRunFigures.init)
        // Sampled while the coordinator ran: without the report.json that rank 0 writes afterwards.
        let runPeakRSS = main.flatMap { BenchFigures.peakRSS(sampler.readings, from: $0.started, to: $0.started + $0.wallSeconds) }
        // Also the barrier after the run (see `waitForEveryRank`): every rank learns whether it finished.
        if Self.waitForEveryRank(world, rank0Failed: main.map { !$0.finished } ?? false) {
            if let main { FileHandle.standardError.write(Data("benchmark run did not finish: \(main.outcome)\n".utf8)) }
            throw ExitCode(1)
        }

        // The first run (with the store unless --no-store) is `main`; the store-off twins follow, then
        // the further pairs of --repeats, every other one store-off first so neither always goes first.
        // Each starts as the first did, with the memory earlier runs freed given back: reusing it
        // (no page faults) made later runs up to a third faster than a fresh process.
        var runs: [Bool: [BenchRunFigures]] = [!noStore: main.map { [$0] } ?? []]
        let measuresCost = !noStore && !noStoreCost
        // The raw rate is measured again before each further pair, as often as the runs it is compared
        // with: one 0.1 s measurement on a shared machine ranged from 1.8M to 3.7M messages/s.
        var raws = raw.map { [$0] } ?? []
        for n in 1...repeats {
            if n > 1, let again = RawMessageRate.measure(world: world, tasks: rawTasks) { raws.append(again) }
            var order: [Bool] = n == 1 ? [] : [!noStore]
            if measuresCost { order.insert(false, at: n % 2 == 0 ? 0 : order.count) }
            for store in order {
                var again = settings
                again.storeEnabled = store
                again.runDirectory = directory.appendingPathComponent(n == 1 ? BenchRunDirectory.noStoreFolder
                                                                      : BenchRunDirectory.repeatFolder(n, store: store))
                BenchProcess.releaseFreedMemory()
                let figures = try Self.runOnce(bench, settings: again, world: world).map(BenchRunFigures.init)
                if let figures { runs[store, default: []].append(figures) }
                _ = Self.waitForEveryRank(world)
            }
        }
        let noStoreRuns = measuresCost ? runs[false] ?? [] : []

        let idle = try measureIdle(settings: settings, directory: directory, sampler: sampler, world: world)
        guard world.rank == 0, let main else { return }

        let mainRuns = runs[!noStore] ?? [main]
        let rate = BenchFigures.median(mainRuns.map(\.stepsPerSecond)) ?? main.stepsPerSecond
        let wall = BenchFigures.median(mainRuns.map(\.wallSeconds)) ?? main.wallSeconds
        var result: [String: Any] = [
            "shape": bench.shape.rawValue, "steps": main.steps, "mpi": main.ranks, "threads": main.threads,
            "work_us": bench.workMicroseconds, "store": !noStore, "repeats": mainRuns.count,
            "wall_s": wall, "steps_per_s": rate, "us_per_step": 1e6 / max(rate, 1e-9),
            "steps_per_s_runs": mainRuns.map(\.stepsPerSecond),
            "rank0_peak_rss_bytes": peakRSS, "rank0_rss_bytes_per_step": Double(peakRSS) / Double(main.steps),
            "idle_ms": bench.idleMilliseconds, "idle_cpu_percent_max_rank": idle.cpuShares.max().map { $0 * 100 } ?? NSNull(),
            "idle_cpu_percent_by_rank": idle.cpuShares.map { $0 * 100 }, "idle_cpu_window": idle.window,
        ]
        var notes: [String] = []
        let rawRate = BenchFigures.median(raws)
        result["raw_mpi_per_s"] = rawRate ?? NSNull()
        result["raw_mpi_per_s_runs"] = raws
        result["ratio"] = rawRate.map { rate / $0 } ?? NSNull()

        let offRate = noStoreRuns.allSatisfy(\.finished) ? BenchFigures.median(noStoreRuns.map(\.stepsPerSecond)) : nil
        result["steps_per_s_no_store"] = offRate ?? NSNull()
        result["steps_per_s_no_store_runs"] = noStoreRuns.map(\.stepsPerSecond)
        result["store_cost"] = offRate.flatMap { BenchFigures.storeCost(stepsPerSecondWithStore: rate, withoutStore: $0) } ?? NSNull()
        if let failed = noStoreRuns.first(where: { !$0.finished }) { notes.append("a store-off run did not finish (\(failed.outcome)): no store cost") }
        if let failed = mainRuns.first(where: { !$0.finished }) { notes.append("a repeated run did not finish (\(failed.outcome))") }

        result["idle_wake_us"] = idle.wake?.microseconds ?? NSNull()
        result["idle_wake_from_rank"] = idle.wake?.fromRank ?? NSNull()
        result["idle_wake_to_rank"] = idle.wake?.toRank ?? NSNull()
        if idle.wake == nil { notes.append("the idle run did not run both its steps: no wake-up latency") }

        result["rank0_baseline_rss_bytes"] = baselineRSS ?? NSNull()
        result["rank0_rss_bytes_per_step_above_baseline"] = baselineRSS.map {
            BenchFigures.bytesPerStepAboveBaseline(peak: peakRSS, baseline: $0, steps: main.steps)
        } ?? NSNull()
        result["rank0_run_peak_rss_sampled_bytes"] = runPeakRSS ?? NSNull()
        var sampledPerStep: Double?
        if let runPeakRSS, let baselineRSS {
            sampledPerStep = BenchFigures.bytesPerStepAboveBaseline(peak: runPeakRSS, baseline: baselineRSS, steps: main.steps)
        }
        result["rank0_sampled_rss_bytes_per_step_above_baseline"] = sampledPerStep ?? NSNull()
        if peakRSS <= peakBefore {
            notes.append("rank 0's peak RSS (a high-water mark) was reached before the run, by start-up, clearing the previous "
                         + "benchmark or the raw MPI measurement, not by the run: the run's own peak is at most that, and the bytes "
                         + "per step above baseline an upper bound; sampled while the steps ran: "
                         + (sampledPerStep.map { String(format: "%.0f bytes per step above baseline", $0) } ?? "n/a"))
        }

        if bench.workMicroseconds > 0 || (bench.shape == .mixed && bench.longWorkMicroseconds > 0) {
            let ideal = BenchFigures.idealMakespan(shape: bench.shape, steps: main.steps, slots: Double(main.ranks * main.threads),
                                                   work: Double(bench.workMicroseconds) / 1e6,
                                                   longWork: Double(bench.longWorkMicroseconds) / 1e6)
            result["ideal_s"] = ideal
            result["makespan_over_ideal"] = wall / ideal
        }
        result["notes"] = notes
        if json {
            print(try Self.jsonLine(result))
        } else {
            print(Self.text(result))
        }
    }

    /// What the idle run measured: on rank 0 the wake-up and every rank's CPU share; elsewhere empty.
    private struct IdleFigures {
        var wake: BenchFigures.WakeUp?
        /// Each rank's share of a core while it waited (index: rank); empty on ranks other than 0.
        var cpuShares: [Double] = []
        /// What the CPU shares were measured over: "sleeping step" (the sleeping step's run, less a
        /// margin at each end) or "idle run" (the whole idle run, when the sleep was too short to sample).
        var window = "sleeping step"
    }

    /// The idle run in `<run-dir>/idle`: one step sleeps `--idle-ms`, then a step after it runs. Every
    /// rank measures its own CPU over the sleep (rank 0 tells them when it was), rank 0 gathers them.
    private func measureIdle(settings: RunSettings, directory: URL, sampler: BenchSampler, world: MPIWorld) throws -> IdleFigures {
        var params = bench
        params.shape = .idle
        var idleSettings = settings
        idleSettings.runDirectory = directory.appendingPathComponent(BenchRunDirectory.idleFolder)
        let before = sampler.mark()
        let report = try Self.runOnce(params, settings: idleSettings, world: world)
        let after = sampler.mark()
        var figures = IdleFigures(wake: report.flatMap { BenchFigures.wakeUp($0.records) })
        // Leave out the sleeping step's first and last moments: its start and end are the engine at work.
        let margin = figures.wake.map { min(0.05, ($0.sleepEnd - $0.sleepStart) / 10) } ?? 0
        let from = Self.broadcastFromRank0(world, figures.wake.map { $0.sleepStart + margin } ?? .nan)
        let to = Self.broadcastFromRank0(world, figures.wake.map { $0.sleepEnd - margin } ?? .nan)
        var share = from.isFinite && to.isFinite
            ? BenchFigures.cpuShare(sampler.readings, from: from, to: to, minimumSpan: 0.01) : nil
        // Every rank uses the same window, so the gathered shares compare.
        let fallBack = world.orAcrossRanks(share == nil ? 1 : 0) != 0
        if fallBack {
            share = (after.cpuSeconds - before.cpuSeconds) / max(after.time - before.time, 1e-9)
            figures.window = "idle run"
        }
        let mine = withUnsafeBytes(of: (share ?? 0).bitPattern.littleEndian) { Array($0) }
        figures.cpuShares = world.gatherToRank0(mine, width: 8).map { bytes in
            Double(bitPattern: bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        }
        return figures
    }

    // MARK: - Compare

    /// Every shape × thread count of `--compare-shapes` and `--compare-threads` in this launch, each
    /// in its own run directory; one row each on rank 0.
    private func runCompare(directory: URL, raw: Double?, world: MPIWorld) throws {
        let shapes = try Self.shapes(compareShapes), threadCounts = try Self.threadCounts(compareThreads)
        var rows: [[String: Any]] = []
        var failed = false
        for shape in shapes {
            for t in threadCounts {
                var params = bench
                params.shape = shape
                params.steps = shape == .chain ? min(bench.steps, Self.compareChainSteps) : bench.steps
                var settings = RunSettings(runDirectory: directory.appendingPathComponent(BenchRunDirectory.compareFolder(shape: shape, threads: t)),
                                           threads: t, mpi: mpi)
                settings.storeEnabled = !noStore
                let run = try Self.runOnce(params, settings: settings, world: world).map(BenchRunFigures.init)
                _ = Self.waitForEveryRank(world)
                var offRun: BenchRunFigures?
                if !noStore && !noStoreCost {
                    var offSettings = settings
                    offSettings.storeEnabled = false
                    offSettings.runDirectory = settings.runDirectory.appendingPathComponent(BenchRunDirectory.noStoreFolder)
                    offRun = try Self.runOnce(params, settings: offSettings, world: world).map(BenchRunFigures.init)
                    _ = Self.waitForEveryRank(world)
                }
                guard let run else { continue }
                failed = failed || !run.finished
                let offRate = offRun.flatMap { $0.finished ? $0.stepsPerSecond : nil }
                rows.append([
                    "shape": shape.rawValue, "mpi": run.ranks, "threads": run.threads, "steps": run.steps,
                    "store": !noStore, "outcome": run.outcome, "wall_s": run.wallSeconds,
                    "steps_per_s": run.stepsPerSecond, "us_per_step": run.microsecondsPerStep,
                    "raw_mpi_per_s": raw ?? NSNull(), "ratio": raw.map { run.stepsPerSecond / $0 } ?? NSNull(),
                    "steps_per_s_no_store": offRate ?? NSNull(),
                    "store_cost": offRate.flatMap { BenchFigures.storeCost(stepsPerSecondWithStore: run.stepsPerSecond, withoutStore: $0) } ?? NSNull(),
                ])
            }
        }
        guard world.rank == 0 else { return }
        print(json ? try Self.jsonLine(rows) : Self.compareTable(rows, raw: raw))
        if failed {
            FileHandle.standardError.write(Data("some benchmark runs did not finish (see their outcome)\n".utf8))
            throw ExitCode(1)
        }
    }

    // MARK: - Ranks

    /// Rank 0 alone looks at and clears the directory; every rank learns the verdict, so a refused
    /// directory stops the whole launch at once instead of leaving ranks waiting for rank 0.
    private static func clearRunDirectory(_ directory: URL, world: MPIWorld) throws {
        var refusal: BenchRunDirectoryError?
        if world.rank == 0 {
            do {
                try BenchRunDirectory.clear(directory)
            } catch {
                refusal = error
            }
        }
        if world.orAcrossRanks(refusal == nil ? 0 : 1) != 0 {
            if let refusal { FileHandle.standardError.write(Data("error: \(refusal)\n".utf8)) }
            throw ExitCode(2)
        }
    }

    /// Runs `params` once on every rank of `world` (each rank calls it alike); rank 0 gets the report.
    /// - Throws: `ExitCode(2)` on every rank when the run cannot start; rank 0 says why on standard error.
    private static func runOnce(_ params: BenchProtocol.Params, settings: RunSettings, world: MPIWorld) throws(ExitCode) -> RunReport? {
        do {
            return try MPIProtocolRunner.run(BenchProtocol(params: params), settings: settings, world: world)
        } catch RunSetupError.reportedElsewhere {
            throw ExitCode(2)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    /// Waits until every rank is here, polling with sleeps (`orAcrossRanks`), and returns whether rank
    /// 0 said its run failed. Called after each run: a worker rank's run returns as soon as rank 0
    /// stops it, while rank 0 still writes the run's report.json (seconds for 10⁵ steps). Without
    /// this wait the workers would wait inside the next run's first MPI collective, which is blocking
    /// and spins a core when not oversubscribed, and that time would count as the next phase's.
    @discardableResult
    private static func waitForEveryRank(_ world: MPIWorld, rank0Failed: Bool = false) -> Bool {
        world.orAcrossRanks(world.rank == 0 && rank0Failed ? 1 : 0) != 0
    }

    /// Rank 0's `value` on every rank.
    private static func broadcastFromRank0(_ world: MPIWorld, _ value: Double) -> Double {
        Double(bitPattern: world.broadcastFromRank0(value.bitPattern))
    }

    // MARK: - Output

    static func jsonLine(_ object: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    static func text(_ r: [String: Any]) -> String {
        func f(_ key: String, _ digits: Int = 1, scale: Double = 1) -> String {
            guard let v = (r[key] as? NSNumber)?.doubleValue else { return "n/a" }
            return String(format: "%.\(digits)f", v * scale)
        }
        var lines = [
            "stepflow bench: \(r["steps"]!) \(r["shape"]!) steps on mpi=\(r["mpi"]!) × threads=\(r["threads"]!), work \(r["work_us"]!) µs, store \((r["store"] as! Bool) ? "on" : "off")",
            "  steps/s          \(f("steps_per_s", 0))   (\(f("us_per_step", 2)) µs per step, wall \(f("wall_s", 3)) s; median of \(r["repeats"]!) runs: "
                + ((r["steps_per_s_runs"] as? [Double]) ?? []).map { String(format: "%.0f", $0) }.joined(separator: " ") + ")",
            "  raw MPI tasks/s  \(f("raw_mpi_per_s", 0))   ratio \(f("ratio", 3))",
        ]
        if r["store_cost"] is NSNumber {
            lines.append("  store off        \(f("steps_per_s_no_store", 0)) steps/s   store cost \(f("store_cost", 1, scale: 100)) %")
        } else {
            lines.append("  store cost       n/a (\((r["store"] as! Bool) ? "--no-store-cost" : "--no-store"), or the store-off run did not finish)")
        }
        lines += [
            "  rank 0 peak RSS  \(r["rank0_peak_rss_bytes"]!) bytes (\(f("rank0_rss_bytes_per_step", 0)) per step)",
            "  rank 0 baseline  \(r["rank0_baseline_rss_bytes"]!) bytes before the run: \(f("rank0_rss_bytes_per_step_above_baseline", 0)) bytes per step above it"
                + " (sampled peak while the steps ran: \(r["rank0_run_peak_rss_sampled_bytes"]!) bytes)",
            "  idle CPU         \(f("idle_cpu_percent_max_rank", 2)) % of a core (busiest waiting rank; by rank: "
                + ((r["idle_cpu_percent_by_rank"] as? [Double]) ?? []).map { String(format: "%.2f", $0) }.joined(separator: " ")
                + ", over the \(r["idle_cpu_window"]!))",
            "  idle wake-up     \(f("idle_wake_us", 0)) µs after \(r["idle_ms"]!) ms idle (rank \(r["idle_wake_from_rank"]!) → rank \(r["idle_wake_to_rank"]!))",
        ]
        if r["ideal_s"] != nil { lines.append("  makespan         \(f("makespan_over_ideal", 3)) × ideal (\(f("ideal_s", 3)) s)") }
        for note in (r["notes"] as? [String]) ?? [] { lines.append("  note: \(note)") }
        return lines.joined(separator: "\n")
    }

    /// `--compare`'s rows as a table, one line per shape × threads.
    static func compareTable(_ rows: [[String: Any]], raw: Double?) -> String {
        func number(_ row: [String: Any], _ key: String, _ digits: Int, scale: Double = 1) -> String {
            guard let v = (row[key] as? NSNumber)?.doubleValue else { return "n/a" }
            return String(format: "%.\(digits)f", v * scale)
        }
        func pad(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(width - s.count, 0)) + s }
        let widths = [11, 3, 3, 9, 11, 9, 7, 11]
        let header = ["shape", "M", "T", "steps", "steps/s", "µs/step", "ratio", "store cost"]
        var lines = ["stepflow bench --compare: raw MPI \(raw.map { String(format: "%.0f", $0) } ?? "n/a (one rank)") tasks/s",
                     zip(header, widths).map { pad($0, $1) }.joined(separator: " ")]
        for row in rows {
            let cost = row["store_cost"] is NSNumber ? number(row, "store_cost", 1, scale: 100) + " %" : "n/a"
            let outcome = row["outcome"] as? String == "finished" ? "" : "  (\(row["outcome"]!))"
            let cells = ["\(row["shape"]!)", "\(row["mpi"]!)", "\(row["threads"]!)", "\(row["steps"]!)",
                         number(row, "steps_per_s", 0), number(row, "us_per_step", 2), number(row, "ratio", 3), cost]
            lines.append(zip(cells, widths).map { pad($0, $1) }.joined(separator: " ") + outcome)
        }
        return lines.joined(separator: "\n")
    }
}

/// What the benchmark keeps of a run's report on rank 0: its figures, not its records (so a second
/// run does not start with the first one's steps still in memory).
struct BenchRunFigures {
    let outcome: String
    let finished: Bool
    let steps: Int, ranks: Int, threads: Int
    let wallSeconds: Double
    /// When the coordinator started, in seconds since the epoch.
    let started: Double

    init(_ report: RunReport) {
        outcome = report.outcome.statusName
        finished = report.outcome == .finished
        steps = report.records.count
        ranks = report.config.ranks
        threads = report.config.threadsPerRank
        wallSeconds = report.wallSeconds
        started = report.started
    }

    var stepsPerSecond: Double { Double(steps) / max(wallSeconds, 1e-9) }
    var microsecondsPerStep: Double { wallSeconds / Double(max(steps, 1)) * 1e6 }
}
