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
    @Option(name: .customLong("run-dir"), help: "Where the benchmark's run lives: a new or empty folder, or a previous benchmark's, which is replaced. Anything else is refused.")
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
        let directory = URL(fileURLWithPath: runDir)
        // Rank 0 alone looks at and clears the directory; every rank learns the verdict, so a refused
        // directory stops the whole launch at once instead of leaving ranks waiting for rank 0.
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
        let raw = RawMessageRate.measure(world: world, tasks: rawTasks)
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

/// Why `stepflow bench` will not use a `--run-dir`: it replaces its run directory on every run, so it
/// only ever deletes a previous benchmark's files, and refuses a folder holding anything else.
enum BenchRunDirectoryError: Error, CustomStringConvertible {
    /// The path exists and is not a folder.
    case notAFolder(path: String)
    /// The folder holds entries a benchmark does not write (a few of them named, `more` not).
    case foreignEntries(path: String, names: [String], more: Int)
    /// The folder's run database belongs to another protocol.
    case otherProtocol(path: String, protocolName: String)
    /// A run database, report or set-aside database there could not be confirmed as a benchmark's.
    case unconfirmed(path: String, reason: String)
    /// Listing or deleting failed part way; what is left is named.
    case io(path: String, reason: String)
    /// A live launch holds the folder's run.lock.
    case inUse(RunDirectoryLockError)

    var description: String {
        let advice = "stepflow bench replaces its --run-dir on every run and deletes only a previous benchmark's files. Give a new or empty folder with --run-dir DIR (or the folder of an earlier benchmark)."
        switch self {
        case .notAFolder(let path):
            return "--run-dir '\(path)' is a file, not a folder; nothing was changed. \(advice)"
        case .foreignEntries(let path, let names, let more):
            let listed = names.joined(separator: ", ") + (more > 0 ? " and \(more) more" : "")
            return "'\(path)' holds \(listed), which a benchmark does not write; nothing was deleted. \(advice)"
        case .otherProtocol(let path, let name):
            return "'\(path)' holds a run of protocol '\(name)', not a benchmark; nothing was deleted. \(advice)"
        case .unconfirmed(let path, let reason):
            return "'\(path)' is not recognizably a benchmark's (\(reason)); nothing was deleted. \(advice)"
        case .inUse(let error):
            return "\(error) Nothing was deleted."
        case .io(let path, let reason):
            return "could not clear the previous benchmark in '\(path)': \(reason). Remove it yourself or choose another --run-dir."
        }
    }
}

/// What a previous `stepflow bench` leaves in its run directory, and how to clear exactly that.
enum BenchRunDirectory {
    /// Set-aside folders (`previous-<time>`, the engine's `--restart`) and databases
    /// (`run-<time>.db`) start with a date.
    private static func isDated(_ name: String, prefix: String) -> Bool {
        name.hasPrefix(prefix) && name.dropFirst(prefix.count).first?.isNumber == true
    }

    private static func isStepLog(_ name: String) -> Bool {
        name.hasPrefix("step-") && name.hasSuffix(".log") && name.dropFirst(5).dropLast(4).allSatisfy(\.isNumber)
            && name.count > 9
    }

    private enum Kind { case file, folder, other }

    private static func kind(_ path: String) -> Kind {
        var info = stat()
        // lstat: a symbolic link is never followed, so nothing outside the folder is looked at or deleted.
        guard lstat(path, &info) == 0 else { return .other }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .folder
        default: return .other
        }
    }

    /// Empties `directory` of a previous benchmark's files, or throws without deleting anything when
    /// it holds anything else. A missing or empty folder is fine (the run creates it).
    /// - Throws: `BenchRunDirectoryError` naming what is there and what to do.
    static func clear(_ directory: URL) throws(BenchRunDirectoryError) {
        let path = directory.path
        var exists: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &exists) else { return }
        guard exists.boolValue else { throw .notAFolder(path: path) }
        var plan: [String] = []
        try collect(directory, into: &plan, level: 0)
        for entry in plan {
            // Folders come after their contents; rmdir refuses one that gained an entry since it was checked.
            let failed = kind(entry) == .folder ? rmdir(entry) != 0 : unlink(entry) != 0
            if failed { throw .io(path: path, reason: "'\(entry)': \(String(cString: strerror(errno)))") }
        }
    }

    /// Checks that `directory` holds only what a benchmark run writes and appends its entries to
    /// `plan` in the order to delete them: contents before their folder, and the folder's run.db
    /// last, so an interrupted clear leaves a directory still recognized as a benchmark's. The run
    /// directory itself (level 0) stays. `idle/` (the idle measurement's run) and set-aside
    /// `previous-*` folders are runs of their own.
    private static func collect(_ directory: URL, into plan: inout [String], level: Int) throws(BenchRunDirectoryError) {
        let path = directory.path
        func at(_ name: String) -> String { directory.appendingPathComponent(name).path }
        // A live launch's files are not a previous benchmark's, whoever wrote them.
        if case .held(let holder) = RunDirectoryLock.probe(runDirectory: directory) {
            throw .inUse(RunDirectoryLockError.held(runDirectory: path, holder: holder))
        }
        // Read the database before listing the folder, so the listing is what is there after the read.
        let hasDatabase = kind(RunStore.path(in: directory)) == .file
        if hasDatabase {
            let database = RunStore.path(in: directory)
            let sidecars = [database + "-wal", database + "-shm"]
            let hadSidecars = sidecars.contains { kind($0) != .other }
            defer {
                // Reading a WAL database creates an empty log and its index; take back what this read
                // created, so a refused folder is left exactly as it was.
                var info = stat()
                if !hadSidecars, lstat(sidecars[0], &info) == 0, info.st_size == 0 { sidecars.forEach { _ = unlink($0) } }
            }
            do {
                let stored = try RunStore.read(runDirectory: directory)
                guard stored.protocolName == BenchProtocol.protocolName else {
                    throw BenchRunDirectoryError.otherProtocol(path: database, protocolName: stored.protocolName)
                }
            } catch let error as BenchRunDirectoryError {
                throw error
            } catch {
                throw .unconfirmed(path: database, reason: String(describing: error))
            }
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw .io(path: path, reason: "cannot list it: \((error as NSError).localizedDescription)")
        }
        var foreign: [String] = [], files: [String] = [], databases: [String] = [], runs: [String] = []
        var hasLogs = false
        for name in names {
            let k = kind(at(name))
            switch name {
            case "run.db" where k == .file: break
            case "run.db-wal" where k == .file, "run.db-shm" where k == .file: databases.append(name)
            case _ where isDated(name, prefix: "run-") && k == .file
                && (name.hasSuffix(".db") || name.hasSuffix(".db-wal") || name.hasSuffix(".db-shm")):
                databases.append(name)
            case "report.json" where k == .file, "run.lock" where k == .file: files.append(name)
            case "logs" where k == .folder: hasLogs = true
            case "idle" where k == .folder && level < 3: runs.append(name)
            case _ where isDated(name, prefix: "previous-") && k == .folder && level < 3: runs.append(name)
            default: foreign.append(k == .folder ? name + "/" : name)
            }
        }
        guard foreign.isEmpty else {
            throw .foreignEntries(path: path, names: Array(foreign.prefix(5)), more: max(foreign.count - 5, 0))
        }
        if !hasDatabase, let stray = databases.first {
            // A write-ahead log or a set-aside database with no benchmark database beside it says
            // nothing about who wrote it.
            throw .unconfirmed(path: at(stray), reason: "there is no benchmark run.db beside it")
        }
        if files.contains("report.json") { try confirmReport(at("report.json")) }
        plan.append(contentsOf: (files + databases).map(at))
        if hasLogs {
            let logs = directory.appendingPathComponent("logs")
            let entries: [String]
            do {
                entries = try FileManager.default.contentsOfDirectory(atPath: logs.path).sorted()
            } catch {
                throw .io(path: logs.path, reason: "cannot list it: \((error as NSError).localizedDescription)")
            }
            let others = entries.filter { !(isStepLog($0) && kind(logs.appendingPathComponent($0).path) == .file) }
            guard others.isEmpty else {
                throw .foreignEntries(path: logs.path, names: Array(others.prefix(5)), more: max(others.count - 5, 0))
            }
            plan.append(contentsOf: entries.map { logs.appendingPathComponent($0).path })
            plan.append(logs.path)
        }
        for run in runs { try collect(directory.appendingPathComponent(run), into: &plan, level: level + 1) }
        if hasDatabase { plan.append(RunStore.path(in: directory)) }
        if level > 0 { plan.append(path) }
    }

    /// A report.json must be a benchmark's: a run document whose protocol is Bench.
    private static func confirmReport(_ path: String) throws(BenchRunDirectoryError) {
        guard let data = FileManager.default.contents(atPath: path),
              let document = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let run = document["run"] as? [String: Any], let name = run["protocol"] as? String
        else { throw .unconfirmed(path: path, reason: "it is not a StepFlow run report") }
        guard name == BenchProtocol.protocolName else { throw .otherProtocol(path: path, protocolName: name) }
    }
}
