import Foundation
import StepFlow

/// Runs one command step: starts the command, copies its output to the step's log, applies the lines
/// it writes to `STEPFLOW_INSERT` as it writes them (S3), ends it on a timeout or when the run stops,
/// and turns how it ended into the step's result.
struct CommandStep {
    let spec: CommandSpec
    let step: StepContext
    /// Workflow step names and the ids their steps got (several for a `foreach`), the same on every rank.
    let workflowNames: [String: [StepID]]
    /// Where inserted steps run by default, and their default log limit.
    let folder: String
    let logLimit: Int

    /// How long a command ended by a timeout or a stop gets between SIGTERM and SIGKILL.
    static let grace: Duration = .seconds(5)

    /// Runs the command to its end.
    /// - Throws: `CommandError` when it could not start, exited non-zero, was killed, timed out, was
    ///   stopped, or wrote an insert line that could not be used.
    func run() throws(CommandError) {
        let argv = spec.argv ?? ["/bin/sh", "-c", spec.shell ?? ""]
        let insertPath = step.runDirectory.path + "/inserts" + (step.launch > 1 ? "/launch-\(step.launch)" : "")
            + "/step-\(step.id)-attempt-\(step.attempt).jsonl"
        try? FileManager.default.createDirectory(atPath: (insertPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // Never through a link planted in the run directory; the reader checks it is still this file.
        let insertFD = open(insertPath, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard insertFD >= 0 else {
            throw .cannotStart("cannot create \(insertPath) for STEPFLOW_INSERT: \(String(cString: strerror(errno)))")
        }
        var insertInfo = stat()
        fstat(insertFD, &insertInfo)
        close(insertFD)
        try declareFiles()
        step.logger.info("\(spec.name): \(spec.shell.map { "sh -c \($0)" } ?? argv.joined(separator: " ")) (in \(spec.cwd))")
        let results = try StepResultFiles(step: step)
        let log = try CappedLog(path: step.logFilePath, limit: spec.logLimit)
        defer { log.finish() }
        var env = environment(insertPath: insertPath)
        results.export(to: &env)
        let process = try CommandProcess(argv: argv, cwd: spec.cwd, environment: env, log: log)
        var inserts = InsertReader(path: insertPath, file: (UInt64(insertInfo.st_dev), UInt64(insertInfo.st_ino)), apply: apply)
        inserts.folder = folder
        inserts.logLimit = logLimit
        let started = ContinuousClock.now
        var ending: (error: CommandError, killAt: ContinuousClock.Instant)?
        var status: Int32?
        var pause: Duration = .microseconds(500)
        while status == nil {
            status = process.poll()
            if status != nil { break }
            if ending == nil {
                do throws(CommandError) {
                    try inserts.poll(final: false)
                } catch {
                    ending = (error, ContinuousClock.now + Self.grace)
                    process.signalGroup(SIGTERM)
                }
            }
            if ending == nil, step.cancellation.isCancelled {
                ending = (.stopped, ContinuousClock.now + Self.grace)
                process.signalGroup(SIGTERM)
            }
            if ending == nil, let timeout = spec.timeout, ContinuousClock.now - started >= .milliseconds(Int64(timeout * 1000)) {
                ending = (.timedOut(seconds: timeout), ContinuousClock.now + Self.grace)
                process.signalGroup(SIGTERM)
            }
            if let e = ending, ContinuousClock.now >= e.killAt { process.signalGroup(SIGKILL) }
            Thread.sleep(forTimeInterval: Double(pause.components.attoseconds) / 1e18)
            // Short commands are noticed quickly; long ones cost a wake-up every 20 ms.
            pause = min(pause * 2, .milliseconds(20))
        }
        // What the command left in its group gets the rest of the grace a timeout or a stop gave it,
        // or the whole grace after a normal exit.
        process.finish(grace: ending.map { max(.zero, $0.killAt - ContinuousClock.now) } ?? Self.grace)
        if let ending { throw ending.error }
        // Lines written just before the command ended still count.
        try inserts.poll(final: true)
        let raw = status ?? 0
        if raw & 0x7f != 0 { throw .signaled(signal: raw & 0x7f) }
        let code = (raw >> 8) & 0xff
        if code != 0 { throw .exited(code: code) }
        try results.collect()
    }

    /// Fingerprints the declared inputs now, before the command starts (a file changed while it runs
    /// is then noticed by the next `--continue`), and names the outputs to fingerprint when it ends.
    /// Paths are relative to the workflow's folder; a glob input stands for every file it matches.
    /// - Throws: `CommandError.files` for an input that is missing (naming the step that should
    ///   have made it) or unreadable.
    private func declareFiles() throws(CommandError) {
        guard !spec.inputs.isEmpty || !spec.outputs.isEmpty else { return }
        var inputs: [(String, String)] = []
        for declared in spec.inputs {
            let shown = runDirectoryExpanded(declared)
            let absolute = StepFields.absolutePath(shown, folder: folder)
            guard shown.contains(where: { "*?[".contains($0) }) else {
                inputs.append((shown, absolute))
                continue
            }
            do {
                let matches = try Foreach.matching(shown, folder: folder, mark: nil, what: "input of step '\(spec.name)'")
                inputs += matches.map { ($0.text, StepFields.absolutePath($0.text, folder: folder)) }
            } catch {
                throw .files(StepFilesError.missingInput(step: step.id, name: spec.name, path: shown + " (a glob that matches no file)",
                                                         producer: spec.madeBy[shown]).description)
            }
        }
        do {
            let producers = Dictionary(spec.madeBy.map { (runDirectoryExpanded($0.key), $0.value) }) { first, _ in first }
            try step.declareFiles(inputs: inputs, outputs: spec.outputs.map { ($0, StepFields.absolutePath(runDirectoryExpanded($0), folder: folder)) },
                                  producers: producers)
        } catch let error as StepFilesError {
            throw .files(Self.renamed(error, name: spec.name).description)
        } catch {
            throw .files(ErrorText.sentence(error))
        }
    }

    /// A declared path with a leading `$STEPFLOW_RUN_DIR` (or `${STEPFLOW_RUN_DIR}`) made the run
    /// directory's: files a step writes under the run directory are declared as it names them.
    private func runDirectoryExpanded(_ path: String) -> String {
        for prefix in ["$STEPFLOW_RUN_DIR", "${STEPFLOW_RUN_DIR}"] where path == prefix || path.hasPrefix(prefix + "/") {
            return step.runDirectory.path + path.dropFirst(prefix.count)
        }
        return path
    }

    /// The error naming the step by its workflow name, not the protocol's function.
    private static func renamed(_ error: StepFilesError, name: String) -> StepFilesError {
        if case .missingInput(let step, _, let path, let producer) = error { return .missingInput(step: step, name: name, path: path, producer: producer) }
        return error
    }

    /// The rank's environment without the MPI launcher's variables (a command that runs an MPI program
    /// of its own must not take itself for a rank of this job), the workflow's `env`, and StepFlow's.
    func environment(insertPath: String) -> [String: String] {
        var env = ProcessInfo.processInfo.environment.filter { key, _ in
            !(key.hasPrefix("PMIX_") || key.hasPrefix("PMI_") || key.hasPrefix("OMPI_COMM_WORLD_")
              || key.hasPrefix("OMPI_MCA_orte_") || key.hasPrefix("OMPI_MCA_ess_") || key.hasPrefix("OMPI_MCA_pmix")
              || ["OMPI_UNIVERSE_SIZE", "OMPI_FIRST_RANKS", "OMPI_APP_CTX_NUM_PROCS", "OMPI_NUM_APP_CTX",
                  "OMPI_FILE_LOCATION", "OMPI_ARGV", "OMPI_COMMAND", "OMPI_MCA_initial_wdir"].contains(key))
        }
        env["OMP_NUM_THREADS"] = String(step.threads)
        for (k, v) in spec.env { env[k] = v }
        env["STEPFLOW_RUN_DIR"] = step.runDirectory.path
        env["STEPFLOW_STEP_ID"] = String(step.id)
        env["STEPFLOW_STEP_NAME"] = spec.name
        env["STEPFLOW_RANK"] = String(step.rank)
        env["STEPFLOW_SLOT"] = String(step.slot)
        env["STEPFLOW_THREADS"] = String(step.threads)
        env["STEPFLOW_INSERT"] = insertPath
        if !step.gpus.isEmpty { env["CUDA_VISIBLE_DEVICES"] = step.gpus.map(String.init).joined(separator: ",") }
        return env
    }

    /// Applies one insert line through the step's context (it reaches rank 0 in order, S3).
    private func apply(_ line: InsertLine, number: Int, names: inout [String: StepID]) throws(CommandError) {
        func ids(_ name: String) throws(CommandError) -> [StepID] {
            if let id = names[name] { return [id] }
            if let ids = workflowNames[name] { return ids }
            let known = (Array(names.keys) + Array(workflowNames.keys)).sorted()
            throw .badInsert(line: number, reason: "no step is named '\(name)' (names: \(known.prefix(20).joined(separator: ", "))\(known.count > 20 ? ", …" : ""))")
        }
        do {
            switch line {
            case .insert(let name, let command, let after, let threads, let gpu, let retries, let wait, let expected):
                var prerequisites: [StepID]?
                if let after {
                    var all: [StepID] = []
                    for a in after { all += try ids(a) }
                    prerequisites = all
                }
                var command = command
                let label = name ?? "\(spec.name)/\(names.count + 1)"
                command.name = label
                let id = try step.insertFunctionStep(WorkflowProtocol.commandFunction, arguments: [command.value],
                                                     prerequisites: prerequisites, wait: wait, threads: threads,
                                                     needsGPU: gpu, retries: retries,
                                                     expected: expected.map { .milliseconds(Int64($0 * 1000)) })
                if let name { names[name] = id }
            case .release(let name):
                for id in try ids(name) { try step.release(id) }
            case .addPrerequisites(let to, let from):
                var all: [StepID] = []
                for f in from { all += try ids(f) }
                for id in try ids(to) { try step.addPrerequisites(to: id, all) }
            }
        } catch let error as CommandError {
            throw error
        } catch {
            throw .badInsert(line: number, reason: ErrorText.sentence(error))
        }
    }
}

/// Reads the lines a command appends to its `STEPFLOW_INSERT` file, each once, as they are completed.
/// The file must stay the regular file the step created, and only grow: a pipe, a device or a link in
/// its place, or a file written with `>` instead of `>>`, fails the step with what to do. A poll reads
/// at most `readLimit` bytes and a line may be `lineLimit` bytes at most, so neither a slow reader nor
/// a flood holds the step's timeout or its rank's memory.
struct InsertReader {
    let path: String
    let apply: (InsertLine, Int, inout [String: StepID]) throws(CommandError) -> Void
    /// The device and inode of the file the step created.
    private let file: (device: UInt64, inode: UInt64)
    private var offset: Int64 = 0
    /// The last bytes read (up to 64): still there at every poll, or the file was rewritten.
    private var lastRead: [UInt8] = []
    /// Bytes read and not yet taken as lines; `pending[start...]` is what is left.
    private var pending: [UInt8] = []
    private var start = 0
    private var lineNumber = 0
    private var names: [String: StepID] = [:]
    /// Where inserted steps run by default and their log limit (set by the step).
    var folder = ""
    var logLimit = CommandSpec.defaultLogLimit

    static let readLimit = 1 << 20
    static let lineLimit = 1 << 20

    init(path: String, file: (device: UInt64, inode: UInt64), apply: @escaping (InsertLine, Int, inout [String: StepID]) throws(CommandError) -> Void) {
        self.path = path
        self.file = file
        self.apply = apply
    }

    /// Applies the complete lines written since the last call; with `final`, everything left, a last
    /// line without a newline too.
    mutating func poll(final: Bool) throws(CommandError) {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT && offset == 0 { return }
            throw .badInsert(line: lineNumber + 1, reason: "$STEPFLOW_INSERT (\(path)) cannot be read any more (\(String(cString: strerror(errno)))): it was removed or replaced by a link. Append JSON lines to it with >> and leave the file in place")
        }
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        guard info.st_mode & S_IFMT == S_IFREG, UInt64(info.st_dev) == file.device, UInt64(info.st_ino) == file.inode else {
            throw .badInsert(line: lineNumber + 1, reason: "$STEPFLOW_INSERT (\(path)) was replaced (by a pipe, a device, a link or another file). Append JSON lines to the file with >> and leave it in place")
        }
        var stillThere = lastRead
        if !lastRead.isEmpty {
            let got = stillThere.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset - Int64(lastRead.count))) }
            if got != lastRead.count { stillThere = [] }
        }
        guard Int64(info.st_size) >= offset, stillThere == lastRead else {
            throw .badInsert(line: lineNumber + 1, reason: "$STEPFLOW_INSERT was rewritten (\(offset) bytes had been read; it now holds \(info.st_size), not the same): it was written with > instead of >>, and lines were lost. Append each line with >>")
        }
        repeat {
            let want = Int(min(Int64(Self.readLimit), Int64(info.st_size) - offset))
            guard want > 0 else { break }
            if start > 0 && start >= pending.count / 2 {
                pending.removeFirst(start)
                start = 0
            }
            let before = pending.count
            pending.append(contentsOf: repeatElement(0, count: want))
            let got = pending.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + before, want, off_t(offset)) }
            pending.removeLast(want - max(got, 0))
            guard got > 0 else { break }
            offset += Int64(got)
            lastRead = Array((lastRead + pending[(pending.count - got)...]).suffix(64))
            try takeLines()
        } while final
        if final && start < pending.count {
            let line = String(decoding: pending[start...], as: UTF8.self)
            pending.removeAll()
            start = 0
            try take(line)
        }
    }

    private mutating func takeLines() throws(CommandError) {
        while let newline = pending[start...].firstIndex(of: 10) {
            let line = String(decoding: pending[start..<newline], as: UTF8.self)
            start = newline + 1
            try take(line)
        }
        if pending.count - start > Self.lineLimit {
            throw .badInsert(line: lineNumber + 1, reason: "the line is longer than \(Self.lineLimit) bytes. Write one JSON object per line, each shorter")
        }
    }

    private mutating func take(_ line: String) throws(CommandError) {
        lineNumber += 1
        guard !line.allSatisfy(\.isWhitespace) else { return }
        let parsed: InsertLine
        do {
            parsed = try InsertLine.parse(line, line: lineNumber, folder: folder, logLimit: logLimit)
        } catch {
            throw .badInsert(line: lineNumber, reason: (error.column.map { "column \($0): " } ?? "") + error.message)
        }
        try apply(parsed, lineNumber, &names)
    }
}
