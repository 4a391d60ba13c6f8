import ArgumentParser
import Foundation
import StepFlow
import StepFlowMPI

/// `stepflow bench`: N steps of a shape on M ranks × T threads, side by side with the raw MPI
/// master/worker message rate of the same launch, plus rank 0's peak memory and a waiting rank's CPU.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure step throughput against the raw MPI message rate of the same launch.",
        discussion: "Run it like any protocol: ./run_mpi.sh --mpi 4 --threads 1 -- stepflow bench --shape independent --steps 200000")

    @OptionGroup var bench: BenchProtocol.Params
    @Option(name: .customLong("run-dir"), help: "Where the benchmark's run lives (replaced on each run).")
    var runDir: String = FileManager.default.temporaryDirectory.appendingPathComponent("stepflow-bench").path
    @Option(help: "Worker threads per rank (default: STEPFLOW_THREADS, then 1).")
    var threads: Int?
    @Option(help: "MPI ranks; must equal the world size.")
    var mpi: Int?
    @Flag(name: .customLong("no-store"), help: "Run without the run database (to measure what it costs).")
    var noStore = false
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
    @Option(name: .customLong("raw-tasks"), help: "Messages in the raw MPI measurement.")
    var rawTasks: Int = 200_000

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads)).") }
        if let mpi, mpi < 1 { throw ValidationError("--mpi must be at least 1 (got \(mpi)).") }
    }

    func run() throws {
        let world = MPIWorld.initialize()
        defer { world.finalize() }
        let raw = RawMessageRate.measure(world: world, tasks: rawTasks)
        let directory = URL(fileURLWithPath: runDir)
        if world.rank == 0 { try? FileManager.default.removeItem(at: directory) }
        var settings = RunSettings(runDirectory: directory, threads: threads, mpi: mpi)
        settings.storeEnabled = !noStore
        let report: RunReport?
        do {
            report = try MPIProtocolRunner.run(BenchProtocol(params: bench), settings: settings, world: world)
        } catch RunSetupError.reportedElsewhere {
            throw ExitCode(2)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let peakRSS = Self.peakRSSBytes()
        // A second run in the same launch: one sleeping step, every other rank waiting.
        var idleParams = bench
        idleParams.shape = .idle
        let cpuBefore = Self.cpuSeconds(), wallBefore = Date().timeIntervalSince1970
        var idleSettings = settings
        idleSettings.runDirectory = directory.appendingPathComponent("idle")
        _ = try? MPIProtocolRunner.run(BenchProtocol(params: idleParams), settings: idleSettings, world: world)
        let idleShare = (Self.cpuSeconds() - cpuBefore) / max(Date().timeIntervalSince1970 - wallBefore, 1e-9)
        let worstIdle = world.maxAcrossRanks(idleShare)
        guard world.rank == 0, let report else { return }
        if report.outcome != .finished {
            FileHandle.standardError.write(Data("benchmark run did not finish: \(report.outcome)\n".utf8))
            throw ExitCode(1)
        }
        let n = Double(report.records.count)
        let stepsPerSecond = n / report.wallSeconds
        var result: [String: Any] = [
            "shape": bench.shape.rawValue, "steps": report.records.count, "mpi": report.config.ranks,
            "threads": report.config.threadsPerRank, "work_us": bench.workMicroseconds, "store": !noStore,
            "wall_s": report.wallSeconds, "steps_per_s": stepsPerSecond, "us_per_step": report.wallSeconds / n * 1e6,
            "rank0_peak_rss_bytes": peakRSS, "rank0_rss_bytes_per_step": Double(peakRSS) / n,
            "idle_cpu_percent_max_rank": worstIdle * 100,
        ]
        result["raw_mpi_per_s"] = raw ?? NSNull()
        result["ratio"] = raw.map { stepsPerSecond / $0 } ?? NSNull()
        if bench.workMicroseconds > 0 {
            let slots = Double(report.config.ranks * report.config.threadsPerRank)
            let ideal = Self.idealMakespan(shape: bench.shape, steps: report.records.count, slots: slots,
                                           work: Double(bench.workMicroseconds) / 1e6)
            result["ideal_s"] = ideal
            result["makespan_over_ideal"] = report.wallSeconds / ideal
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(Self.text(result))
        }
    }

    static func idealMakespan(shape: BenchShape, steps: Int, slots: Double, work: Double) -> Double {
        switch shape {
        case .chain: return Double(steps) * work
        case .diamond: return 2 * work + (Double(steps - 2) / slots).rounded(.up) * work
        default: return (Double(steps) / slots).rounded(.up) * work
        }
    }

    static func text(_ r: [String: Any]) -> String {
        func f(_ key: String, _ digits: Int = 1) -> String {
            guard let v = r[key] as? Double else { return "n/a" }
            return String(format: "%.\(digits)f", v)
        }
        var lines = [
            "stepflow bench: \(r["steps"]!) \(r["shape"]!) steps on mpi=\(r["mpi"]!) × threads=\(r["threads"]!), work \(r["work_us"]!) µs, store \((r["store"] as! Bool) ? "on" : "off")",
            "  steps/s          \(f("steps_per_s", 0))   (\(f("us_per_step", 2)) µs per step, wall \(f("wall_s", 3)) s)",
            "  raw MPI tasks/s  \(f("raw_mpi_per_s", 0))   ratio \(f("ratio", 3))",
            "  rank 0 peak RSS  \(r["rank0_peak_rss_bytes"]!) bytes (\(f("rank0_rss_bytes_per_step", 0)) per step)",
            "  idle CPU         \(f("idle_cpu_percent_max_rank", 2)) % of a core (busiest waiting rank)",
        ]
        if r["ideal_s"] != nil { lines.append("  makespan         \(f("makespan_over_ideal", 3)) × ideal (\(f("ideal_s", 3)) s)") }
        return lines.joined(separator: "\n")
    }

    static func peakRSSBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let t = { (tv: timeval) in Double(tv.tv_sec) + Double(tv.tv_usec) / 1e6 }
        return t(usage.ru_utime) + t(usage.ru_stime)
    }
}
