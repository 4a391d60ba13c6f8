import Foundation

/// METG(50%), the way Task Bench's experiments compute it (scripts/chart_metg.py): runs of one graph
/// at shrinking kernel iterations, each point's efficiency (FLOP/s over the machine's peak) against
/// its task granularity (wall time × cores ÷ tasks); METG is the smallest granularity at which the
/// efficiency still reaches the threshold, interpolated linearly to the next point below it.
package struct TaskBenchMETG: Sendable {
    /// One iteration count: the mean of its repeats.
    package struct Point: Sendable, Equatable {
        package var iterations: Int
        package var repeats: Int
        package var elapsed: Double
        package var tasks: Int
        package var flops: Int

        package var flopsPerSecond: Double { Double(flops) / elapsed }
        /// Wall time × cores ÷ tasks, in seconds.
        package func granularity(cores: Int) -> Double { elapsed / Double(tasks) * Double(cores) }
    }

    /// The runs of a log, grouped by iterations (largest first).
    package let points: [Point]

    /// Reads the runs of a Task Bench log (its configuration block and report lines, as Task Bench's
    /// MPI implementation and `stepflow taskbench` both print them; runs appended one after another).
    /// Runs without an elapsed time (failed ones) are left out.
    package init(log: String) {
        struct Run { var iterations: Int?, tasks: Int?, flops: Int?, elapsed: Double? }
        var runs: [Run] = []
        var current = Run()
        func value(_ line: Substring, after label: String) -> Substring? {
            let trimmed = line.drop { $0 == " " }
            guard trimmed.hasPrefix(label) else { return nil }
            return trimmed.dropFirst(label.count).drop { $0 == " " }
        }
        for line in log.split(separator: "\n") {
            if line.hasPrefix("Running Task Benchmark") {
                current = Run()
            } else if let v = value(line, after: "Iterations:"), current.iterations == nil {
                current.iterations = Int(v)
            } else if let v = value(line, after: "Total Tasks") {
                current.tasks = Int(v)
            } else if let v = value(line, after: "Total FLOPs") {
                current.flops = Int(v)
            } else if let v = value(line, after: "Elapsed Time") {
                current.elapsed = Double(v.split(separator: " ").first ?? "")
                runs.append(current)
            }
        }
        var grouped: [Int: [Run]] = [:]
        for run in runs {
            guard let it = run.iterations, run.tasks != nil, run.flops != nil, let e = run.elapsed, e > 0 else { continue }
            grouped[it, default: []].append(run)
        }
        points = grouped.keys.sorted(by: >).map { it in
            let group = grouped[it]!
            return Point(iterations: it, repeats: group.count, elapsed: group.map { $0.elapsed! }.reduce(0, +) / Double(group.count),
                         tasks: group[0].tasks!, flops: group[0].flops!)
        }
    }

    /// Each point's efficiency against `peak` FLOP/s (the machine's, all its cores).
    package func efficiencies(peak: Double) -> [Double] { points.map { $0.flopsPerSecond / peak } }

    /// METG(`threshold`) in seconds, or nil when no point reaches the threshold, or none falls below
    /// it after the smallest granularity that does (the sweep did not go far enough).
    package func metg(peak: Double, cores: Int, threshold: Double = 0.5) -> Double? {
        let efficiency = efficiencies(peak: peak)
        let granularity = points.map { $0.granularity(cores: cores) }
        let above = efficiency.indices.filter { efficiency[$0] >= threshold }
        guard let i = above.min(by: { granularity[$0] < granularity[$1] }) else { return nil }
        guard i + 1 < points.count else { return nil }
        if granularity[i + 1] < granularity[i], efficiency[i] != efficiency[i + 1] {
            // Linear, between the last point above the threshold and the next one.
            let f = (threshold - efficiency[i + 1]) / (efficiency[i] - efficiency[i + 1])
            return granularity[i + 1] + f * (granularity[i] - granularity[i + 1])
        }
        return granularity[i]
    }
}

/// An SVG plot of efficiency against task granularity (log scale), one line per series, with the
/// threshold drawn: what Task Bench's METG figures show.
package enum METGPlot {
    package struct Series: Sendable {
        package var name: String
        /// (granularity in seconds, efficiency).
        package var points: [(Double, Double)]
        package init(name: String, points: [(Double, Double)]) {
            self.name = name
            self.points = points
        }
    }

    package static func svg(_ series: [Series], title: String, threshold: Double = 0.5) -> String {
        let width = 840.0, height = 460.0, left = 70.0, right = 250.0, top = 40.0, bottom = 50.0
        let all = series.flatMap(\.points).filter { $0.0 > 0 }
        let lo = log10(all.map(\.0).min() ?? 1e-6).rounded(.down), hi = log10(all.map(\.0).max() ?? 1).rounded(.up)
        let span = max(hi - lo, 1)
        let maxEff = max(1.0, (all.map(\.1).max() ?? 1) * 1.05)
        func x(_ g: Double) -> Double { left + (log10(g) - lo) / span * (width - left - right) }
        func y(_ e: Double) -> Double { top + (1 - e / maxEff) * (height - top - bottom) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"]
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(f(left))\" y=\"22\" font-size=\"14\">\(esc(title))</text>\n"
        // Axes, decades and the threshold.
        out += "<line x1=\"\(f(left))\" y1=\"\(f(y(0)))\" x2=\"\(f(width - right))\" y2=\"\(f(y(0)))\" stroke=\"black\"/>\n"
        out += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(y(0)))\" stroke=\"black\"/>\n"
        var d = lo
        while d <= hi {
            let g = pow(10, d)
            let label = g >= 1e-3 ? String(format: "%g ms", g * 1e3) : String(format: "%g µs", g * 1e6)
            out += "<line x1=\"\(f(x(g)))\" y1=\"\(f(top))\" x2=\"\(f(x(g)))\" y2=\"\(f(y(0)))\" stroke=\"#ddd\"/>\n"
            out += "<text x=\"\(f(x(g)))\" y=\"\(f(y(0) + 18))\" text-anchor=\"middle\">\(label)</text>\n"
            d += 1
        }
        for e in stride(from: 0.0, through: maxEff, by: 0.25) {
            out += "<text x=\"\(f(left - 8))\" y=\"\(f(y(e) + 4))\" text-anchor=\"end\">\(Int((e * 100).rounded()))%</text>\n"
        }
        out += "<line x1=\"\(f(left))\" y1=\"\(f(y(threshold)))\" x2=\"\(f(width - right))\" y2=\"\(f(y(threshold)))\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n"
        out += "<text x=\"\(f((left + width - right) / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">task granularity (wall time × cores ÷ tasks)</text>\n"
        out += "<text x=\"16\" y=\"\(f((top + y(0)) / 2))\" transform=\"rotate(-90 16 \(f((top + y(0)) / 2)))\" text-anchor=\"middle\">efficiency (FLOP/s ÷ peak)</text>\n"
        for (n, s) in series.enumerated() {
            let color = colors[n % colors.count]
            // Past the palette, colours come round again dashed, so no two series look alike.
            let dash = (n / colors.count) % 2 == 1 ? " stroke-dasharray=\"6 3\"" : ""
            let pts = s.points.filter { $0.0 > 0 }.sorted { $0.0 < $1.0 }
            out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash) points=\"" + pts.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ") + "\"/>\n"
            for p in pts { out += "<circle cx=\"\(f(x(p.0)))\" cy=\"\(f(y(p.1)))\" r=\"2.5\" fill=\"\(color)\"/>\n" }
            let ly = top + 16 * Double(n)
            out += "<line x1=\"\(f(width - right + 12))\" y1=\"\(f(ly))\" x2=\"\(f(width - right + 32))\" y2=\"\(f(ly))\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>\n"
            out += "<text x=\"\(f(width - right + 38))\" y=\"\(f(ly + 4))\">\(esc(s.name))</text>\n"
        }
        return out + "</svg>\n"
    }
}
