import Foundation
import Testing
@testable import StepFlowTaskBench

/// METG(50%) as Task Bench's chart_metg.py computes it (issue 21): points grouped by iterations and
/// averaged, efficiency over the peak, granularity = wall time × cores ÷ tasks, linear interpolation
/// between the last point at or above the threshold and the next below it.
@Suite struct METGTests {
    /// A Task Bench log of runs (one block per run, as Task Bench's MPI implementation prints it).
    static func log(_ runs: [(iterations: Int, tasks: Int, flops: Int, elapsed: Double)]) -> String {
        runs.map { r in
            """
            Running Task Benchmark
              Configuration:
                Task Graph 1:
                  Time Steps: 1000
                  Max Width: 2
                  Dependence Type: stencil_1d
                  Kernel:
                    Type: compute_bound
                    Iterations: \(r.iterations)
                    Samples: 16
            Total Tasks \(r.tasks)
            Total Dependencies 5998
            Total FLOPs \(r.flops)
            Total Bytes 0
            Elapsed Time \(String(format: "%e", r.elapsed)) seconds
            FLOP/s \(String(format: "%e", Double(r.flops) / r.elapsed))
            B/s 0.000000e+00

            """
        }.joined()
    }

    @Test("Repeats of one iteration count are averaged; points come largest first; runs without an elapsed time are left out")
    func grouping() {
        let text = Self.log([(1024, 2000, 4_000_000, 0.010), (1024, 2000, 4_000_000, 0.030), (4096, 2000, 16_000_000, 0.02)])
            + "Running Task Benchmark\n  Configuration:\n      Iterations: 8\nTotal Tasks 2000\n"  // a run that died
        let metg = TaskBenchMETG(log: text)
        #expect(metg.points.map(\.iterations) == [4096, 1024])
        #expect(metg.points[1].repeats == 2 && abs(metg.points[1].elapsed - 0.020) < 1e-12)
        #expect(abs(metg.points[1].granularity(cores: 2) - 0.020 / 2000 * 2) < 1e-15)
    }

    @Test("METG interpolates linearly between the last point at or above 50% and the next below it")
    func interpolation() throws {
        // Peak 1e9 FLOP/s. 2000 tasks on 2 cores. Efficiencies 100%, 80%, 20%: granularities 1 ms, 0.5 ms, ~0.05 ms.
        let text = Self.log([(4, 2000, 1_000_000_000, 1.0), (2, 2000, 400_000_000, 0.5), (1, 2000, 10_000_000, 0.05)])
        let metg = TaskBenchMETG(log: text)
        #expect(metg.efficiencies(peak: 1e9).map { ($0 * 100).rounded() } == [100, 80, 20])
        let g = metg.points.map { $0.granularity(cores: 2) }
        let expected = g[2] + (0.5 - 0.2) / (0.8 - 0.2) * (g[1] - g[2])
        let value = try #require(metg.metg(peak: 1e9, cores: 2))
        #expect(abs(value - expected) < 1e-12, "\(value) vs \(expected)")
        // A higher threshold moves it up between the first two points.
        let high = try #require(metg.metg(peak: 1e9, cores: 2, threshold: 0.9))
        #expect(high > g[1] && high < g[0])
    }

    @Test("No METG when no point reaches the threshold, or when the sweep stops before efficiency falls below it")
    func unreached() {
        let low = TaskBenchMETG(log: Self.log([(4, 2000, 100, 1.0), (2, 2000, 50, 0.5)]))
        #expect(low.metg(peak: 1e9, cores: 2) == nil)
        let short = TaskBenchMETG(log: Self.log([(4, 2000, 1_000_000_000, 1.0), (2, 2000, 500_000_000, 0.5)]))
        #expect(short.metg(peak: 1e9, cores: 2) == nil)
        #expect(TaskBenchMETG(log: "").points.isEmpty)
    }

    @Test("`stepflow metg` reads <system>__<case>.log files, prints METG for each and the ratio to the baseline, and writes an SVG plot")
    func command() throws {
        let dir = Executables.temporaryFolder("metg")
        defer { try? FileManager.default.removeItem(at: dir) }
        // mpi reaches 50% at 10× smaller granularity than stepflow.
        try Self.log([(4, 2000, 1_000_000_000, 1.0), (2, 2000, 500_000_000, 0.5), (1, 2000, 50_000_000, 0.25)])
            .write(to: dir.appendingPathComponent("mpi__stencil-w2.log"), atomically: true, encoding: .utf8)
        try Self.log([(4, 2000, 1_000_000_000, 2.0), (2, 2000, 500_000_000, 2.0), (1, 2000, 50_000_000, 1.0)])
            .write(to: dir.appendingPathComponent("stepflow__stencil-w2.log"), atomically: true, encoding: .utf8)
        let svg = dir.appendingPathComponent("metg.svg")
        let result = try Executables.run("stepflow", ["metg", "--cores", "2", "--peak", "1e9", "--svg", svg.path,
                                                      dir.appendingPathComponent("mpi__stencil-w2.log").path,
                                                      dir.appendingPathComponent("stepflow__stencil-w2.log").path])
        #expect(result.code == 0, "\(result.stderr)")
        // mpi: 100%, 100%, 20% at 1000, 500, 250 µs: METG 250 + (0.5-0.2)/(1-0.2) × 250 = 343.75 µs.
        // stepflow: 50%, 25%, 5% at 2000, 2000, 1000 µs: no smaller point after the last at 50%, so its 2000 µs.
        #expect(result.stdout.contains("stencil-w2  mpi  343.750\n"), "\(result.stdout)")
        #expect(result.stdout.contains("stencil-w2  stepflow  2000.000  5.8×"), "\(result.stdout)")
        let plot = try String(contentsOf: svg, encoding: .utf8)
        #expect(plot.hasPrefix("<svg") && plot.contains("mpi stencil-w2") && plot.contains("stepflow stencil-w2") && plot.hasSuffix("</svg>\n"))
        let missing = try Executables.run("stepflow", ["metg", dir.appendingPathComponent("nope.log").path])
        #expect(missing.code == 2 && missing.stderr.contains("cannot read"), "\(missing.stderr)")
    }
}
