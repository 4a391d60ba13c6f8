import Foundation
import StepFlow

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
        let advice = "stepflow bench and stepflow taskbench replace their --run-dir on every run and delete only a previous benchmark's files. Give a new or empty folder with --run-dir DIR (or the folder of an earlier benchmark)."
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
    /// The idle measurement's run (one sleeping step, then one after it).
    static let idleFolder = "idle"
    /// `stepflow taskbench`'s warm-up run (Task Bench times the second of two).
    static let warmupFolder = "warmup"
    /// The same shape run again with the store off, to measure what the store costs.
    static let noStoreFolder = "no-store"

    /// `--repeats`' further runs of the shape, the n-th (n ≥ 2) with the store and without.
    static func repeatFolder(_ n: Int, store: Bool) -> String { (store ? "repeat-" : "no-store-") + String(n) }

    /// `--compare`'s run of one shape at `threads` threads per rank.
    static func compareFolder(shape: BenchShape, threads: Int) -> String { "compare-\(shape.rawValue)-t\(threads)" }

    /// Whether `name` is a run a benchmark launch keeps inside its run directory besides its own:
    /// `idle`, `no-store`, `repeat-<n>` and `no-store-<n>` (n ≥ 2), or `compare-<shape>-t<threads>`
    /// (a shape `--compare` runs, threads ≥ 1).
    static func isBenchmarkRunFolder(_ name: String) -> Bool {
        if name == idleFolder || name == noStoreFolder || name == warmupFolder { return true }
        for prefix in ["repeat-", "no-store-"] where name.hasPrefix(prefix) {
            if let n = Int(name.dropFirst(prefix.count)), n >= 2, String(n) == name.dropFirst(prefix.count) { return true }
        }
        return BenchShape.allCases.contains { shape in
            let prefix = "compare-\(shape.rawValue)-t"
            guard shape != .idle, name.hasPrefix(prefix) else { return false }
            let digits = name.dropFirst(prefix.count)
            return !digits.isEmpty && digits.allSatisfy(\.isASCII) && digits.allSatisfy(\.isNumber) && digits.first != "0"
        }
    }

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
    /// `protocolName`: whose runs may be replaced (`stepflow bench`'s, or `stepflow taskbench`'s).
    static func clear(_ directory: URL, protocolName: String = BenchProtocol.protocolName) throws(BenchRunDirectoryError) {
        let path = directory.path
        var exists: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &exists) else { return }
        guard exists.boolValue else { throw .notAFolder(path: path) }
        var plan: [String] = []
        try collect(directory, into: &plan, level: 0, protocolName: protocolName)
        for entry in plan {
            // Folders come after their contents; rmdir refuses one that gained an entry since it was checked.
            let failed = kind(entry) == .folder ? rmdir(entry) != 0 : unlink(entry) != 0
            if failed { throw .io(path: path, reason: "'\(entry)': \(String(cString: strerror(errno)))") }
        }
    }

    /// Checks that `directory` holds only what a benchmark run writes and appends its entries to
    /// `plan` in the order to delete them: contents before their folder, and the folder's run.db
    /// last, so an interrupted clear leaves a directory still recognized as a benchmark's. The run
    /// directory itself (level 0) stays. The launch's other runs (`idle/`, `no-store/`,
    /// `compare-<shape>-t<T>/`, see `isBenchmarkRunFolder`) and set-aside `previous-*` folders are
    /// runs of their own, checked the same way.
    private static func collect(_ directory: URL, into plan: inout [String], level: Int, protocolName: String) throws(BenchRunDirectoryError) {
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
                let stored = try RunStore.read(runDirectory: directory, steps: false)
                guard stored.protocolName == protocolName else {
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
            // A report being written when a launch was killed: the benchmark's own, left behind.
            case _ where RunReportFile.isPartial(name) && k == .file && hasDatabase: files.append(name)
            case "logs" where k == .folder: hasLogs = true
            case _ where isBenchmarkRunFolder(name) && k == .folder && level < 3: runs.append(name)
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
        if files.contains("report.json") { try confirmReport(at("report.json"), protocolName: protocolName) }
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
        for run in runs { try collect(directory.appendingPathComponent(run), into: &plan, level: level + 1, protocolName: protocolName) }
        if hasDatabase { plan.append(RunStore.path(in: directory)) }
        if level > 0 { plan.append(path) }
    }

    /// A report.json must be a benchmark's: a run document whose protocol is `protocolName`.
    private static func confirmReport(_ path: String, protocolName: String) throws(BenchRunDirectoryError) {
        // The run's header comes first and is short: parse it alone (with the step list cut to empty)
        // rather than a million steps' report.
        let marker = Array(#""steps":["#.utf8)
        guard let handle = FileHandle(forReadingAtPath: path) else { throw .unconfirmed(path: path, reason: "it cannot be read") }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 1 << 16)) ?? Data())
        let cut = head.indices.first { head[$0...].starts(with: marker) }
        guard let cut,
              let document = try? JSONSerialization.jsonObject(with: Data(head[..<(cut + marker.count)] + Array("]}".utf8))) as? [String: Any],
              let run = document["run"] as? [String: Any], let name = run["protocol"] as? String
        else { throw .unconfirmed(path: path, reason: "it is not a StepFlow run report") }
        guard name == protocolName else { throw .otherProtocol(path: path, protocolName: name) }
    }
}
