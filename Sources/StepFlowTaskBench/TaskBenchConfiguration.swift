import Foundation

/// Why Task Bench's flags cannot run: Task Bench's own message where it has one (it aborts on them),
/// and a message of ours where Task Bench would crash or ignore the mistake.
package struct TaskBenchError: Error, CustomStringConvertible, Sendable, Equatable {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// Task Bench's command line: graphs separated by `-and`, each with its flags, and the app's own
/// (`-nodes`, `-v`, `-vv`). Flags are Task Bench's, with its defaults and its checks; unlike Task
/// Bench, an unknown flag or a number that is not one is an error, not silently taken as 0.
package struct TaskBenchConfiguration: Sendable, Equatable {
    package var graphs: [TaskBenchGraph]
    /// `-nodes N`: estimate local and nonlocal dependencies as if on N nodes (0: not estimated).
    package var nodes = 0
    /// 1 for `-v` (each timestep's points and dependencies), 2 more for `-vv`.
    package var verbose = 0

    /// The flags Task Bench takes, for `--help` and error messages.
    package static let flagNames = ["-steps", "-width", "-type", "-radix", "-period", "-fraction", "-kernel", "-iter", "-output",
                                    "-scratch", "-sample", "-imbalance", "-field", "-nodes", "-and", "-v", "-vv", "-skip-graph-validation"]

    /// Parses `arguments` (without the program name) as Task Bench does, then checks the graphs.
    /// - Throws: `TaskBenchError` naming the flag and what it must be.
    package init(arguments: [String]) throws(TaskBenchError) {
        var graphs: [TaskBenchGraph] = []
        var graph = TaskBenchGraph(index: 0)
        var i = 0
        func value(_ flag: String) throws(TaskBenchError) -> String {
            guard i + 1 < arguments.count else { throw TaskBenchError("Flag \"\(flag)\" requires an argument") }
            i += 1
            return arguments[i]
        }
        func integer(_ flag: String) throws(TaskBenchError) -> Int {
            let text = try value(flag)
            guard let n = Int(text) else { throw TaskBenchError("Invalid flag \"\(flag) \(text)\": not a whole number") }
            return n
        }
        func decimal(_ flag: String) throws(TaskBenchError) -> Double {
            let text = try value(flag)
            guard let d = Double(text), d.isFinite else { throw TaskBenchError("Invalid flag \"\(flag) \(text)\": not a number") }
            return d
        }
        func finish() {
            if graph.period < 0 { graph.period = graph.dependence.needsPeriod ? 3 : 0 }
            graphs.append(graph)
        }
        while i < arguments.count {
            let flag = arguments[i]
            switch flag {
            case "-h", "--help": throw TaskBenchError(Self.help)
            case "-nodes":
                nodes = try integer(flag)
                guard nodes > 0 else { throw TaskBenchError("Invalid flag \"-nodes \(nodes)\" must be > 0") }
            case "-v": verbose += 1
            case "-vv": verbose += 2
            case "-skip-graph-validation": break
            case "-steps":
                graph.timesteps = try integer(flag)
                guard graph.timesteps > 0 else { throw TaskBenchError("Invalid flag \"-steps \(graph.timesteps)\" must be > 0") }
            case "-width":
                graph.maxWidth = try integer(flag)
                guard graph.maxWidth > 0 else { throw TaskBenchError("Invalid flag \"-width \(graph.maxWidth)\" must be > 0") }
            case "-type":
                let name = try value(flag)
                guard let type = TaskBenchGraph.Dependence(rawValue: name) else {
                    throw TaskBenchError("Invalid flag \"-type \(name)\" (types: \(TaskBenchGraph.Dependence.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                graph.dependence = type
            case "-radix":
                graph.radix = try integer(flag)
                guard graph.radix >= 0 else { throw TaskBenchError("Invalid flag \"-radix \(graph.radix)\" must be >= 0") }
            case "-period":
                graph.period = try integer(flag)
                guard graph.period >= 0 else { throw TaskBenchError("Invalid flag \"-period \(graph.period)\" must be >= 0") }
            case "-fraction":
                graph.fraction = try decimal(flag)
                guard (0...1).contains(graph.fraction) else {
                    throw TaskBenchError("Invalid flag \"-fraction \(String(format: "%f", graph.fraction))\" must be >= 0 and <= 1")
                }
            case "-kernel":
                let name = try value(flag)
                guard let kernel = TaskBenchGraph.KernelType(rawValue: name) else {
                    throw TaskBenchError("Invalid flag \"-kernel \(name)\" (kernels: \(TaskBenchGraph.KernelType.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                graph.kernel = kernel
            case "-iter":
                graph.iterations = try integer(flag)
                guard graph.iterations >= 0 else { throw TaskBenchError("Invalid flag \"-iter \(graph.iterations)\" must be >= 0") }
            case "-output":
                graph.outputBytes = try integer(flag)
                guard graph.outputBytes >= 16 else { throw TaskBenchError("Invalid flag \"-output \(graph.outputBytes)\" must be >= 16") }
            case "-scratch":
                graph.scratchBytes = try integer(flag)
                guard graph.scratchBytes >= 0 else { throw TaskBenchError("Invalid flag \"-scratch \(graph.scratchBytes)\" must be >= 0") }
            case "-sample":
                graph.samples = try integer(flag)
                guard graph.samples >= 0, graph.samples <= Int(Int32.max) else {
                    throw TaskBenchError("Invalid flag \"-sample \(graph.samples)\" must be >= 0")
                }
            case "-imbalance":
                graph.imbalance = try decimal(flag)
                guard (0...2).contains(graph.imbalance) else {
                    throw TaskBenchError("Invalid flag \"-imbalance \(String(format: "%f", graph.imbalance))\" must be >= 0 and <= 2")
                }
            case "-field":
                let fields = try integer(flag)
                guard fields > 0 else { throw TaskBenchError("Invalid flag \"-field \(fields)\" must be > 0") }
            case "-and":
                finish()
                graph = TaskBenchGraph(index: graphs.count)
            default:
                throw TaskBenchError("unknown flag '\(flag)'. Task Bench's flags: \(Self.flagNames.joined(separator: " "))")
            }
            i += 1
        }
        finish()
        self.graphs = graphs
        try check()
    }

    /// Task Bench's checks (its `App::check`), plus what it would crash on.
    private func check() throws(TaskBenchError) {
        for g in graphs {
            let name = g.dependence.rawValue
            if g.dependence == .random_spread {
                throw TaskBenchError("Graph type \"random_spread\" is not implemented by Task Bench (it is named, never defined); use random_nearest or spread")
            }
            if g.dependence.needsPeriod && g.period == 0 {
                throw TaskBenchError("Graph type \"\(name)\" requires a non-zero period (specify with -period)")
            }
            if !g.dependence.needsPeriod && g.period != 0 {
                throw TaskBenchError("Graph type \"\(name)\" does not support user-configurable period")
            }
            if g.dependence == .spread {
                guard g.radix > 0 else { throw TaskBenchError("Graph type \"spread\" requires a radix of at least 1") }
                let limit = (g.maxWidth + g.radix - 1) / g.radix
                if g.period > limit { throw TaskBenchError("Graph type \"spread\" requires a period that is at most \(limit)") }
            }
            if g.dependence == .fft && g.maxWidth < 2 {
                throw TaskBenchError("Graph type \"fft\" needs a width of at least 2 (its dependence sets are log2 of the width)")
            }
            switch g.kernel {
            case .compute_dgemm, .memory_daxpy:
                throw TaskBenchError("Kernel \"\(g.kernel.rawValue)\" needs BLAS (Task Bench: \"No BLAS is detected\"); use compute_bound or memory_bound")
            case .io_bound:
                throw TaskBenchError("Kernel \"io_bound\" is not implemented by Task Bench")
            case .memory_bound:
                guard g.scratchBytes > 0, g.samples > 0 else {
                    throw TaskBenchError("Kernel \"memory_bound\" needs -scratch > 0 and -sample > 0 (it copies within the scratch area, a sample at a time)")
                }
                guard g.scratchBytes % 8 == 0, (g.scratchBytes / g.samples) % 2 == 0 else {
                    throw TaskBenchError("Kernel \"memory_bound\" needs -scratch a multiple of 8 whose samples (scratch / -sample) are an even number of bytes")
                }
            default:
                if g.scratchBytes % 8 != 0 { throw TaskBenchError("Invalid flag \"-scratch \(g.scratchBytes)\": the scratch area is filled 8 bytes at a time; give a multiple of 8") }
            }
            // Task Bench asserts that no task names a point twice.
            for dset in 0..<max(g.maxDependenceSets, 1) {
                for p in 0..<g.maxWidth {
                    let points = g.dependencies(set: dset, point: p).flatMap { Array($0) }
                    if Set(points).count != points.count {
                        throw TaskBenchError("Graph type \"\(name)\" with width \(g.maxWidth) and radix \(g.radix) makes point \(p) depend on a point twice (Task Bench's check fails); choose a larger width or a smaller radix")
                    }
                }
            }
        }
    }

    static let help = """
        Task Bench flags (graphs separated by -and; each graph starts from the defaults):
          -steps N      timesteps (4)              -width N      points per timestep (4)
          -type T       trivial no_comm stencil_1d stencil_1d_periodic dom tree fft all_to_all nearest spread random_nearest
          -radix N      dependencies for nearest/spread/random_nearest (3)
          -period N     dependence sets for spread/random_nearest (3)     -fraction F   random_nearest's (0.25)
          -kernel K     empty busy_wait compute_bound compute_bound2 memory_bound load_imbalance (empty)
          -iter N       kernel iterations (0)      -output N     bytes each task hands on (16)
          -scratch N    scratch bytes per task (0) -sample N     memory_bound samples (16)
          -imbalance F  load_imbalance's spread, 0 to 2 (0)
          -nodes N      estimate local/nonlocal dependencies for N nodes   -v, -vv  print the graph
        """

    /// Task Bench's configuration block (`App::display`), which its scripts parse.
    package var display: String {
        var lines = ["Running Task Benchmark", "  Configuration:"]
        for g in graphs {
            lines += [
                "    Task Graph \(g.index + 1):",
                "      Time Steps: \(g.timesteps)",
                "      Max Width: \(g.maxWidth)",
                "      Dependence Type: \(g.dependence.rawValue)",
                "      Radix: \(g.radix)",
                "      Period: \(g.period)",
                "      Fraction Connected: \(String(format: "%f", g.fraction))",
                "      Kernel:",
                "        Type: \(g.kernel.rawValue)",
                "        Iterations: \(g.iterations)",
                "        Samples: \(g.samples)",
                "        Imbalance: \(String(format: "%f", g.imbalance))",
                "      Output Bytes: \(g.outputBytes)",
                "      Scratch Bytes: \(g.scratchBytes)",
            ]
            if verbose > 0 {
                for t in 0..<g.timesteps {
                    lines.append("      Timestep \(t) (offset \(g.offset(t)), width \(g.width(t)), last offset \(g.offset(t - 1)), last width \(g.width(t - 1))):")
                    lines.append("        Points: " + g.points(t).map(String.init).joined(separator: " "))
                    for p in g.points(t) {
                        lines.append("        Point \(p) dependencies: " + g.inputs(timestep: t, point: p).map(String.init).joined(separator: " "))
                    }
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The totals Task Bench reports, computed from the graphs as it does (not from what ran).
    package struct Totals: Sendable, Equatable {
        package var tasks = 0, dependencies = 0, flops = 0, bytes = 0
        package var localDependencies = 0, nonlocalDependencies = 0, localBytes = 0, nonlocalBytes = 0
    }

    package var totals: Totals {
        var r = Totals()
        for g in graphs {
            var local = 0, nonlocal = 0
            for t in 0..<g.timesteps {
                r.tasks += g.width(t)
                let last = g.points(t - 1)
                let dset = g.dependenceSet(t)
                for p in g.points(t) {
                    r.flops += g.flops(timestep: t, point: p)
                    r.bytes += g.bytes(timestep: t, point: p)
                    guard t > 0, !last.isEmpty else { continue }
                    for interval in g.dependencies(set: dset, point: p) {
                        let lo = max(interval.lowerBound, last.lowerBound), hi = min(interval.upperBound, last.upperBound - 1)
                        guard lo <= hi else { continue }
                        r.dependencies += hi - lo + 1
                        guard nodes > 0 else { continue }
                        let node = p * nodes / g.maxWidth
                        let first = node * g.maxWidth / nodes, lastOwned = (node + 1) * g.maxWidth / nodes - 1
                        func overlap(_ a: Int, _ b: Int) -> Int { max(0, min(hi, b) - max(lo, a) + 1) }
                        local += overlap(first, lastOwned)
                        nonlocal += overlap(0, first - 1) + overlap(lastOwned + 1, g.maxWidth - 1)
                    }
                }
            }
            r.localDependencies += local
            r.nonlocalDependencies += nonlocal
            r.localBytes += local * g.outputBytes
            r.nonlocalBytes += nonlocal * g.outputBytes
        }
        return r
    }

    /// Task Bench's report lines (`App::report_timing`) for a run of `elapsed` seconds.
    package func report(elapsed: Double) -> String {
        let r = totals
        func e(_ v: Double) -> String { String(format: "%e", v) }
        var lines = ["Total Tasks \(r.tasks)", "Total Dependencies \(r.dependencies)"]
        if nodes > 0 {
            lines += ["  Local Dependencies \(r.localDependencies) (estimated)", "  Nonlocal Dependencies \(r.nonlocalDependencies) (estimated)",
                      "  Number of Nodes (used for estimate) \(nodes)"]
        } else {
            lines.append("  Unable to estimate local/nonlocal dependencies")
        }
        lines += ["Total FLOPs \(r.flops)", "Total Bytes \(r.bytes)", "Elapsed Time \(e(elapsed)) seconds",
                  "FLOP/s \(e(Double(r.flops) / elapsed))", "B/s \(e(Double(r.bytes) / elapsed))", "Transfer (estimated):"]
        if nodes > 0 {
            lines += ["  Local Bytes \(r.localBytes)", "  Nonlocal Bytes \(r.nonlocalBytes)",
                      "  Local Bandwidth \(e(Double(r.localBytes) / elapsed)) B/s", "  Nonlocal Bandwidth \(e(Double(r.nonlocalBytes) / elapsed)) B/s"]
        } else {
            lines.append("  Unable to estimate local/nonlocal transfer")
        }
        return lines.joined(separator: "\n")
    }
}
