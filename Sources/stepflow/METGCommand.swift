import ArgumentParser
import Foundation
import StepFlowTaskBench

/// `stepflow metg LOG…`: METG(50%) from Task Bench logs (a sweep of iterations appended to one log per
/// system and case), as Task Bench's chart_metg.py computes it; a table per log, a summary with each
/// system's METG beside the baseline's, and an SVG plot.
struct METGCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metg",
        abstract: "METG(50%) from Task Bench logs, as Task Bench's scripts compute it.",
        discussion: """
            Name each log <system>__<case>.log (scripts/metg.sh does): the summary puts each system's METG beside \
            --baseline's for the same case, as a ratio. Efficiency is FLOP/s over --peak (default: the largest FLOP/s \
            any run of the logs reached, Task Bench's stand-in for a measured peak); granularity is wall time × \
            --cores ÷ tasks.
            """)

    @Argument(help: "Task Bench logs.") var logs: [String]
    @Option(help: "Cores the runs used (ranks × threads).") var cores: Int = 2
    @Option(help: "The machine's peak FLOP/s (default: the largest FLOP/s in the logs).") var peak: Double?
    @Option(help: "Efficiency threshold.") var threshold: Double = 0.5
    @Option(help: "The system the others are compared with.") var baseline: String = "mpi"
    @Option(help: "Write an SVG plot of efficiency against granularity here.") var svg: String?

    func validate() throws {
        if logs.isEmpty { throw ValidationError("give at least one log") }
        if cores < 1 { throw ValidationError("--cores must be at least 1 (got \(cores)).") }
        if let peak, !(peak > 0) { throw ValidationError("--peak must be a positive FLOP/s figure (got \(peak)).") }
        if !(threshold > 0 && threshold < 1) { throw ValidationError("--threshold must be between 0 and 1 (got \(threshold)).") }
    }

    func run() throws {
        var sweeps: [(system: String, case: String, metg: TaskBenchMETG)] = []
        for path in logs {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                FileHandle.standardError.write(Data("error: cannot read \(path)\n".utf8))
                throw ExitCode(2)
            }
            let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            let parts = name.components(separatedBy: "__")
            sweeps.append((parts[0], parts.count > 1 ? parts[1...].joined(separator: "__") : name, TaskBenchMETG(log: text)))
        }
        let maxFlops = sweeps.flatMap { $0.metg.points.map(\.flopsPerSecond) }.max() ?? 1
        let peak = self.peak ?? maxFlops
        print(String(format: "peak %.4e FLOP/s (%@), %d cores, threshold %.0f%%", peak, self.peak == nil ? "the largest in the logs" : "given", cores, threshold * 100))
        var plotted: [METGPlot.Series] = []
        var results: [String: [String: Double?]] = [:]
        for s in sweeps {
            print("\n\(s.system) \(s.case)")
            print("  iterations  reps   elapsed s    µs/task   GFLOP/s  efficiency")
            let eff = s.metg.efficiencies(peak: peak)
            for (p, e) in zip(s.metg.points, eff) {
                print(String(format: "  %10d  %4d  %10.4f  %9.3f  %8.2f  %9.1f%%", p.iterations, p.repeats, p.elapsed,
                             p.granularity(cores: cores) * 1e6, p.flopsPerSecond / 1e9, e * 100))
            }
            let metg = s.metg.metg(peak: peak, cores: cores, threshold: threshold)
            print("  METG(\(Int(threshold * 100))%) " + (metg.map { String(format: "%.3f µs", $0 * 1e6) } ?? "not reached (no point above the threshold, or none below it after)"))
            results[s.case, default: [:]][s.system] = metg
            plotted.append(METGPlot.Series(name: "\(s.system) \(s.case)", points: zip(s.metg.points, eff).map { ($0.granularity(cores: cores), $1) }))
        }
        print("\nsummary: METG(\(Int(threshold * 100))%) in µs, and the ratio to \(baseline)'s")
        for c in results.keys.sorted() {
            let base = results[c]?[baseline] ?? nil
            for (system, metg) in results[c]!.sorted(by: { $0.key < $1.key }) {
                let ratio = system == baseline ? "" : (metg.flatMap { m in base.map { String(format: "  %.1f×", m / $0) } } ?? "  n/a")
                print("  \(c)  \(system)  " + (metg.map { String(format: "%.3f", $0 * 1e6) } ?? "n/a") + ratio)
            }
        }
        if let svg {
            try METGPlot.svg(plotted, title: "Efficiency against task granularity (METG at \(Int(threshold * 100))%)", threshold: threshold)
                .write(toFile: svg, atomically: true, encoding: .utf8)
            print("\nplot: \(svg)")
        }
    }
}
